"""``cnnlab trust``: model randomization (Adebayo et al. 2018), deletion / insertion (Petsiuk et al.
2018), the measured Grad-CAM layer, ``--shuffle-labels`` (Zhang et al. 2017), and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import extra_module
import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.visualize.trust_metrics import area, perturbation_curves, spearman_abs, ssim
from cnnlab.visualize.trust_randomize import cascade_steps, independent_steps, randomized_copy, randomized_models
from test_cli import assert_user_error, cnnlab_in_process as cnnlab

extra_module("captum")
extra_module("skimage")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The lecture ConvNet trained on the bundled digits to ~95% (a 1-epoch SGD run is near chance)."""
    from cnnlab.training import TrainConfig, train

    out = tmp_path_factory.mktemp("trust") / "run"
    train(TrainConfig(dataset="digits", epochs=10, batch_size=64, optimizer="adam", lr=0.01), out=str(out))
    return out


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --- model randomization --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,shape", [("convnet", (1, 28, 28)), ("resblocks_identity", (1, 28, 28))])
def test_cascade_randomizes_exactly_the_named_layers(name, shape):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=shape[0], input_size=shape[1]).eval()
    with torch.no_grad():  # trained-like weights: a re-initialised BatchNorm differs from these too
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    before = _state(model)
    x = torch.rand(2, *shape)
    steps = cascade_steps(model, x)
    assert steps[-1].randomized and len(set(steps[-1].randomized)) == len(steps[-1].randomized)
    owners = {n for n, m in model.named_modules() if n and next(m.parameters(recurse=False), None) is not None}
    assert set(steps[-1].randomized) == owners  # the full cascade reaches every layer with parameters
    for step, copy in randomized_models(model, steps, seed=3):
        for key, value in copy.state_dict().items():
            layer = key.rsplit(".", 1)[0]
            if layer in step.randomized and value.is_floating_point() and key.endswith(("weight", "bias")):
                assert not torch.equal(value, before[key]), key
            elif layer not in step.randomized:
                assert torch.equal(value, before[key]), key  # bitwise unchanged
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])  # the caller's model is never changed


def test_independent_steps_randomize_one_group_each_and_match_the_cascade_draws():
    torch.manual_seed(0)
    model = create_model("convnet", num_classes=10).eval()
    x = torch.rand(1, 1, 28, 28)
    ind = independent_steps(model, x)
    assert [s.randomized for s in ind] == [("linear_1",), ("conv_2",), ("conv_1",)]  # from the logits down
    a = randomized_copy(model, ["conv_2"], seed=5)
    b = dict(randomized_models(model, ind, seed=5, cascading=False))[ind[1]]
    assert torch.equal(a.conv_2.weight, b.conv_2.weight) and torch.equal(a.conv_1.weight, model.conv_1.weight)
    c = randomized_copy(model, ["conv_2"], seed=6)
    assert not torch.equal(a.conv_2.weight, c.conv_2.weight)  # the seed matters


# --- metrics against scipy / scikit-image ---------------------------------------------------------------------------

def test_spearman_and_ssim_match_scipy_and_skimage():
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(12, 12)), rng.normal(size=(12, 12))
    assert spearman_abs(a, b) == pytest.approx(spearmanr(np.abs(a).ravel(), np.abs(b).ravel()).statistic)
    assert spearman_abs(torch.tensor(a), torch.tensor(-a)) == pytest.approx(1.0)  # absolute values
    scaled = lambda m: (np.abs(m) - np.abs(m).min()) / np.ptp(np.abs(m))  # noqa: E731
    assert ssim(a, b) == pytest.approx(structural_similarity(scaled(a), scaled(b), data_range=1.0, win_size=7))
    assert ssim(a, a) == pytest.approx(1.0)
    assert np.isnan(spearman_abs(np.zeros((4, 4)), a[:4, :4]))  # a constant map ranks nothing


# --- deletion / insertion -------------------------------------------------------------------------------------------

