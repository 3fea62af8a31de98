"""Named recipes (settings files), the time-to-accuracy options they use (fractional epochs, EMA,
Lookahead, TTA, a compiled step), result.json's timing record, and the recipes' model."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import cnnlab
from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.training import TrainConfig, Trainer, evaluate_run, launch, resume, train
from cnnlab.training.ema import WeightEma
from cnnlab.training.lookahead import Lookahead
from cnnlab.training.recipes import RECIPE_DIR, load_recipe, recipe_config, recipe_names
from cnnlab.training.tta import shift_images, tta_kind, tta_logits, tta_views

from conftest import REPO
from test_cli import assert_user_error, cnnlab_in_process as run_cli
from test_training_system import StopAfter

SMALL = dict(dataset="digits", batch_size=32, lr=0.05)  # 1,438 training images: 45 steps per epoch


# ----------------------------------------------------------------------------- the shipped recipes

def test_the_shipped_recipes_are_there_and_described():
    assert {"lecture", "mnist-fast", "mnist-fastest", "mnist-best"} <= set(recipe_names())
    for name in recipe_names():
        recipe = load_recipe(name)
        assert recipe.path.parent == RECIPE_DIR and recipe.name == name
        assert len(recipe.description) > 40, f"{name} needs a description"


def test_the_lecture_recipe_is_the_default_run():
    assert recipe_config("lecture") == TrainConfig(recipe="lecture")


@pytest.mark.parametrize("name", recipe_names())
def test_each_recipe_validates_and_trains_a_few_batches(name, mnist_root):
    config = recipe_config(name, {"limit_batches": 2})
    config.validate()
    trainer = Trainer(config)  # its data, model, optimizer, schedule and tricks, as `cnnlab train --recipe` builds them
    losses, _, _, seen = trainer.train_one_epoch(1)
    assert len(losses) == 2 and seen == 2 * config.batch_size and all(math.isfinite(v) for v in losses)
    correct, total = trainer._score(trainer.test_data.subset(torch.arange(256)))  # scored as the recipe says (TTA)
    assert total == 256 and correct > 0
    assert trainer.model.__class__ is cnnlab.create_model(config.model, **config.model_options).__class__


def test_flags_given_on_the_command_line_override_the_recipe(tmp_path):
    # --no-amp and --lr 0.05 are TrainConfig's defaults: typed, they still win over the recipe's values
    proc = run_cli("train", "--recipe", "mnist-fast", "--dataset", "digits", "--epochs", "1", "--limit-batches", "2",
                   "--lr", "0.05", "--no-amp", "--quiet", "--out", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert (saved["lr"], saved["amp"], saved["epochs"], saved["dataset"]) == (0.05, False, 1, "digits")  # flags
    assert (saved["model"], saved["momentum"], saved["tta"], saved["recipe"]) == ("convnet_bn", 0.9, True, "mnist-fast")


def test_a_users_own_recipe_file(tmp_path):
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"description": "mine", "model": "convnet", "dataset": "digits", "lr": 0.2,
                                "epochs": 2, "model_options": {"dropout2d": 0.1}}))
    config = recipe_config(str(mine), {"epochs": 1})
    assert (config.lr, config.epochs, config.model_options, config.recipe) == (0.2, 1, {"dropout2d": 0.1}, str(mine))
    toml = tmp_path / "mine.toml"
    toml.write_text('model = "convnet_bn"\nmodel_options = { width = 8 }\nepochs = 0.5\ntta = true\n')
    assert recipe_config(str(toml)).model_options == {"width": 8}


def test_recipe_mistakes_are_one_line(tmp_path):
    assert_user_error(run_cli("train", "--recipe", "mnist-fats", "--out", str(tmp_path / "a")),
                      "unknown recipe 'mnist-fats'", "did you mean mnist-fast")
    assert not (tmp_path / "a").exists()
    with pytest.raises(CnnlabError, match="no such file"):
        recipe_config(str(tmp_path / "missing.toml"))
    bad = {"typo.toml": ('lrr = 0.1\n', "unknown setting 'lrr'; did you mean lr?"),
           "type.json": ('{"epochs": "ten"}', "epochs takes float, got 'ten'"),
           "broken.toml": ('lr = \n', "cannot read it"),
           "nested.toml": ('recipe = "lecture"\n', "unknown setting 'recipe'")}
    for name, (text, fragment) in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(CnnlabError, match="^[^\n]*$") as err:
            recipe_config(str(tmp_path / name))
        assert fragment in str(err.value), str(err.value)
    with pytest.raises(UnknownNameError):
        load_recipe("mnist-fastets")


def test_recipes_command_lists_and_shows_without_torch():
    code = ("import sys; from cnnlab.cli import run; assert run(['recipes']) == 0; "
            "assert run(['recipes', 'mnist-fast']) == 0; assert 'torch' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    for name in recipe_names():
        assert name in proc.stdout
    assert "epochs = 1.25" in proc.stdout  # the settings file itself
    listed = json.loads(run_cli("recipes", "--format", "json").stdout)
    assert [r["name"] for r in listed] == recipe_names() and listed[0]["settings"]


def test_resume_refuses_a_recipe(tmp_path):
    with pytest.raises(CnnlabError, match="leave out --recipe"):
        launch(TrainConfig(recipe="mnist-fast"), {"recipe"}, resume_dir=tmp_path)


# ----------------------------------------------------------------------------- options of the loop

def test_fractional_epochs_stop_inside_the_last_epoch_with_the_schedule():
    result = train(TrainConfig(epochs=1.5, schedule="cosine", **SMALL), write_run_dir=False)
    assert len(result.history) == 2 and len(result.batch_losses) == 68  # round(1.5 * 45)
    assert result.config.total_steps(45) == 68 and TrainConfig(epochs=2.0).epochs == 2
    lrs = []
    trainer = Trainer(TrainConfig(epochs=1.5, schedule="cosine", **SMALL))
    for _ in range(68):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        trainer.scheduler.step()
    assert lrs[0] == 0.05 and lrs[-1] < 1e-4  # the cosine ends where the run ends


def test_ema_is_the_exponential_moving_average():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = WeightEma(model, decay=0.9)
    start = [p.detach().clone() for p in model.parameters()]
    expected = [p.double() for p in start]
    for step in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[1].running_mean.add_(1.0)
        ema.update(model)
        expected = [0.9 * e + 0.1 * p.double() for e, p in zip(expected, model.parameters())]
    for got, want in zip(ema.module.parameters(), expected):
        torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)
    assert torch.equal(ema.module[1].running_mean, model[1].running_mean)  # buffers copied, not averaged
    assert not any(p.requires_grad for p in ema.module.parameters())
    again = WeightEma(model, decay=0.9)
    again.load_state_dict(ema.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(again.module.parameters(), ema.module.parameters()))


def test_lookahead_pulls_slow_weights_every_k_steps():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    lookahead = Lookahead(model, k=3, alpha=0.5)
    for step in range(1, 7):
        with torch.no_grad():
            model.weight.add_(2.0)  # what the inner optimizer would do
        lookahead.step()
        if step == 2:
            assert model.weight[0, 0].item() == 5.0  # fast weights untouched between syncs
        if step == 3:  # slow 1 + 0.5 * (7 - 1) = 4; fast restarts there
            assert model.weight[0, 0].item() == 4.0 and lookahead.slow[0][0, 0].item() == 4.0
    assert model.weight[0, 0].item() == 4.0 + 0.5 * 6.0  # second sync: slow 4, fast 10 -> 7
    assert lookahead.state_dict()["steps"] == 6


def test_shifted_images_and_tta_weights():
    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).view(2, 1, 3, 3)
    down = shift_images(x, 1, 0)
    assert torch.equal(down[:, :, 1:], x[:, :, :2]) and torch.equal(down[:, :, 0], torch.zeros(2, 1, 3))
    left = shift_images(x, 0, -1)
    assert torch.equal(left[..., :2], x[..., 1:]) and left[..., 2].abs().sum() == 0
    views, weights = tta_views(x, "shift+flip")
    assert len(views) == 10 and weights == [1.0, 0.5, 0.5, 0.5, 0.5] * 2
    assert torch.equal(views[5], x.flip(-1))
    assert (tta_kind("mnist", True), tta_kind("cifar10", True), tta_kind("mnist", False)) == ("shift", "shift+flip", None)


def test_tta_logits_are_the_weighted_mean_over_the_views():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 25, 4)).eval()
    x = torch.rand(6, 1, 5, 5)
    shifted = [F.pad(x, (0, 0, 1, 0))[:, :, :5], F.pad(x, (0, 0, 0, 1))[:, :, 1:],
               F.pad(x, (1, 0, 0, 0))[..., :5], F.pad(x, (0, 1, 0, 0))[..., 1:]]  # down, up, right, left
    with torch.no_grad():
        want = (model(x) + 0.5 * sum(model(s) for s in shifted)) / 3.0
        got = tta_logits(model, x, "shift")
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(tta_logits(model, x, None), model(x))


def test_tta_margin_augments_only_the_unsure_images():
    """margin: images whose top-1/top-2 probabilities are closer than it get the full TTA logits, the
    rest their plain logits; margin 1 (or None) is TTA for all, a tiny margin plain for (nearly) all."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 25, 4)).eval()
    x = torch.rand(40, 1, 5, 5) * 4
    with torch.no_grad():
        plain, full = model(x), tta_logits(model, x, "shift")
        top2 = plain.softmax(1).topk(2, dim=1).values
        gap = top2[:, 0] - top2[:, 1]
        margin = float(gap.median())  # half the images are unsure
        got = tta_logits(model, x, "shift", margin)
        unsure = gap < margin
        assert 0 < int(unsure.sum()) < len(x)
        torch.testing.assert_close(got[unsure], full[unsure], rtol=1e-5, atol=1e-5)
        assert torch.equal(got[~unsure], plain[~unsure])
        torch.testing.assert_close(tta_logits(model, x, "shift", 1.0), full, rtol=1e-5, atol=1e-5)
        sure = tta_logits(model, x, "shift", float(gap.min()) / 2)
        assert torch.equal(sure, plain)
        with pytest.raises(ValueError):
            tta_logits(model, x, "shift", 0.0)


