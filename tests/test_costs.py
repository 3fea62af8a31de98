"""What a training step costs: backward FLOPs against FlopCounterMode for the whole zoo, the
simulated peak memory against the measured one, the largest batch that fits, the shape debugger
and users' own model files (issue 11)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, conv_backward_flop
from torch.utils._python_dispatch import TorchDispatchMode

import cnnlab
from cnnlab.analysis.estimate import StepSettings, simulate_training
from cnnlab.analysis.measure import measure_inference_peak, measure_training_peak
from cnnlab.analysis.fit import fit_batch_size
from cnnlab.analysis.training import peaks_by_batch, training_cost
from cnnlab.cli.modelspec import load_model_file, run_summary
from cnnlab.errors import CnnlabError, ShapeError
from cnnlab.models import freeze
from cnnlab.parsing import format_bytes, parse_bytes
from cnnlab.summary import summarize, summarize_model

from test_cli import assert_user_error, cnnlab_in_process as run_cli

# The lecture notebook's own ConvNet (cnn-with-diff-init/default.ipynb), as a learner writes it:
# a fixed-size head and a view() in forward, returning (logits, probas).
LECTURE_CONVNET = '''
import torch
import torch.nn.functional as F


class ConvNet(torch.nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv_1 = torch.nn.Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1), padding=1)  # 28x28x1 => 28x28x4
        self.pool_1 = torch.nn.MaxPool2d(kernel_size=(2, 2), stride=(2, 2), padding=0)  # 28x28x4 => 14x14x4
        self.conv_2 = torch.nn.Conv2d(4, 8, kernel_size=(3, 3), stride=(1, 1), padding=1)  # 14x14x4 => 14x14x8
        self.pool_2 = torch.nn.MaxPool2d(kernel_size=(2, 2), stride=(2, 2), padding=0)  # 14x14x8 => 7x7x8
        self.linear_1 = torch.nn.Linear(7 * 7 * 8, num_classes)

    def forward(self, x):
        out = self.pool_1(F.relu(self.conv_1(x)))
        out = self.pool_2(F.relu(self.conv_2(out)))
        logits = self.linear_1(out.view(-1, 7 * 7 * 8))
        return logits, F.softmax(logits, dim=1)


class NeedsArgs(torch.nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = torch.nn.Linear(width, 2)
'''

LECTURE_ERROR = ("linear_1 expects 392 = 8x7x7 inputs; the layers before it give 8x5x5 = 200 for a 20x20 input; "
                 "the smallest square input that fits is 28")


@pytest.fixture(scope="module")
def lecture_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("user") / "lecture_convnet.py"
    path.write_text(LECTURE_CONVNET)
    return path


def _meta(name: str) -> nn.Module:
    with torch.device("meta"):
        return cnnlab.create_model(name)


def _first_child(model: nn.Module) -> str:
    return next(n for n, m in model.named_children() if any(True for _ in m.parameters()))


def _counted(model: nn.Module, shape, batch: int, frozen: tuple[str, ...], per_weight: dict | None = None) -> int:
    """FlopCounterMode's total for forward + cross-entropy + backward, the module(s) frozen as the
    trainer freezes them; ``per_weight`` collects each convolution_backward's FLOPs by weight."""
    model.train()
    if frozen:
        freeze(model, list(frozen))
        for name in frozen:
            model.get_submodule(name).eval()

    class Split(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is torch.ops.aten.convolution_backward.default and per_weight is not None:
                common = [t.shape if isinstance(t, torch.Tensor) else t for t in args[:10]]
                split = [conv_backward_flop(*common, [args[10][0], False, False], out_val=out) if args[10][0] else 0,
                         conv_backward_flop(*common, [False, args[10][1], False], out_val=out) if args[10][1] else 0]
                per_weight[id(args[2])] = split
            return out

    with FlopCounterMode(display=False) as counter, Split():
        logits = model(torch.empty(batch, *shape, device="meta"))
        F.cross_entropy(logits, torch.zeros(batch, dtype=torch.long, device="meta")).backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("name", cnnlab.list_models())
def test_training_flops_equal_flop_counter_mode(name):
    """Forward + backward FLOPs of every conv and linear layer, with the first block frozen or not."""
    shape = cnnlab.get_model_info(name).input_shape
    first = _first_child(_meta(name))
    for frozen in ((), (first,)):
        cost = training_cost(_meta(name), shape, 2, StepSettings(freeze=frozen))
        rows = sum(r.forward_flops + r.grad_input_flops + r.grad_weight_flops for r in cost.layers)
        assert rows == cost.training_flops == _counted(_meta(name), shape, 2, frozen), (name, frozen)
        assert cost.other_flops == 0


def test_backward_split_per_layer_matches_flop_counter():
    """Each convolution's input- and weight-gradient FLOPs, matched to FlopCounterMode's own formula
    by the weight the backward op received; a frozen layer in the middle still passes gradients on."""
    model = _meta("resnet18")
    cost = training_cost(model, (3, 64, 64), 2, StepSettings(freeze=("conv1", "bn1", "layer2")))
    per_weight: dict = {}
    _counted(model, (3, 64, 64), 2, ("conv1", "bn1", "layer2"), per_weight)
    rows = {r.name: r for r in cost.layers}
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    for name, conv in convs:
        assert [rows[name].grad_input_flops, rows[name].grad_weight_flops] == per_weight.get(id(conv.weight), [0, 0])
    assert rows["conv1"].grad_input_flops == rows["conv1"].grad_weight_flops == 0  # frozen first layer: no backward
    assert rows["layer1.0.conv1"].grad_input_flops == 0  # its input needs no gradient (all before it is frozen)
    assert rows["layer2.0.conv1"].grad_weight_flops == 0 and rows["layer2.0.conv1"].grad_input_flops > 0
    assert rows["layer3.0.conv1"].grad_weight_flops == rows["layer3.0.conv1"].forward_flops


def test_first_layer_needs_no_input_gradient():
    s = summarize_model("convnet", train=True, batch_size=4)
    conv_1, conv_2, linear = s.layers[0], s.layers[2], s.layers[4]
    assert conv_1.forward_macs == 4 * 28 * 28 * 4 * 9 and conv_1.forward_flops == 2 * conv_1.forward_macs
    assert conv_1.grad_input_flops == 0 and conv_1.grad_weight_flops == conv_1.forward_flops
    assert conv_2.grad_input_flops == conv_2.grad_weight_flops == conv_2.forward_flops
    assert linear.forward_macs == 4 * 392 * 10


@pytest.mark.parametrize("optimizer,buffers", [("sgd", 0), ("momentum", 1), ("nesterov", 1), ("adam", 2),
                                               ("adamw", 2)])
def test_optimizer_state_by_optimizer(optimizer, buffers):
    mem = training_cost(_meta("convnet"), (1, 28, 28), 8, StepSettings(optimizer=optimizer)).memory
    assert mem.params_bytes == mem.grads_bytes == 4 * 4266
    step_counters = 4 * 6 if optimizer.startswith("adam") else 0  # one float32 step counter per tensor
    assert mem.optimizer_bytes == buffers * mem.grads_bytes + step_counters
    assert sum(mem.at_peak.values()) == mem.peak_bytes  # what is alive at the peak adds up to it
    frozen = training_cost(_meta("convnet"), (1, 28, 28), 8, StepSettings(optimizer=optimizer, freeze=("conv_1",)))
    assert frozen.memory.grads_bytes == 4 * (4266 - 40)


def test_sgd_with_momentum_keeps_one_buffer():
    mem = training_cost(_meta("convnet"), (1, 28, 28), 8, StepSettings(momentum=0.9)).memory
    assert mem.optimizer_bytes == mem.grads_bytes


@pytest.mark.parametrize("name,batch,settings", [
    ("convnet", 32, StepSettings()),
    ("convnet", 256, StepSettings(optimizer="adam")),
    ("convnet", 64, StepSettings(amp=True)),
    ("convnet", 128, StepSettings(channels_last=False, optimizer="nesterov")),
    ("resblocks_projection", 16, StepSettings(optimizer="momentum")),
])
def test_estimated_peak_matches_the_measured_one(name, batch, settings):
    """The simulated step against a real one measured with the profiler (issue: within 15%; the
    ConvNet's is exact, the residual network's misses small oneDNN scratch buffers)."""
    model, shape = _meta(name), cnnlab.get_model_info(name).input_shape
    estimate = training_cost(model, shape, batch, settings).memory.peak_bytes
    measured = measure_training_peak(model, shape, batch, settings)
    assert len(measured.steps) == 2 and "profiler" in measured.method
    tolerance = 0.01 if name == "convnet" else 0.15
    assert abs(estimate - measured.peak_bytes) / measured.peak_bytes < tolerance, (estimate, measured)


def test_peak_is_not_the_sum_of_the_parts():
    mem = training_cost(_meta("convnet"), (1, 28, 28), 128, StepSettings(optimizer="adam")).memory
    assert mem.peak_bytes != mem.sum_bytes
    assert mem.peak_bytes > mem.params_bytes + mem.optimizer_bytes + mem.input_bytes
    assert "backward" in mem.peak_at and mem.at_peak["kernel workspace"] > 0


def test_peaks_by_batch_equal_direct_simulations():
    model, shape = _meta("resblocks_projection"), (1, 28, 28)
    for train in (True, False):
        got = peaks_by_batch(model, shape, [1, 5, 17], train=train)
        if train:
            for b in (1, 5):
                assert got[b] == simulate_training(model, shape, b, StepSettings(), layers=False).sim.peak
        assert got[1] < got[5] < got[17]


def test_fit_memory_trains_and_predicts_within_the_budget():
    model, shape = _meta("convnet"), (1, 28, 28)
    fit = fit_batch_size(model, shape, "4MiB")
    assert fit.peak_bytes <= parse_bytes("4MiB") < fit.next_peak_bytes
    measured = measure_training_peak(model, shape, fit.batch_size, fit.settings)
    assert measured.peak_bytes <= fit.budget_bytes  # two real steps at that batch stay within it
    infer = fit_batch_size(model, shape, 2 * 2**20, train=False)
    assert infer.batch_size > fit.batch_size // 2
    assert measure_inference_peak(model, shape, infer.batch_size).peak_bytes <= 2 * 2**20
    with pytest.raises(CnnlabError, match="even a batch of 1 needs"):
        fit_batch_size(model, shape, "10KiB")


def test_sizes_and_units():
    assert parse_bytes("8GiB") == 8 * 2**30 and parse_bytes("2GB") == 2 * 10**9 and parse_bytes("1.5 MiB") == 3 * 2**19
    assert format_bytes(512) == "512 B" and format_bytes(3 * 2**20) == "3.0 MiB" and format_bytes(2**31) == "2.00 GiB"
    for bad in ("8 parsecs", "-1GiB", "0", ""):
        with pytest.raises(CnnlabError, match="--fit-memory"):
            parse_bytes(bad)


def test_users_model_file_summarized_and_costed(lecture_file):
    model, name = load_model_file(f"{lecture_file}:ConvNet")
    assert name == "ConvNet" and isinstance(model, nn.Module)
    s = cnnlab.summarize(model, (1, 28, 28), train=True, batch_size=8)
    assert [r.transition for r in s.layers][-1] == "392 => 10" and s.total_params == 4266
    assert s.training.settings.channels_last is False  # view() needs NCHW: simulated as a real step would run
    guessed = run_summary(f"{lecture_file}:ConvNet")  # no --input: the first layer's channel, 28 px
    assert guessed.input_shape == [1, 28, 28] and "guessed" in guessed.note


def test_shape_debugger_on_a_module(lecture_file):
    model, _ = load_model_file(f"{lecture_file}:ConvNet")
    with pytest.raises(ShapeError) as err:
        summarize(model, (1, 20, 20))
    assert str(err.value) == LECTURE_ERROR
    assert [r.name for r in err.value.summary.layers] == ["conv_1", "pool_1", "conv_2", "pool_2"]
    with pytest.raises(ShapeError, match="conv_1 \\(Conv2d\\) expects 1 input channel but gets 3"):
        summarize(model, (3, 28, 28))
    plain = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 30 * 30, 2))
    with pytest.raises(ShapeError, match="2 expects 7200 = 8x30x30 inputs; the layers before it give 8x14x14 = "
                                         "1568 .* smallest square input that fits is 32"):
        summarize(plain, (3, 16, 16))


