"""cnnlab.optimize and cnnlab bench infer: every mode computes its model's function (fp32 modes
within 1e-4 of eager, bf16 and int8 by top-1 agreement), calibration is seeded and repeatable,
a mode the machine cannot run is one line and exit 2, and int8 ONNX export is checked. No timing
is asserted; the models are the lecture's ConvNet on 8x8 digits and a tiny conv/BN net, and only
two torch.compile calls are made."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError, RunDirError
from cnnlab.inference import FP32_TOLERANCE, MIN_AGREEMENT, mode_support, optimize, relative_error, top1_agreement
from cnnlab.models import create_model

from test_cli import assert_user_error, cnnlab, cnnlab_in_process as run_cli

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A trained ConvNet on the bundled digits (8x8, 359 test images)."""
    from cnnlab.training import TrainConfig, train

    out = tmp_path_factory.mktemp("infer") / "digits"
    train(TrainConfig(dataset="digits", epochs=6, batch_size=32, lr=0.1, momentum=0.9, out=str(out)))
    return out


@pytest.fixture(scope="module")
def digits(digits_run):
    """(run, test images normalised as in training, test labels, calibration batches)."""
    from cnnlab.data import iterate_batches
    from cnnlab.inference.runs import load_split, run_calibration
    from cnnlab.runs import load_run

    run = load_run(digits_run)
    x, y = next(iterate_batches(load_split(run, "test"), 10_000))
    return run, x, y, run_calibration(run, images=128)


def conv_bn_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    with torch.no_grad():  # BN statistics that are not the identity, so folding them matters
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.mark.parametrize("mode", ["eager", "channels_last", "onnxruntime"])
def test_fp32_modes_compute_the_same_function(mode):
    net = conv_bn_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.rand(6, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    module = optimize(net, mode, x)
    with torch.no_grad():
        ref = net(x)
        for batch in (x, x[:1], torch.rand(9, 3, 12, 12)):  # other batch sizes than the example's too
            out = module(batch)
            assert out.dtype == torch.float32 and out.shape == (len(batch), 5)
            assert relative_error(out, net(batch)) <= FP32_TOLERANCE
    assert relative_error(module(x), ref) <= FP32_TOLERANCE
    assert (module.mode, module.precision) == (mode, "fp32") and module.setup_s >= 0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items()), "optimize changed the model"
    assert net.training is False and next(net.parameters()).is_contiguous()


def test_channels_last_folds_batchnorm():
    from cnnlab.inference import fold_batchnorm

    folded = fold_batchnorm(conv_bn_net())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())


def test_compile_matches_eager_and_pads_a_last_partial_batch():
    model = create_model("convnet").eval()
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    module = optimize(model, "compile", x)
    with torch.no_grad():
        assert relative_error(module(x), model(x)) <= FP32_TOLERANCE
        partial = x[:5]  # between half and all of a compiled size: zero-padded, not recompiled
        assert relative_error(module(partial), model(partial)) <= FP32_TOLERANCE
    assert module.batch_sizes == {8} and module.mode == "compile"


def test_bf16_and_int8_agree_with_eager_on_a_trained_run(digits):
    run, x, y, calibration = digits
    with torch.no_grad():
        ref = run.model(x)
    modes = ["int8"] + (["bf16"] if mode_support("bf16")[0] else [])
    for mode in modes:
        module = optimize(run.model, mode, x, calibration)
        out = module(x)
        assert out.dtype == torch.float32 and module.precision == mode
        assert top1_agreement(out, ref) >= MIN_AGREEMENT, mode
        acc, ref_acc = (out.argmax(1) == y).float().mean(), (ref.argmax(1) == y).float().mean()
        assert acc >= ref_acc - 0.01, mode  # 359 test images: 1 image is 0.28 pt