def test_tta_margin_is_a_checked_setting_and_scores_the_run(tmp_path):
    for bad in ("0", "1.5"):
        assert_user_error(run_cli("train", "--dataset", "digits", "--tta-margin", bad, "--out", str(tmp_path / bad)),
                          "--tta-margin", "(0, 1]")
    assert not any(tmp_path.iterdir())
    result = train(TrainConfig(**SMALL, tta=True, tta_margin=0.3), out=str(tmp_path / "run"))
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert saved["tta_margin"] == 0.3 and 0 < result.test_acc <= 100


def test_convnet_bn_crop_looks_at_the_centre_only():
    """-o crop=c: the same network (same parameters) on the central (28-2c)^2 pixels."""
    torch.manual_seed(0)
    cropped = cnnlab.create_model("convnet_bn", crop=2).eval()
    whole = cnnlab.create_model("convnet_bn", input_size=24).eval()
    whole.load_state_dict(cropped.state_dict())
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(cropped(x), whole(x[:, :, 2:-2, 2:-2]), rtol=1e-5, atol=1e-5)
        y = x.clone()
        y[:, :, :2] = y[:, :, -2:] = y[..., :2] = y[..., -2:] = 7.0  # the border is never seen
        assert torch.equal(cropped(x), cropped(y))
    assert sum(p.numel() for p in cropped.parameters()) == 24_480
    rows = {r.name: r for r in cnnlab.summarize(cropped, (1, 28, 28)).layers}
    assert rows["crop"].output_shape[-2:] == [24, 24] and rows["conv_1"].output_shape[-2:] == [12, 12]
    with pytest.raises(CnnlabError, match="crop"):
        cnnlab.create_model("convnet_bn", crop=14)


