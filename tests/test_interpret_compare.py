"""``cnnlab interpret`` and ``cnnlab compare``: the confusions, ECE and temperature scaling equal
direct computations (and scikit-learn's), McNemar's exact p-value equals scipy's binomial test, the
bootstrap is seeded, only differing settings are listed, and every mistake is one line."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import binomtest
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix

from cnnlab.runs import Run, split_logits
from cnnlab.runs.compare import (binomial_cdf_half, bootstrap_difference, compare_runs, differing_settings,
                                 mcnemar_exact)
from cnnlab.runs.interpret import (confused_pairs, expected_calibration_error, fit_temperature, interpret_logits,
                                   negative_log_likelihood, per_class_accuracy, reliability_bins, top_losses)
from cnnlab.runs.scores import confusion_counts
from cnnlab.training import TrainConfig, train

from test_cli import assert_user_error, cnnlab_in_process as cnnlab
from test_imagefolder import make_folder


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two short digits runs that differ in seed, learning rate and validation split."""
    root = tmp_path_factory.mktemp("compare")
    a, b = root / "a", root / "b"
    train(TrainConfig(dataset="digits", epochs=2, batch_size=32, optimizer="adam", lr=0.01, seed=1,
                      val_fraction=0.2, out=str(a)))
    train(TrainConfig(dataset="digits", epochs=2, batch_size=32, optimizer="adam", lr=0.003, seed=2, out=str(b)))
    return a, b


def _synthetic(seed: int, n: int = 500, k: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(k, (n,), generator=g)
    logits = torch.randn(n, k, generator=g) * (1 + seed % 3)
    logits[torch.arange(n), labels] += torch.rand(n, generator=g) * 3  # better than chance, not perfect
    return logits, labels


def _direct_ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    conf, pred = probs.max(1), probs.argmax(1)
    total = 0.0
    for m in range(bins):
        lo, hi = m / bins, (m + 1) / bins
        inside = (conf > lo) & (conf <= hi) if m else (conf >= lo) & (conf <= hi)
        if inside.any():
            total += inside.mean() * abs((pred[inside] == labels[inside]).mean() - conf[inside].mean())
    return float(total)


# --- interpret: the numbers ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_confusions_and_per_class_accuracy_equal_sklearn(seed):
    logits, labels = _synthetic(seed)
    k = logits.shape[1]
    pred = logits.argmax(1)
    classes = [f"c{i}" for i in range(k)]
    expected = confusion_matrix(labels.numpy(), pred.numpy(), labels=list(range(k)))
    cm = confusion_counts(labels, pred, k)
    assert (cm.numpy() == expected).all()
    pairs = confused_pairs(cm, classes)
    cells = sorted(((expected[i, j], i, j) for i in range(k) for j in range(k) if i != j and expected[i, j]),
                   key=lambda t: (-t[0], t[1], t[2]))
    assert [(p["count"], p["true"], p["predicted"]) for p in pairs] == [(n, f"c{i}", f"c{j}") for n, i, j in cells]
    assert all(p["reverse"] == expected[int(p["predicted"][1:]), int(p["true"][1:])] for p in pairs)
    assert [p["count"] for p in confused_pairs(cm, classes, top=3)] == [n for n, _, _ in cells[:3]]
    accuracy = [r["accuracy"] for r in per_class_accuracy(cm, classes)]
    assert accuracy == pytest.approx([100 * expected[i, i] / expected[i].sum() for i in range(k)])


@pytest.mark.parametrize("seed", [0, 1, 2, 5])
def test_ece_and_bins_equal_direct_computation_and_sklearn(seed):
    logits, labels = _synthetic(seed)
    probs = torch.softmax(logits.double(), 1)
    assert expected_calibration_error(probs, labels) == pytest.approx(_direct_ece(probs.numpy(), labels.numpy()),
                                                                      abs=1e-12)
    bins = reliability_bins(probs, labels)
    assert len(bins) == 15 and sum(b["count"] for b in bins) == len(labels)
    correct = (probs.argmax(1) == labels).numpy()
    prob_true, prob_pred = calibration_curve(correct, probs.max(1).values.numpy(), n_bins=15, strategy="uniform")
    full = [b for b in bins if b["count"]]
    assert [b["accuracy"] for b in full] == pytest.approx(prob_true.tolist(), abs=1e-12)
    assert [b["confidence"] for b in full] == pytest.approx(prob_pred.tolist(), abs=1e-12)


def test_a_perfectly_calibrated_toy_has_zero_ece_and_top_losses_are_sorted():
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.5, 0.5]])
    labels = torch.tensor([0, 1, 0, 1])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0)
    logits, labels = _synthetic(4)
    losses = top_losses(logits, labels, 10)
    ce = torch.nn.functional.cross_entropy(logits.double(), labels, reduction="none")
    assert [r["index"] for r in losses] == ce.argsort(descending=True)[:10].tolist()
    assert [r["loss"] for r in losses] == pytest.approx(ce.sort(descending=True).values[:10].tolist())