class OnePixel(nn.Module):
    """Logits (v, 0) where v = 10 * (x[0, 0, row, col] - 0.5): the class-0 probability reads one pixel."""

    def __init__(self, row: int, col: int):
        super().__init__()
        self.row, self.col = row, col
        self.conv = nn.Conv2d(1, 1, 1)  # a feature map, as the checks expect

    def forward(self, x):
        v = 10 * (x[:, 0, self.row, self.col] - 0.5)
        return torch.stack([v, torch.zeros_like(v)], dim=1)


def _direct(model, x, m, target, steps, deletion: bool) -> list[float]:
    """The paper's definition, one image at a time: remove (or put back) the top n_k pixels."""
    order = sorted(range(m.numel()), key=lambda i: (-float(m.flatten()[i]), i))
    h, w = m.shape
    out = []
    for k in range(steps + 1):
        n = round(k * h * w / steps)
        mask = torch.zeros(h * w, dtype=torch.bool)
        mask[order[:n]] = True
        mask = mask.view(h, w)
        img = torch.where(mask, 0.0, x) if deletion else torch.where(mask, x, 0.0)
        out.append(float(torch.softmax(model(img[None]), 1)[0, target]))
    return out


@pytest.mark.parametrize("rank", [0, 5, 15])
def test_deletion_and_insertion_match_the_definition_on_a_one_pixel_model(rank):
    model = OnePixel(1, 2)
    x = torch.ones(1, 1, 4, 4)
    m = torch.arange(16, 0, -1, dtype=torch.float32).view(4, 4).clone()
    m[1, 2], m.view(-1)[rank] = m.view(-1)[rank].item(), m[1, 2].item()  # the read pixel at rank `rank`
    steps = 8
    curves = perturbation_curves(model, x, m[None], torch.tensor([0]), baseline="zero", steps=steps)
    want_del, want_ins = _direct(model, x[0], m, 0, steps, True), _direct(model, x[0], m, 0, steps, False)
    assert curves.deletion[0].tolist() == pytest.approx(want_del, abs=1e-6)
    assert curves.insertion[0].tolist() == pytest.approx(want_ins, abs=1e-6)
    # the answer known: the probability is high until the read pixel goes, at step ceil((rank + 1) * steps / 16)
    hi, lo = float(torch.sigmoid(torch.tensor(5.0))), float(torch.sigmoid(torch.tensor(-5.0)))
    gone = next(k for k in range(steps + 1) if round(k * 16 / steps) > rank)
    assert want_del == pytest.approx([hi] * gone + [lo] * (steps + 1 - gone), abs=1e-6)
    assert float(area(curves.deletion)[0]) == pytest.approx(np.trapezoid(want_del, dx=1 / steps), abs=1e-6)


# --- the checks on a trained ConvNet --------------------------------------------------------------------------------

def test_trust_on_a_trained_convnet(trained, tmp_path):
    proc = cnnlab("trust", str(trained), "--images", "12", "--format", "json", "--out", str(tmp_path / "t"))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["images"] == 12 and set(doc["methods"]) == {"gradcam", "saliency", "ig"}
    cam = doc["methods"]["gradcam"]
    assert cam["cascade"][0]["randomized"] == [] and cam["cascade"][-1]["randomized"]
    assert cam["cascade"][-1]["spearman"] < cam["cascade"][0]["spearman"] - 0.5
    assert cam["deletion_auc"] < cam["random_deletion_auc"]
    for name in ("cascade.png", "cascade-scores.png", "faithfulness.png", "trust.json"):
        assert (tmp_path / "t" / name).stat().st_size > 0
    assert json.loads((tmp_path / "t" / "trust.json").read_text())["methods"].keys() == doc["methods"].keys()


def test_trust_best_layer_and_default_folder_recorded(trained):
    proc = cnnlab("trust", str(trained), "--images", "4", "--methods", "gradcam", "--layer", "best",
                  "--no-independent")
    assert proc.returncode == 0, proc.stderr
    assert "--layer best:" in proc.stdout and "the rule" in proc.stdout
    doc = json.loads((trained / "trust" / "trust.json").read_text())
    ranking = [r["deletion_auc"] for r in doc["layer_ranking"]]
    assert len(ranking) > 1 and ranking == sorted(ranking) and doc["layer"] == doc["layer_ranking"][0]["layer"]
    assert "trust/trust.json" in json.loads((trained / "derived.json").read_text())["files"]