def test_model_file_mistakes_are_one_line(lecture_file, tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("import torch\nclass Net(torch.nn.Module:\n    pass\n")
    cases = [(f"{lecture_file}:NeedsArgs", "NeedsArgs\\(\\) in .* needs arguments \\(width\\)"),
             (f"{lecture_file}:Nope", "has no nn.Module class 'Nope'; its nn.Module classes: ConvNet, NeedsArgs"),
             (str(lecture_file), "defines 2 nn.Module classes"),
             (str(bad), "importing .* failed \\(line 2\\): SyntaxError"),
             (str(tmp_path / "missing.py"), "no such file")]
    for spec, message in cases:
        with pytest.raises(CnnlabError, match=message):
            run_summary(spec)


def test_cli_shape_debugger_prints_the_table_then_one_line(lecture_file):
    proc = run_cli("summary", f"{lecture_file}:ConvNet", "--input", "1x20x20")
    assert_user_error(proc, LECTURE_ERROR)
    assert "pool_2" in proc.stdout and "10x10x8 => 5x5x8" in proc.stdout and "linear_1" not in proc.stdout
    proc = run_cli("summary", "vgg16", "--input", "3x16x16")
    assert_user_error(proc, "the feature map vanishes at features.30 (MaxPool2d): a 512x1x1 map (from a 16x16 input)",
                      "gives o = floor((1 + 0 - 2)/2) + 1 = 0", "the smallest square input that fits is 32")
    assert "features.29" in proc.stdout and "features.31" not in proc.stdout


def test_cli_train_json_measure_and_fit(lecture_file):
    proc = run_cli("summary", "convnet", "--train", "--batch-size", "8", "--optimizer", "adam", "--fit-memory", "4MiB",
                   "--fit-for", "tensors", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert {"forward_macs", "forward_flops", "grad_input_flops", "grad_weight_flops", "saved_bytes"} <= set(d["layers"][0])
    mem = d["memory"]
    assert {"params_bytes", "grads_bytes", "optimizer_bytes", "activations_bytes", "peak_bytes"} <= set(mem)
    assert mem["optimizer_bytes"] == 2 * mem["grads_bytes"] + 24 and d["training"]["batch_size"] == 8
    assert sum(r["forward_flops"] + r["grad_input_flops"] + r["grad_weight_flops"] for r in d["layers"]) == \
        d["training"]["training_flops"]
    fit = d["fit"]
    assert fit["train"] and fit["settings"]["optimizer"] == "adam" and fit["peak_bytes"] <= 4 * 2**20 < fit["next_peak_bytes"]
    proc = run_cli("summary", str(lecture_file) + ":ConvNet", "--measure", "--batch-size", "16")
    assert proc.returncode == 0, proc.stderr
    assert "Measured peak" in proc.stdout and "torch.profiler" in proc.stdout and "peak of the step" in proc.stdout
    assert_user_error(run_cli("summary", "convnet", "--fit-memory", "1KiB", "--fit-for", "tensors"),
                      "even a batch of 1 needs")
    with pytest.raises(CnnlabError, match="--eval goes with --fit-memory"):
        run_summary("convnet", eval=True)


def test_conv_buffer_arithmetic_matches_the_tensors():
    from cnnlab.arithmetic import conv_buffer_bytes

    n, c, k, h, w = 2, 3, 5, 9, 7
    x = torch.randn(n, c, h, w)
    assert conv_buffer_bytes("im2col", n, c, k, h, w) == F.unfold(x, 3, padding=1).numel() * 4
    xp = F.pad(x, (1, 1, 1, 1))
    spectra = torch.fft.rfft2(xp).numel() + torch.fft.rfft2(xp[:1, :1].expand(k, c, -1, -1)).numel() + \
        torch.fft.rfft2(xp[:, :1].expand(n, k, -1, -1)).numel()
    assert conv_buffer_bytes("fft", n, c, k, h, w) == spectra * 8  # complex64
    tiles = n * math.ceil(h / 2) * math.ceil(w / 2)
    assert conv_buffer_bytes("winograd", n, c, k, h, w) == 4 * 16 * (tiles * c + k * c + tiles * k)
    assert conv_buffer_bytes("winograd4", n, c, k, h, w, m=4) == 4 * 36 * (n * 3 * 2 * (c + k) + k * c)


def test_bench_conv_memory_column():
    from cnnlab.conv.bench import bench_conv

    rows = {r.algorithm: r for r in bench_conv([(16, 12)], (1,), ("im2col", "winograd"), runs=1)}
    assert rows["F.conv2d"].buffer_bytes is None and rows["F.conv2d"].measured_bytes is not None
    assert rows["im2col"].buffer_bytes == 12 * 12 * 16 * 9 * 4
    assert rows["im2col"].measured_bytes >= rows["im2col"].buffer_bytes // 2
    assert rows["winograd"].measured_bytes > 0