@pytest.mark.parametrize("scale", [0.3, 4.0])
def test_temperature_scaling_lowers_nll_and_keeps_the_argmax(scale):
    logits, labels = _synthetic(7, n=800)
    logits = logits * scale  # under- or over-confident
    t = fit_temperature(logits, labels)
    before, after = negative_log_likelihood(logits, labels), negative_log_likelihood(logits, labels, t)
    assert after < before
    for nearby in (t * 0.97, t * 1.03):  # a minimum of the validation NLL
        assert negative_log_likelihood(logits, labels, nearby) >= after - 1e-12
    assert torch.equal((logits / t).argmax(1), logits.argmax(1))
    assert (t > 1) == (scale > 1)


def test_temperature_on_a_real_validation_split(two_runs):
    run = Run.open(two_runs[0])
    val, test = split_logits(run, "val"), split_logits(run, "test")
    result = interpret_logits(*test, run.classes, top=5, val=val)
    scaling = result.temperature
    assert scaling.val_nll_after < scaling.val_nll_before
    assert scaling.after.accuracy == scaling.before.accuracy == result.accuracy
    assert scaling.before.nll == pytest.approx(negative_log_likelihood(*test))


# --- compare: the numbers ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed,n,agree", [(0, 50, 0.9), (1, 400, 0.7), (2, 3000, 0.95), (3, 12, 0.5), (4, 2000, 0.99)])
def test_mcnemar_equals_scipy_binomtest(seed, n, agree):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    pred_a = np.where(rng.random(n) < 0.8, labels, rng.integers(0, 10, n))
    pred_b = np.where(rng.random(n) < agree, pred_a, np.where(rng.random(n) < 0.6, labels, rng.integers(0, 10, n)))
    result = mcnemar_exact(pred_a, pred_b, labels)
    right_a, right_b = pred_a == labels, pred_b == labels
    assert (result.b, result.c) == (int((right_a & ~right_b).sum()), int((~right_a & right_b).sum()))
    if result.b + result.c == 0:
        assert result.p == 1.0
    else:
        assert result.p == pytest.approx(binomtest(min(result.b, result.c), result.b + result.c, 0.5).pvalue,
                                         rel=1e-9)


@pytest.mark.parametrize("b,c", [(0, 0), (3, 3), (0, 9), (10, 2), (1, 40), (600, 655), (1200, 1000)])
def test_mcnemar_on_given_discordant_counts(b, c):
    labels = np.zeros(b + c + 5, dtype=int)
    pred_a = np.r_[np.zeros(b), np.ones(c), np.zeros(5)].astype(int)  # A right on the first b
    pred_b = np.r_[np.ones(b), np.zeros(c), np.zeros(5)].astype(int)  # B right on the next c
    result = mcnemar_exact(pred_a, pred_b, labels)
    assert (result.b, result.c) == (b, c)
    expected = 1.0 if b + c == 0 else binomtest(min(b, c), b + c, 0.5).pvalue
    assert result.p == pytest.approx(expected, rel=1e-9)
    assert binomial_cdf_half(min(b, c), b + c) == pytest.approx(
        sum(math.comb(b + c, i) for i in range(min(b, c) + 1)) / 2 ** (b + c), rel=1e-12)


def test_bootstrap_is_seeded_and_paired():
    rng = np.random.default_rng(0)
    a, b = rng.random(300) < 0.8, rng.random(300) < 0.85
    first, again = bootstrap_difference(a, b, 500, seed=3), bootstrap_difference(a, b, 500, seed=3)
    other = bootstrap_difference(a, b, 500, seed=4)
    assert (first.low, first.high) == (again.low, again.high)
    assert (first.low, first.high) != (other.low, other.high)
    assert first.low <= first.difference <= first.high
    assert first.difference == pytest.approx(100 * (b.mean() - a.mean()))
    same = bootstrap_difference(a, a, 200, seed=1)  # paired: the same outcomes never differ
    assert (same.low, same.difference, same.high) == (0.0, 0.0, 0.0)


def test_only_differing_settings_are_listed():
    configs = [{"lr": 0.1, "seed": 1, "out": "a", "model": "convnet"},
               {"lr": 0.1, "seed": 2, "out": "b", "model": "convnet", "ema_decay": 0.99},
               {"lr": 0.2, "seed": 1, "out": "c", "model": "convnet"}]
    assert differing_settings(configs) == {"lr": [0.1, 0.1, 0.2], "seed": [1, 2, 1], "ema_decay": [None, 0.99, None]}
    assert differing_settings(configs[:1] * 2) == {}


def test_compare_two_real_runs(two_runs):
    a, b = two_runs
    c = compare_runs([a, b], seed=0, bootstrap=300)
    assert set(c.settings) == {"lr", "seed", "val_fraction"}
    preds = []
    for run_dir, summary in zip(two_runs, c.runs):
        result = json.loads((run_dir / "result.json").read_text())
        assert summary.test_acc == pytest.approx(result["test_acc"]) == pytest.approx(summary.final_test_acc)
        logits, labels = split_logits(Run.open(run_dir), "test")
        preds.append(logits.argmax(1))
    assert c.mcnemar.p == pytest.approx(binomtest(min(c.mcnemar.b, c.mcnemar.c), c.mcnemar.b + c.mcnemar.c).pvalue
                                        if c.mcnemar.b + c.mcnemar.c else 1.0, rel=1e-9)
    assert (c.mcnemar.b, c.mcnemar.c) == (int(((preds[0] == labels) & (preds[1] != labels)).sum()),
                                          int(((preds[0] != labels) & (preds[1] == labels)).sum()))
    assert c.bootstrap.difference == pytest.approx(c.runs[1].test_acc - c.runs[0].test_acc)
    assert [r["difference"][0] for r in c.per_class_difference] == pytest.approx(
        [y["accuracy"] - x["accuracy"] for x, y in zip(c.runs[0].per_class, c.runs[1].per_class)])
    json.dumps(c.to_dict())


