"""Shape traces: the lecture's comments reproduced, and agreement with real forward passes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

import cnnlab
from cnnlab.parsing import parse_int_list, parse_shape
from cnnlab.summary import receptive_field_map, summarize, summarize_model
from cnnlab.errors import CnnlabError

from conftest import REPO


def test_convnet_trace_is_the_lecture_comments():
    s = summarize_model("convnet")
    assert [r.transition for r in s.layers] == [
        "28x28x1 => 28x28x4",
        "28x28x4 => 14x14x4",
        "14x14x4 => 14x14x8",
        "14x14x8 => 7x7x8",
        "392 => 10",
    ]
    assert s.layers[0].formula == "(28 + 2 - 3)/1 + 1 = 28"
    assert s.layers[1].formula == "floor((28 + 0 - 2)/2) + 1 = 14"
    assert [r.params for r in s.layers] == [40, 0, 296, 0, 3930]
    assert s.total_params == 4266
    # hand count: 28*28*4*9 + 14*14*8*4*9 + 392*10
    assert s.total_macs == 28224 + 56448 + 3920 == 88592
    assert s.total_flops == 2 * 88592
    assert [(r.receptive_field, r.jump) for r in s.layers[:4]] == [(3, 1), (4, 2), (8, 2), (10, 4)]
    assert s.layers[4].receptive_field is None  # a linear layer sees the whole input


def test_summary_shapes_match_a_real_forward():
    torch.manual_seed(0)
    model = cnnlab.create_model("convnet", input_size=32, in_channels=3)
    s = summarize(model, (3, 32, 32))
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(list(o.shape[1:])))
             for m in model.modules() if next(m.children(), None) is None]
    model(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    assert [r.output_shape for r in s.layers] == seen


def test_summary_of_arbitrary_module_with_branches():
    """Residual-style graph: the receptive field of the sum is that of the longer branch."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(2, 2, 3, padding=1)
            self.b = nn.Conv2d(2, 2, 3, padding=1)
            self.short = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return self.b(torch.relu(self.a(x))) + self.short(x)

    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), Block(), nn.Conv2d(2, 2, 3, padding="same"))
    s = summarize(model, (1, 16, 16))
    by_name = {r.name: r for r in s.layers}
    assert by_name["1.b"].receptive_field == 7
    assert by_name["1.short"].receptive_field == 3
    assert by_name["2"].receptive_field == 9  # after the block (rf 7) one more 3x3
    assert by_name["2"].padding == "same" and by_name["2"].output_shape == [2, 16, 16]
    assert s.total_macs == sum(16 * 16 * 2 * c * k * k for c, k in [(1, 3), (2, 3), (2, 3), (2, 1), (2, 3)])


def test_summary_to_dict_is_json():
    d = summarize_model("convnet", (1, 8, 8)).to_dict()
    text = json.dumps(d)
    assert json.loads(text)["total_params"] == 4 * 10 + 8 * 37 + 10 * 33
    assert d["layers"][0]["transition"] == "8x8x1 => 8x8x4"


def test_parse_shape():
    assert parse_shape("1x28x28") == (1, 28, 28)
    for bad in ["28", "1x28", "axbxc", "0x1x1"]:
        with pytest.raises(CnnlabError):
            parse_shape(bad)


# ---------------------------------------------------------------------------------------
# Receptive fields: the box of every output cell, checked against the gradient's support


def test_convnet_receptive_field_map_is_the_lecture():
    s = summarize_model("convnet")
    assert [r.rf_start for r in s.layers[:4]] == [0.5, 1.0, 1.0, 2.0] and s.layers[4].rf_start is None
    with torch.device("meta"):
        model = cnnlab.create_model("convnet")
    rf = receptive_field_map(model, (1, 28, 28))
    assert [rf[n].size for n in ("conv_1", "pool_1", "conv_2", "pool_2")] == [(3, 3), (4, 4), (8, 8), (10, 10)]
    assert [rf[n].jump for n in ("conv_1", "pool_1", "conv_2", "pool_2")] == [(1, 1), (2, 2), (2, 2), (4, 4)]
    for name, size in (("conv_1", 3), ("pool_1", 4), ("conv_2", 8), ("pool_2", 10)):
        top, left, bottom, right = rf[name].box(3, 4)  # an interior cell: the whole field fits
        assert bottom - top == right - left == size
    assert rf["conv_1"].box(0, 0) == (0, 0, 2, 2)  # clipped: the padding is not input
    assert rf["pool_2"].box(6, 6) == (21, 21, 28, 28)
    assert rf["linear_1"] is None