def test_show_gradcam_prints_its_faithfulness(trained, tmp_path):
    proc = cnnlab("show", "gradcam", str(trained), "--index", "1", "--out", str(tmp_path / "g.png"))
    assert proc.returncode == 0, proc.stderr
    line = next(l for l in proc.stdout.splitlines() if l.startswith("faithfulness"))
    assert "deletion area" in line and "random map" in line and "insertion area" in line


# --- --shuffle-labels -----------------------------------------------------------------------------------------------

def test_shuffle_labels_permutes_reproducibly_and_leaves_images_untouched():
    from cnnlab.runs import load_run_splits, preprocessing_of
    from cnnlab.training import TrainConfig

    plain = TrainConfig(dataset="digits", val_fraction=0.1)
    shuffled = TrainConfig(dataset="digits", val_fraction=0.1, shuffle_labels=True)
    a = load_run_splits(plain, preprocessing_of(plain))
    b = load_run_splits(shuffled, preprocessing_of(shuffled))
    c = load_run_splits(shuffled, preprocessing_of(shuffled))
    assert torch.equal(a.train.images, b.train.images)  # images untouched
    assert torch.equal(b.train.labels, c.train.labels)  # reproducible
    assert not torch.equal(a.train.labels, b.train.labels)
    assert torch.equal(a.train.labels.sort().values, b.train.labels.sort().values)  # the same labels, reassigned
    assert torch.equal(a.val.labels, b.val.labels) and torch.equal(a.test.labels, b.test.labels)
    other = load_run_splits(TrainConfig(dataset="digits", val_fraction=0.1, shuffle_labels=True, seed=2),
                            preprocessing_of(shuffled))
    assert not torch.equal(other.train.labels, b.train.labels)  # the seed picks the permutation


def test_shuffle_labels_is_a_run_setting_kept_by_resume(tmp_path):
    from cnnlab.training import TrainConfig, train

    out = tmp_path / "run"
    train(TrainConfig(dataset="digits", epochs=1, batch_size=256, shuffle_labels=True), out=str(out))
    assert json.loads((out / "config.json").read_text())["config"]["shuffle_labels"] is True
    assert_user_error(cnnlab("train", "--resume", str(out), "--no-shuffle-labels"), "--shuffle-labels")


# --- bad input ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,fragments", [
    (["--methods", "gradcm"], ["unknown method 'gradcm'", "did you mean gradcam"]),
    (["--methods", ","], ["--methods names no method"]),
    (["--images", "0"], ["--images"]),
    (["--layer", "conv_9"], ["unknown layer 'conv_9'"]),
    (["--twin", "no-such-run"], ["--twin no-such-run is not a run directory"]),
])
def test_bad_input_is_one_line(trained, args, fragments):
    before = sorted(p.name for p in trained.iterdir())
    assert_user_error(cnnlab("trust", str(trained), *args), *fragments)
    assert sorted(p.name for p in trained.iterdir()) == before


def test_a_model_name_without_a_dataset_is_one_line():
    assert_user_error(cnnlab("trust", "convnet"), "pass --dataset")


def test_the_api_refuses_bad_settings(trained):
    from cnnlab.visualize.trust import TrustSettings, check_trust

    for bad in (TrustSettings(n_images=0), TrustSettings(baseline="gray"), TrustSettings(steps=0)):
        with pytest.raises(CnnlabError):
            check_trust(trained, bad)


def test_a_trust_result_shows_its_table_and_figures_in_a_notebook(trained, tmp_path):
    from html.parser import HTMLParser

    from cnnlab.visualize.trust import TrustSettings, check_trust

    result = check_trust(str(trained), TrustSettings(methods=("gradcam",), n_images=3), out=tmp_path / "nb")
    html = result._repr_html_()
    HTMLParser().feed(html)
    assert "Grad-CAM" in html and f"{result.areas('gradcam')[0]:.3f}" in html and "random map" in html
    assert html.count("data:image/png;base64,") == 3 and "http://" not in html and "https://" not in html