# --- the commands -----------------------------------------------------------------------------------------------------

def test_interpret_command_writes_its_files_into_the_run(two_runs):
    a, _ = two_runs
    proc = cnnlab("interpret", str(a), "--top-losses", "4", "--temperature", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert len(doc["top_losses"]) == 4 and doc["temperature"]["temperature"] > 0
    for name in ("top_losses.png", "reliability.png", "interpret.json"):
        assert (a / "interpret" / name).is_file()
    derived = json.loads((a / "derived.json").read_text())["files"]
    assert {"interpret/top_losses.png", "interpret/reliability.png"} <= set(derived)
    run = Run.open(a)
    logits, labels = split_logits(run, "test")
    probs = torch.softmax(logits.double(), 1)
    assert doc["calibration"]["ece"] == pytest.approx(_direct_ece(probs.numpy(), labels.numpy()), abs=1e-9)
    table = cnnlab("interpret", str(two_runs[1]), "--temperature", "--top-losses", "2")
    assert table.returncode == 0 and "no validation split" in table.stdout and "ECE" in table.stdout


def test_compare_command_table_json_png_and_html(two_runs, tmp_path):
    a, b = two_runs
    proc = cnnlab("compare", str(a), str(b), "--bootstrap", "200", "--out", str(tmp_path / "curves"),
                  "--html", str(tmp_path / "cmp.html"))
    assert proc.returncode == 0, proc.stderr
    assert "McNemar exact" in proc.stdout and "settings that differ" in proc.stdout and "lr" in proc.stdout
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "cmp.html").read_text()
    assert "settings-table" in page and "McNemar" in page and "data:image/png;base64," in page
    doc = json.loads(cnnlab("compare", str(a), str(b), "--bootstrap", "200", "--format", "json").stdout)
    assert doc["mcnemar"]["p"] <= 1 and doc["bootstrap"]["resamples"] == 200
    three = cnnlab("compare", str(a), str(b), str(a), "--format", "json")
    assert three.returncode == 0 and json.loads(three.stdout)["mcnemar"] is None


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory) -> Path:
    root = make_folder(tmp_path_factory.mktemp("imgs") / "imgs", n_per_class=6, splits=("train", "test"))
    out = root.parent / "run"
    train(TrainConfig(dataset="imagefolder", data_dir=str(root), input_size=8, epochs=1, batch_size=8, out=str(out)))
    return out


def test_every_mistake_is_one_line(two_runs, folder_run, tmp_path):
    a, b = two_runs
    assert_user_error(cnnlab("compare", str(a)), "two or more run directories")
    assert_user_error(cnnlab("compare"), "two or more run directories")
    assert_user_error(cnnlab("compare", str(a), str(tmp_path)), "model.pt is missing")
    assert_user_error(cnnlab("compare", str(a), str(tmp_path / "none")), "does not exist")
    assert_user_error(cnnlab("compare", str(a), str(folder_run)), "cannot be paired", "digits and imagefolder")
    assert_user_error(cnnlab("compare", str(a), str(b), "--bootstrap", "0"), "--bootstrap")
    assert_user_error(cnnlab("compare", str(a), str(b), "--html", str(tmp_path / "x.png")), "--html")
    assert_user_error(cnnlab("interpret", str(a), "--top-losses", "0"), "--top-losses")
    assert_user_error(cnnlab("interpret", str(tmp_path)), "model.pt is missing")
    (tmp_path / "file").write_text("keep")
    assert_user_error(cnnlab("interpret", str(a), "--out", str(tmp_path / "file")), "is a file")
    assert (tmp_path / "file").read_text() == "keep" and not (tmp_path / "x.png").exists()
    with pytest.raises(Exception, match="--bootstrap"):
        bootstrap_difference([True], [False], 0)


def test_the_report_has_the_calibration_section(two_runs, tmp_path):
    from cnnlab.visualize import build_report
    from cnnlab.visualize.source import Source

    a, _ = two_runs
    result = build_report(Source(str(a)), n_images=0, out=tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert "calibration" in result.sections and "id='confused-pairs'" in page
    logits, labels = split_logits(Run.open(a), "test")
    ece = expected_calibration_error(torch.softmax(logits.double(), 1), labels)
    shown = re.search(r"Expected calibration error[^<]*<b>([0-9.]+)%</b>", page)
    assert shown and float(shown.group(1)) == pytest.approx(100 * ece, abs=0.011)  # float32 probabilities there