NEW_OPTIONS = dict(epochs=2.5, ema_decay=0.9, lookahead_steps=5, tta=True, momentum=0.9, nesterov=True,
                   schedule="onecycle", warmup_epochs=0.5, label_smoothing=0.1, amp=True)


def test_resume_is_bitwise_with_the_new_options(tmp_path):
    config = TrainConfig(**SMALL, **NEW_OPTIONS)
    straight = train(config, out=str(tmp_path / "straight"))
    with pytest.raises(KeyboardInterrupt):
        train(config, [StopAfter(2)], out=str(tmp_path / "stopped"))
    resumed = resume(tmp_path / "stopped")
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r.test_acc for r in resumed.history] == [r.test_acc for r in straight.history]
    saved = torch.load(tmp_path / "stopped" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(saved[k], a[k].cpu()) for k in a)  # model.pt holds the averaged weights


def test_ema_and_tta_change_what_is_scored(tmp_path):
    plain = train(TrainConfig(epochs=1, **SMALL), write_run_dir=False)
    ema = train(TrainConfig(epochs=1, ema_decay=0.9, **SMALL), write_run_dir=False)
    assert not torch.equal(plain.model.conv_1.weight, ema.model.conv_1.weight)
    run = tmp_path / "tta"
    tta = train(TrainConfig(epochs=1, tta=True, **SMALL), out=str(run))
    assert torch.equal(plain.model.conv_1.weight, tta.model.conv_1.weight)  # same training ...
    correct, total, _ = evaluate_run(run)  # ... and `cnnlab evaluate` scores it as it was trained to be scored
    assert (correct, total) == (tta.test_correct, tta.test_total)