def test_int8_calibration_is_seeded_and_repeatable(digits):
    from cnnlab.inference import calibration_batches
    from cnnlab.inference.runs import run_calibration

    run, x, _, calibration = digits
    again = run_calibration(run, images=128)
    assert len(again) == 4 and all(torch.equal(a, b) for a, b in zip(calibration, again))
    other = run_calibration(run, images=128, seed=1)
    assert not all(torch.equal(a, b) for a, b in zip(calibration, other))
    first = optimize(run.model, "int8", x[:16], calibration)
    second = optimize(run.model, "int8", x[:16], [(b, None) for b in again])  # (x, y) pairs, as a DataLoader gives
    assert first.onnx_model == second.onnx_model
    assert torch.equal(first(x), second(x))
    assert [len(b) for b in calibration_batches(torch.cat(calibration))] == [32] * 4


def test_auto_picks_a_mode_within_the_budget(digits, monkeypatch):
    import cnnlab.inference.modes as opt

    monkeypatch.setattr(opt, "AUTO_CANDIDATES", ("int8", "onnxruntime", "channels_last", "eager"))  # no compiles here
    run, x, _, calibration = digits
    module = optimize(run.model, "auto", x[:32], calibration)
    assert module.chosen in ("int8", "onnxruntime", "channels_last", "eager")
    assert {t["mode"] for t in module.trials} == {"int8", "onnxruntime", "channels_last", "eager"}
    assert all(t["within_budget"] for t in module.trials if t["mode"] != "int8")
    assert top1_agreement(module(x), run.model(x)) >= MIN_AGREEMENT


def test_unavailable_modes_say_why(monkeypatch):
    import cnnlab.inference.capability as cap

    ok, reason = mode_support("int8", "cuda")
    assert not ok and "CPU" in reason and "bf16 or fp16" in reason
    assert not mode_support("fp16", "cpu")[0]
    monkeypatch.setattr(cap, "cpu_capability", lambda: "AVX2")
    ok, reason = mode_support("bf16", "cpu")
    assert not ok and "AVX-512-BF16 or AMX" in reason and "AVX2" in reason
    with pytest.raises(CnnlabError, match="bf16 needs"):
        optimize(create_model("convnet"), "bf16", torch.rand(2, 1, 28, 28))
    with pytest.raises(CnnlabError, match="unknown optimize mode 'int4'"):
        optimize(create_model("convnet"), "int4", torch.rand(2, 1, 28, 28))


def digit_png(folder) -> str:
    import numpy as np
    from PIL import Image

    path = folder / "digit.png"
    Image.fromarray((np.arange(64, dtype=np.uint8) * 4).reshape(8, 8)).save(path)
    return str(path)


