"""The learning-rate range test: `cnnlab lr-find` and `cnnlab train --lr find`.

The rules are pure functions of (lrs, losses), checked against hand computations on synthetic curves;
the range test leaves the model, the optimizer and every random generator bit for bit as they were;
the divergence stop is checked on scripted losses; the command line's mistakes are one line.
"""

from __future__ import annotations

import copy
import json
import math
import random

import numpy as np
import pytest
import torch

from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.training import lr_find as lr_find_module
from cnnlab.training.config import TrainConfig
from cnnlab.training.loop import Trainer
from cnnlab.training.lr_find import DIVERGE, LrFindResult, range_test
from cnnlab.training.lr_rules import (RULES, analysis_window, check_rule, minimum_over_10, smooth, steepest, suggest,
                                      sweep_lrs, valley, valley_index)
from cnnlab.training.setup import prepare

from test_cli import assert_user_error, cnnlab_in_process as cnnlab

DIGITS = ["--dataset", "digits", "--batch-size", "64"]


# --- the rules, by hand ------------------------------------------------------------------------------------------

def test_steepest_is_the_slope_against_log_lr():
    # per log(lr): (1.5-2)/ln 10 = -0.217 and (1.3-1.5)/ln 2 = -0.289 -> the second segment, which starts at 1e-2
    # (per lr unit the first would be steeper: -55.6 against -20)
    assert steepest([1e-3, 1e-2, 2e-2], [2.0, 1.5, 1.3]) == pytest.approx(1e-2)
    assert steepest([1, 10, 100, 1000], [3.0, 2.9, 1.0, 5.0]) == 10  # the lr where the steepest segment starts


def test_minimum_over_10_takes_the_first_minimum():
    assert minimum_over_10([1.0, 2.0, 3.0, 4.0, 5.0], [3, 2, 1, 1, 2]) == pytest.approx(0.3)


def test_valley_by_hand():
    # longest strictly decreasing run ending at each point: [1, 2, 1, 3, 4, 1, 5, 1] -> ends at 6, starts at
    # 6 - 5 = 1; L = 5, L/3 = 1.67 -> 1 + int(1.67) + int(0.83) = 2
    losses = [5, 4, 6, 3, 2, 7, 1, 8]
    lrs = [10.0 ** k for k in range(-7, 1)]
    assert valley_index(losses) == 2
    assert valley(lrs, losses) == lrs[2]
    # monotone decreasing, 9 points: ends at 8, starts at -1, L = 9 -> -1 + 3 + 1 = 3
    assert valley_index([9, 8, 7, 6, 5, 4, 3, 2, 1]) == 3
    # two valleys of the same length: the first one; -1 + 1 + 0 = 0
    assert valley_index([3, 2, 1, 9, 8, 7]) == 0
    # a valley of 2 points at the start: fastai's index would be -1 (the last point); here 0
    assert valley_index([2, 1]) == 0


def test_smoothing_is_a_debiased_moving_average():
    assert smooth([1.0, 2.0]) == pytest.approx([1.0, (0.98 * 0.02 + 0.02 * 2) / (1 - 0.98 ** 2)])
    assert smooth([4.0] * 50) == pytest.approx([4.0] * 50)  # debiased: a constant stays itself from the start


def test_the_sweep_is_exponential_from_start_to_end():
    lrs = sweep_lrs(1e-7, 10.0, 100)
    assert len(lrs) == 100 and lrs[0] == 1e-7 and lrs[-1] == 10.0
    ratios = np.diff(np.log(lrs))
    assert np.allclose(ratios, math.log(1e8) / 99)


def test_suggestions_read_fastais_window():
    assert analysis_window(100, 100) == (10, 95)
    assert analysis_window(6, 20) == (0, 6)  # too short to cut: the whole curve
    lrs = sweep_lrs(1e-4, 1.0, 30)
    # a curve whose overall minimum is in the cut-off head: the rules must not see it
    curve = [0.1, 0.1, 0.1] + [2.0 - 0.05 * i for i in range(20)] + [1.1, 1.2, 1.3, 5.0, 6.0, 7.0, 8.0]
    got = suggest(lrs, curve, num_iter=30)
    first, stop = analysis_window(30, 30)
    x, y = lrs[first:stop], curve[first:stop]
    assert got == {"steepest": steepest(x, y), "minimum/10": minimum_over_10(x, y), "valley": valley(x, y)}
    assert got["minimum/10"] == pytest.approx(lrs[22] / 10)
    assert list(got) == list(RULES)


def test_an_unknown_rule_suggests_the_close_one():
    with pytest.raises(UnknownNameError, match="did you mean valley"):
        check_rule("vally")


# --- the range test on a real run --------------------------------------------------------------------------------

def _config(**changes) -> TrainConfig:
    return TrainConfig(dataset="digits", batch_size=64, seed=3, **changes)