def _support_inside_boxes(name: str, side: int, names: list[str], exact: tuple[str, ...] = (), **options) -> None:
    """For three cells of each named layer of registry model ``name``: the input pixels with a
    nonzero gradient lie inside ``box(y, x)`` (and fill it exactly for the layers in ``exact``)."""
    with torch.device("meta"):
        rf = receptive_field_map(cnnlab.create_model(name, input_size=side, **options), (3, side, side))
    torch.manual_seed(0)
    model = cnnlab.create_model(name, input_size=side, **options).eval()
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False  # keep every captured output as it was
    captured = {}
    modules = dict(model.named_modules())
    hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: captured.__setitem__(n, o)) for n in names]
    x = torch.randn(3, 3, side, side, requires_grad=True)  # one sample per cell (eval mode: independent)
    model(x)
    for h in hooks:
        h.remove()
    nonempty = 0
    for name in names:
        out = captured[name]
        h, w = out.shape[-2:]
        cells = [(0, 0), (h - 1, w - 1), (h // 2, w // 3)]
        total = sum(out[b, :, y, c].sum() for b, (y, c) in enumerate(cells))
        (grad,) = torch.autograd.grad(total, x, retain_graph=True)
        for b, (y, c) in enumerate(cells):
            top, left, bottom, right = rf[name].box(y, c)
            rows, cols = grad[b].abs().sum(0).nonzero(as_tuple=True)
            if len(rows) == 0:
                continue
            nonempty += 1
            seen = (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1)
            assert top <= seen[0] and left <= seen[1] and seen[2] <= bottom and seen[3] <= right, (name, (y, c), seen)
            if name in exact:
                assert seen == (top, left, bottom, right), (name, (y, c))
    assert nonempty >= 2 * len(names)


def test_vgg11_gradient_support_inside_the_box():
    _support_inside_boxes("vgg11", 64, ["features.0", "features.2", "features.5", "features.8", "features.13",
                                      "features"], exact=("features.0",), num_classes=2)


@pytest.mark.parametrize("shortcut", ["A", "B", "C"])
def test_resnet18_gradient_support_inside_the_box(shortcut):
    names = ["conv1", "maxpool", "layer1.0", "layer1", "layer2.0.conv1", "layer2.0.downsample", "layer2.0", "layer2"]
    if shortcut == "C":
        names.append("layer1.1.downsample")  # a projection on a block whose shape does not change
    _support_inside_boxes("resnet18", 64, names, exact=("conv1",), shortcut=shortcut, num_classes=2)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_branches_merge_as_the_union_of_their_boxes():
    """Branch a sees [i-1, i+2), branch b (two 2x2 "same" convs) [i, i+3): their sum sees [i-1, i+3),
    more than either branch (the larger branch alone would say 3)."""

    class TwoBranch(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 1, 3, padding=1)
            self.b = nn.Sequential(nn.Conv2d(1, 1, 2, padding="same"), nn.Conv2d(1, 1, 2, padding="same"))

        def forward(self, x):
            return self.a(x) + self.b(x)

    torch.manual_seed(0)
    model = nn.Sequential(TwoBranch()).double()
    rf = receptive_field_map(model, (1, 12, 12))
    assert rf["0.a"].size == (3, 3) and rf["0.b"].size == (3, 3) and rf["0"].size == (4, 4)
    assert rf["0"].box(5, 5) == (4, 4, 8, 8) and rf["0.b"].box(5, 5) == (5, 5, 8, 8)
    x = torch.randn(1, 1, 12, 12, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(model(x)[0, 0, 5, 5], x)
    rows, cols = grad[0, 0].nonzero(as_tuple=True)
    assert (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1) == (4, 4, 8, 8)


def test_option_a_shortcut_row_has_its_geometry():
    s = summarize_model("resnet18", shortcut="A")
    row = next(r for r in s.layers if r.name == "layer2.0.downsample")
    assert (row.type, row.kernel, row.stride, row.padding) == ("ZeroPadShortcut", [1, 1], [2, 2], [0, 0])
    assert row.formula == "floor((56 + 0 - 1)/2) + 1 = 28" and row.jump == 8 and row.macs == 0
    block = next(r for r in s.layers if r.name == "layer2.0.conv2")
    assert row.jump == block.jump


def test_parse_int_list():
    assert parse_int_list("1, 8,", "--batch-sizes") == [1, 8]
    for bad in ["", "a,b", "0", "-1,2"]:
        with pytest.raises(CnnlabError, match="--batch-sizes takes comma-separated positive integers"):
            parse_int_list(bad, "--batch-sizes")


def test_parsers_import_without_torch():
    """cnnlab.parsing is what the command line reads options with: importing it loads no torch, rich or numpy."""
    code = ("import sys, cnnlab.parsing as p; assert p.parse_shape('1x8x8') == (1, 8, 8); "
            "bad = [m for m in ('torch', 'rich', 'numpy') if m in sys.modules]; assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