def in_process(capsys, *args: str) -> tuple[int, str, str]:
    """The CLI's ``run`` in this process (torch is loaded already): (exit code, stdout, stderr)."""
    from cnnlab.cli import run

    capsys.readouterr()
    code = run(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_unsupported_modes_are_one_line_exit_2(digits_run, tmp_path, capsys):
    assert_user_error(run_cli("evaluate", str(digits_run), "--optimize", "fp16"), "fp16 runs on CUDA only")
    assert_user_error(cnnlab("predict", str(digits_run), digit_png(tmp_path), "--optimize", "bf16",
                              env={"ATEN_CPU_CAPABILITY": "avx2"}), "bf16 needs a CPU with AVX-512-BF16 or AMX")
    for args, fragment in [(("bench", "infer", "convnet", "--modes", "eager,int4"), "unknown mode 'int4'"),
                           (("bench", "infer", "convnet", "--batch-sizes", "0"), "--batch-sizes"),
                           (("export", str(digits_run), "--quantize", "int4"), "--quantize"),
                           (("evaluate", str(digits_run), "--optimize", "fastest"), "unknown optimize mode")]:
        code, _, err = in_process(capsys, *args)
        assert code == 2 and err.count("\n") == 1 and err.startswith("cnnlab: error: ") and fragment in err, err
    assert not (digits_run / "model.int8.onnx").exists() and not list(digits_run.glob(".*.tmp"))


def test_evaluate_and_predict_through_optimize(digits_run, tmp_path, capsys):
    from cnnlab.training.evaluate import evaluate_run, predict

    correct, total, _ = evaluate_run(digits_run, device="cpu")
    correct8, total8, _ = evaluate_run(digits_run, device="cpu", optimize="int8")
    assert total == total8 == 359 and abs(correct - correct8) <= 3
    code, out, err = in_process(capsys, "evaluate", str(digits_run), "--optimize", "onnxruntime", "--device", "cpu")
    assert code == 0 and err == "", err
    assert f"({correct}/359) (--optimize onnxruntime)" in out
    image = digit_png(tmp_path)
    plain = predict(digits_run, [image], device="cpu")
    assert predict(digits_run, [image], device="cpu", optimize="channels_last")[0][1][0][0] == plain[0][1][0][0]


def test_bench_infer_rows_for_a_run_and_a_model(digits_run, capsys):
    from cnnlab.inference.bench import bench_infer

    result = bench_infer([str(digits_run)], modes="eager,channels_last,int8", batch_sizes="1,4", repeats=1,
                         warmup=0, threads=1)
    assert "torch" in result["machine"] and result["threads"] == 1
    rows = result["rows"]
    assert {(r["mode"], r["batch_size"]) for r in rows} == {
        (m, b) for m in ("eager", "channels_last", "int8", "ort-fp32", "ort-int8") for b in (1, 4)}
    for r in rows:
        assert r["images_per_s"] > 0 and r["ms_per_batch"] > 0 and r["setup_s"] >= 0
        assert 0 <= r["test_acc"] <= 100 and (r["peer"] or r["agreement"] >= 99.0)
    by = {(r["mode"], r["batch_size"]): r for r in rows}
    assert by["eager", 1]["agreement"] == 100.0 and by["eager", 1]["x_eager"] == 1.0
    assert by["int8", 4]["x_ort"] is not None and by["int8", 4]["precision"] == "int8"
    assert by["ort-int8", 4]["peer"] and by["ort-fp32", 1]["engine"] == "onnxruntime"
    code, out, err = in_process(capsys, "bench", "infer", "convnet", "--modes", "channels_last", "--no-peers",
                                "--batch-sizes", "2", "--repeats", "1", "--format", "json")
    assert code == 0 and err == "", err
    doc = json.loads(out)
    assert [(r["model"], r["mode"], r["batch_size"]) for r in doc["rows"]] == [("convnet", "eager", 2),
                                                                             ("convnet", "channels_last", 2)]
    assert {"images_per_s", "ms_per_batch", "test_acc", "agreement"} <= set(doc["rows"][0])


def test_export_int8_is_checked_self_contained_and_atomic(digits_run, tmp_path, capsys):
    import onnxruntime as ort

    from cnnlab.data import iterate_batches
    from cnnlab.export import export_onnx_int8
    from cnnlab.inference.runs import load_split
    from cnnlab.runs import load_run

    path, agreement, checked = export_onnx_int8(digits_run)
    assert path == digits_run / "model.int8.onnx" and checked == 359 and agreement >= 0.99
    copy = tmp_path / "elsewhere.onnx"
    shutil.copy(path, copy)  # weights inside: the file alone runs
    session = ort.InferenceSession(str(copy), providers=["CPUExecutionProvider"])
    assert any(n.op_type == "QuantizeLinear" for n in __import__("onnx").load(str(copy)).graph.node)
    run = load_run(digits_run)
    x, _ = next(iterate_batches(load_split(run, "test"), 50))  # [0, 1] images: the file normalises itself
    got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    assert top1_agreement(got, run.model(x)) >= 0.96
    with pytest.raises(RunDirError, match="already exists"):
        export_onnx_int8(digits_run)
    before = path.read_bytes()
    code, out, err = in_process(capsys, "export", str(digits_run), "--quantize", "int8", "--overwrite")
    assert code == 0 and err == "", err
    assert "top-1 agreement" in out and path.read_bytes() == before  # same seed, same file
    assert not list(digits_run.glob(".*.tmp"))