def _snapshot(parts) -> dict:
    return {"model": {k: v.clone() for k, v in parts.model.state_dict().items()},
            "optimizer": copy.deepcopy(parts.optimizer.state_dict()),
            "scheduler": copy.deepcopy(parts.scheduler.state_dict()),
            "ema": copy.deepcopy(parts.ema.state_dict()) if parts.ema else None,
            "lookahead": copy.deepcopy(parts.lookahead.state_dict()) if parts.lookahead else None,
            "modes": [m.training for m in parts.model.modules()],
            "torch": torch.get_rng_state(), "shuffle": parts.shuffle.get_state(),
            "random": random.getstate(), "numpy": np.random.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _equal(a, b) -> bool:
    """Nested equality, tensors compared with torch.equal (bit for bit, dtype and shape too)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("changes", [{"momentum": 0.9}, {"optimizer": "adam", "ema_decay": 0.9, "lookahead_steps": 3}])
def test_the_range_test_leaves_everything_bitwise_as_it_was(changes):
    parts = prepare(_config(**changes))
    trainer = Trainer(parts)
    for x, y in [next(lr_find_module._batches(parts)) for _ in range(2)]:  # an optimizer with state, a moved RNG
        trainer.train_step(x, y)
    random.seed(5)
    np.random.seed(6)
    before = _snapshot(parts)
    result = range_test(parts, start_lr=1e-5, end_lr=1.0, num_iter=20)
    assert len(result.lrs) == 20 and len(set(result.losses)) > 1  # it did train
    after = _snapshot(parts)
    for key in before:
        assert _equal(before[key], after[key]), key
    assert parts.optimizer.param_groups[0]["lr"] == before["optimizer"]["param_groups"][0]["lr"]


def test_the_restore_is_what_keeps_the_parts():
    """Without :func:`preserved` the sweep changes the weights and the RNG: the test above can fail."""
    parts = prepare(_config(momentum=0.9))
    before = _snapshot(parts)
    lr_find_module._sweep(parts, sweep_lrs(1e-3, 1.0, 5), stop_div=True)
    after = _snapshot(parts)
    assert not _equal(before["model"], after["model"])
    assert not _equal(before["optimizer"], after["optimizer"])
    assert not _equal(before["shuffle"], after["shuffle"])


def test_training_after_the_test_is_training_without_it():
    tested, fresh = prepare(_config(momentum=0.9)), prepare(_config(momentum=0.9))
    range_test(tested, start_lr=1e-4, end_lr=1.0, num_iter=10)
    for parts in (tested, fresh):
        trainer = Trainer(parts)
        for x, y in [next(lr_find_module._batches(parts)) for _ in range(3)]:
            trainer.train_step(x, y)
    assert _equal(_snapshot(tested)["model"], _snapshot(fresh)["model"])


@pytest.fixture(scope="module")
def digits_parts():
    return prepare(_config())


def _scripted(monkeypatch, loss_at):
    """Replace the training step by a loss that depends only on the learning rate (nothing trains)."""
    def step(self, x, y):
        return None, torch.tensor(loss_at(self.parts.optimizer.param_groups[0]["lr"]))
    monkeypatch.setattr(lr_find_module.Trainer, "train_step", step)


def test_divergence_stops_at_four_times_the_best_smoothed_loss(monkeypatch, digits_parts):
    _scripted(monkeypatch, lambda lr: 1.0 if lr < 0.01 else 50.0)
    result = range_test(digits_parts, start_lr=1e-6, end_lr=1.0, num_iter=60)
    lrs = sweep_lrs(1e-6, 1.0, 60)
    raw = [1.0 if lr < 0.01 else 50.0 for lr in lrs]
    smoothed, best = smooth(raw), np.minimum.accumulate(smooth(raw))
    stop = next(i for i in range(60) if smoothed[i] > DIVERGE * best[i])  # by hand: the first step past 4x
    assert result.stopped_early and "4x" in result.stop_reason
    assert result.lrs == lrs[:stop + 1] and result.losses == raw[:stop + 1]
    assert result.smoothed == pytest.approx(smoothed[:stop + 1])
    without = range_test(digits_parts, start_lr=1e-6, end_lr=1.0, num_iter=60, stop_div=False)
    assert not without.stopped_early and len(without.lrs) == 60


def test_a_non_finite_loss_stops_the_test_unrecorded(monkeypatch, digits_parts):
    _scripted(monkeypatch, lambda lr: 2.0 - lr if lr < 0.1 else math.nan)
    result = range_test(digits_parts, start_lr=1e-4, end_lr=1.0, num_iter=31)
    assert result.stopped_early and "nan" in result.stop_reason
    assert all(math.isfinite(v) for v in result.losses) and max(result.lrs) < 0.1
    assert set(result.suggestions) == set(RULES)
    _scripted(monkeypatch, lambda lr: 1.0 if lr < 1.2e-4 else math.inf)
    with pytest.raises(CnnlabError, match="stopped after 1 step"):
        range_test(digits_parts, start_lr=1e-4, end_lr=1.0, num_iter=31)


def test_the_result_reports_every_rule(monkeypatch, digits_parts):
    _scripted(monkeypatch, lambda lr: 2.0 + math.cos(math.log10(lr)))
    result = range_test(digits_parts, start_lr=1e-5, end_lr=10.0, num_iter=40)
    assert result.suggestions == suggest(result.lrs, result.smoothed, 40)
    assert result.suggestion() == result.suggestions["valley"]
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["suggestions"] == result.suggestions and doc["steps"] == 40 and not doc["stopped_early"]
    with pytest.raises(UnknownNameError):
        result.suggestion("steep")
    assert isinstance(result, LrFindResult)


# --- the command line --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,fragments", [
    (["lr-find", "--start-lr", "1", "--end-lr", "0.1"], ["--start-lr must be below --end-lr"]),
    (["lr-find", "--start-lr", "0"], ["--start-lr must be a positive finite learning rate, got 0"]),
    (["lr-find", "--end-lr", "-1"], ["--end-lr must be a positive finite learning rate"]),
    (["lr-find", "--start-lr", "nan"], ["--start-lr must be a positive finite"]),
    (["lr-find", "--num-iter", "1"], ["--num-iter must be an integer of at least 2"]),
    (["lr-find", "--lr", "0.1"], ["lr-find sets the learning rate of every step itself", "leave out --lr 0.1"]),
    (["lr-find", "--momentum", "2"], ["--momentum must be in [0, 1)"]),
    (["train", "--lr", "find:vally"], ["unknown lr-find rule 'vally'", "did you mean valley"]),
    (["train", "--lr", "find:steep"], ["did you mean steepest"]),
    (["train", "--lr", "fnd"], ["--lr takes a learning rate such as 0.05, or find[:RULE]", "'fnd'"]),
    (["train", "--lr", "find", "--resume", "somewhere"], ["--lr find starts a new run", "--resume"]),
    (["train", "--lr", "find", "--nproc", "2"], ["--lr find runs in one process"]),
])
def test_bad_lr_find_input_is_one_line(tmp_path, args, fragments):
    proc = cnnlab(*args, *DIGITS, cwd=tmp_path)
    assert_user_error(proc, *fragments)
    assert not list(tmp_path.iterdir())  # nothing written


def test_lr_find_out_must_be_a_png_file(tmp_path):
    (tmp_path / "folder").mkdir()
    assert_user_error(cnnlab("lr-find", *DIGITS, "--out", str(tmp_path / "folder")), "is a folder")
    assert_user_error(cnnlab("lr-find", *DIGITS, "--out", str(tmp_path / "plot.gif")), "a file ending in .png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_lr_find_prints_every_rule_and_plots(tmp_path):
    proc = cnnlab("lr-find", *DIGITS, "--num-iter", "20", "--start-lr", "1e-4", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert list(doc["suggestions"]) == list(RULES) and doc["plot"] == "lr-find.png"
    assert doc["lrs"][0] == pytest.approx(1e-4) and doc["lrs"] == sorted(doc["lrs"])
    assert doc["settings"]["dataset"] == "digits" and doc["settings"]["batch_size"] == 64
    assert (tmp_path / "lr-find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = cnnlab("lr-find", *DIGITS, "--num-iter", "20", "--out", str(tmp_path / "b"), cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert all(rule in table.stdout for rule in RULES) and str(tmp_path / "b.png") in table.stdout
    assert (tmp_path / "b.png").is_file()


def test_train_lr_find_trains_with_the_rule_and_records_it(tmp_path):
    proc = cnnlab("train", *DIGITS, "--epochs", "1", "--lr", "find:minimum/10", "--out", str(tmp_path / "run"), "-q")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "run" / "config.json").read_text())
    record = doc["lr_find"]
    assert record["rule"] == "minimum/10" and set(record["suggestions"]) == set(RULES)
    assert isinstance(doc["config"]["lr"], float) and doc["config"]["lr"] == record["lr"] == \
        record["suggestions"]["minimum/10"]
    assert f"lr-find: --lr {record['lr']:.3g} (minimum/10" in proc.stdout
    # the same run with that rate typed in: the same weights (the test left nothing behind)
    again = cnnlab("train", *DIGITS, "--epochs", "1", "--lr", repr(record["lr"]), "--out", str(tmp_path / "typed"),
                   "-q")
    assert again.returncode == 0, again.stderr
    found, typed = (torch.load(tmp_path / name / "model.pt", weights_only=False) for name in ("run", "typed"))
    found, typed = (m.get("state_dict", m) if isinstance(m, dict) else m for m in (found, typed))
    assert _equal(found, typed)
    assert "lr_find" not in json.loads((tmp_path / "typed" / "config.json").read_text())
    # going on with the run keeps the record (config.json is rewritten for the new --epochs)
    more = cnnlab("train", "--resume", str(tmp_path / "run"), "--epochs", "2", "-q")
    assert more.returncode == 0, more.stderr
    resumed = json.loads((tmp_path / "run" / "config.json").read_text())
    assert resumed["config"]["epochs"] == 2 and resumed["lr_find"] == record