def test_result_json_records_time_to_accuracy(tmp_path):
    train(TrainConfig(epochs=2, **SMALL), out=str(tmp_path / "run"))
    doc = json.loads((tmp_path / "run" / "result.json").read_text())
    assert [e["epoch"] for e in doc["epochs"]] == [1, 2]
    metrics = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]
    assert [round(e["test_acc"], 4) for e in doc["epochs"]] == [float(r.split(",")[4]) for r in metrics]
    cumulative = [e["train_seconds"] for e in doc["epochs"]]
    assert 0 < cumulative[0] <= cumulative[1] == pytest.approx(doc["train_seconds"])
    assert doc["train_seconds"] <= doc["seconds"] <= doc["process_seconds"]
    assert doc["data_seconds"] > 0 and doc["compile_seconds"] == 0 and "data decoding" in doc["timing"]


def test_new_settings_are_checked():
    for bad, fragment in ((dict(ema_decay=1.5), "--ema-decay must be in (0, 1)"),
                          (dict(lookahead_steps=0), "--lookahead-steps must be a positive integer"),
                          (dict(lookahead_alpha=0.0), "--lookahead-alpha must be in (0, 1]"),
                          (dict(epochs=0), "--epochs must be a positive integer"),
                          (dict(epochs=True), "--epochs must be a positive integer")):
        with pytest.raises(CnnlabError, match="^[^\n]*$") as err:
            TrainConfig(dataset="digits", **bad).validate()
        assert fragment in str(err.value)


@pytest.mark.slow
def test_compiled_training_step(tmp_path):
    eager = train(TrainConfig(epochs=1, limit_batches=3, **SMALL), write_run_dir=False)
    compiled = train(TrainConfig(epochs=1, limit_batches=3, compile=True, **SMALL), out=str(tmp_path / "run"))
    assert compiled.compile_seconds > 0
    for a, b in zip(eager.model.parameters(), compiled.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert json.loads((tmp_path / "run" / "result.json").read_text())["compile_seconds"] == compiled.compile_seconds


# ----------------------------------------------------------------------------- the recipes' model

def test_convnet_bn_parameters_and_shapes():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(cnnlab.create_model("convnet_bn")) == 24_480  # 576 + 4,608 + 18,432 + 640 + BN 224
    assert count(cnnlab.create_model("convnet_bn", width=24)) == 54_000
    model = cnnlab.create_model("convnet_bn", width=8, num_classes=3)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 3)
    with pytest.raises(CnnlabError):
        cnnlab.create_model("convnet_bn", width=0)


def test_convnet_bn_stem_without_padding_still_sees_every_pixel():
    """-o stem_padding=0: the same parameters, smaller maps (24 -> 10 -> 5 -> 2 on the 24x24 crop), and
    the stem's 10x10 outputs together still read every pixel of the crop; -o ceil_mode=true pools the
    5x5 map's last row and column too (3x3)."""
    model = cnnlab.create_model("convnet_bn", crop=2, stem_padding=0)
    assert sum(p.numel() for p in model.parameters()) == 24_480
    rows = {r.name: r for r in cnnlab.summarize(model, (1, 28, 28)).layers}
    assert rows["conv_1"].output_shape[-2:] == [10, 10] and rows["pool_3"].output_shape[-2:] == [2, 2]
    x = torch.rand(1, 1, 24, 24, requires_grad=True)
    model.conv_1(x).abs().sum().backward()
    assert bool((x.grad != 0).all())  # no pixel outside every 6x6 window
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(CnnlabError, match="stem_padding"):
        cnnlab.create_model("convnet_bn", stem_padding=3)
    ceil = cnnlab.create_model("convnet_bn", crop=2, stem_padding=0, ceil_mode=True)
    assert {r.name: r for r in cnnlab.summarize(ceil, (1, 28, 28)).layers}["pool_3"].output_shape[-2:] == [3, 3]
    default = {r.name: r for r in cnnlab.summarize(cnnlab.create_model("convnet_bn", ceil_mode=True), (1, 28, 28)).layers}
    assert default["pool_3"].output_shape[-2:] == [4, 4]  # 28 px: 14 -> 7 -> 4 (3 rounding down)


def test_convnet_bn_stem_is_a_3x3_conv_over_pixel_unshuffle():
    """The 6x6 stride-2 stem with padding 2 = a 3x3 conv (padding 1) over 2x2 space-to-depth blocks."""
    torch.manual_seed(0)
    stem = cnnlab.create_model("convnet_bn").conv_1
    w = stem.weight  # (16, 1, 6, 6)
    # tap (a, b) of block offset (dy, dx): weight row 2*dy + a, column 2*dx + b
    w3 = w.view(16, 1, 3, 2, 3, 2).permute(0, 1, 3, 5, 2, 4).reshape(16, 4, 3, 3)
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(stem(x), F.conv2d(F.pixel_unshuffle(x, 2), w3, padding=1), rtol=1e-5, atol=1e-5)
