"""cnnlab.visualize.explain_cell: the multiply-adds (or pooling window) behind one feature-map cell
add up to the layer's own output, on single layers of every geometry and on registry models."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import cnnlab
from cnnlab.errors import CnnlabError, CnnlabTypeError, CnnlabValueError, UnknownNameError
from cnnlab.trace import receptive_field_map, trace
from cnnlab.visualize import CellExplanation, explain_cell

CONV_KEYS = {"kind", "layer", "type", "channel", "y", "x", "value", "total", "bias", "inputs", "group", "groups",
             "kernel", "stride", "padding", "dilation", "rf_box"}
ROW_KEYS = {"channel", "window", "kernel", "products", "sum", "padding"}


def own_output(model: nn.Module, x: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's input and output in a plain forward pass (forward hook, copies before any in-place op)."""
    seen = {}
    module = dict(model.named_modules())[layer]
    pre = module.register_forward_pre_hook(lambda m, i: seen.__setitem__("in", i[0].detach().clone()))
    post = module.register_forward_hook(lambda m, i, o: seen.__setitem__("out", o.detach().clone()))
    model.eval()
    with torch.no_grad():
        model(x)
    pre.remove()
    post.remove()
    return seen["in"], seen["out"]


def cells(h: int, w: int) -> list[tuple[int, int]]:
    """The four corners (padding shows there) and the middle."""
    return sorted({(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (h // 2, w // 2)})


def unfolded_window(conv: nn.Conv2d, inp: torch.Tensor, y: int, x: int, ow: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The window and padding mask by another road: F.pad (the layer's own mode) + F.unfold of the
    input and of a ones image (zero-padded: its zeros are the padding)."""
    pads = conv._reversed_padding_repeated_twice
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    k, d, s = conv.kernel_size, conv.dilation, conv.stride
    col = y * ow + x
    padded = F.pad(inp, pads, mode=mode)
    win = F.unfold(padded, k, dilation=d, stride=s)[0, :, col].reshape(inp.shape[1], *k)
    ones = F.pad(torch.ones_like(inp[:, :1]), pads)
    mask = F.unfold(ones, k, dilation=d, stride=s)[0, :, col].reshape(*k) == 0
    return win, mask


def check_conv(model: nn.Module, x: torch.Tensor, layer: str, channel: int, y: int, x_: int,
               tol: float = 1e-4) -> CellExplanation:
    inp, out = own_output(model, x, layer)
    e = explain_cell(model, x, layer, channel, y, x_)
    want = float(out[0, channel, y, x_])
    assert e.kind == "conv"
    assert abs(e.value - want) <= tol * max(1.0, abs(want))
    assert abs(e.total - want) <= tol * max(1.0, abs(want))
    assert abs(e.total - (float(e.sums.sum()) + (e.bias or 0.0))) <= 1e-9
    return e


CONVS = {
    "padding 0": dict(in_channels=3, out_channels=4, kernel_size=3),
    "padding 1": dict(in_channels=3, out_channels=4, kernel_size=3, padding=1),
    "padding 2, 5x5": dict(in_channels=2, out_channels=3, kernel_size=5, padding=2),
    "stride 2": dict(in_channels=3, out_channels=4, kernel_size=3, stride=2, padding=1),
    "dilation 2": dict(in_channels=3, out_channels=4, kernel_size=3, dilation=2, padding=2),
    "groups 2": dict(in_channels=4, out_channels=6, kernel_size=3, groups=2, padding=1),
    "depthwise": dict(in_channels=4, out_channels=8, kernel_size=3, groups=4, padding=1),
    "no bias": dict(in_channels=3, out_channels=4, kernel_size=3, padding=1, bias=False),
    "same, even kernel": dict(in_channels=3, out_channels=4, kernel_size=4, padding="same"),
    "same, even kernel, dilated": dict(in_channels=2, out_channels=3, kernel_size=(2, 4), padding="same", dilation=3),
    "valid": dict(in_channels=3, out_channels=4, kernel_size=3, padding="valid"),
    "reflect": dict(in_channels=3, out_channels=4, kernel_size=3, padding=2, padding_mode="reflect"),
    "replicate": dict(in_channels=3, out_channels=4, kernel_size=3, padding=1, padding_mode="replicate"),
    "circular, same": dict(in_channels=3, out_channels=4, kernel_size=4, padding="same", padding_mode="circular"),
    "rectangular": dict(in_channels=3, out_channels=4, kernel_size=(3, 5), stride=(2, 1), padding=(1, 2)),
    "1x1 stride 2": dict(in_channels=3, out_channels=4, kernel_size=1, stride=2),
}


@pytest.mark.parametrize("name", list(CONVS))
def test_a_convolution_cell_is_its_window_times_its_kernel_plus_bias(name):
    torch.manual_seed(0)
    conv = nn.Conv2d(**CONVS[name])
    model = nn.Sequential(conv, nn.ReLU(inplace=True))
    x = torch.randn(1, conv.in_channels, 9, 8)
    inp, out = own_output(model, x, "0")
    for channel in sorted({0, conv.out_channels - 1}):
        for y, x_ in cells(*out.shape[-2:]):
            e = check_conv(model, x, "0", channel, y, x_)
            per_in = conv.in_channels // conv.groups
            assert e.group == channel // (conv.out_channels // conv.groups) and e.groups == conv.groups
            assert e.in_channels == list(range(e.group * per_in, (e.group + 1) * per_in))
            assert torch.equal(e.kernels, conv.weight.detach()[channel].double())
            win, mask = unfolded_window(conv, inp, y, x_, out.shape[-1])
            assert torch.allclose(e.windows, win[e.in_channels].double())
            assert torch.equal(e.padding, mask)
            assert e.bias == (None if conv.bias is None else pytest.approx(float(conv.bias.detach()[channel])))


def test_padding_shows_in_the_corners_and_not_in_the_middle():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1))
    x = torch.randn(1, 1, 6, 6)
    corner = explain_cell(model, x, "0", 0, 0, 0)
    assert corner.padding.tolist() == [[True, True, True], [True, False, False], [True, False, False]]
    assert corner.windows[0][corner.padding].abs().sum() == 0  # zero padding
    assert corner.windows[0, 1:, 1:].tolist() == x[0, 0, :2, :2].double().tolist()
    assert not explain_cell(model, x, "0", 1, 3, 2).padding.any()
    bottom_right = explain_cell(model, x, "0", 1, 5, 5).padding
    assert bottom_right[2].all() and bottom_right[:, 2].all() and not bottom_right[:2, :2].any()


@settings(max_examples=40, deadline=None)
@given(groups=st.sampled_from([1, 2]), per_group=st.integers(1, 3), out_per_group=st.integers(1, 2),
       k=st.tuples(st.integers(1, 4), st.integers(1, 4)), s=st.integers(1, 3), d=st.integers(1, 2),
       p=st.sampled_from([0, 1, 2, "same", "valid"]), mode=st.sampled_from(["zeros", "reflect", "replicate",
                                                                           "circular"]),
       bias=st.booleans(), hw=st.tuples(st.integers(5, 11), st.integers(5, 11)), seed=st.integers(0, 2**16),
       where=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)))
def test_any_convolution_cell_adds_up_to_the_layer_output(groups, per_group, out_per_group, k, s, d, p, mode, bias,
                                                         hw, seed, where):
    s = 1 if p == "same" else s  # PyTorch: padding="same" only at stride 1
    torch.manual_seed(seed)
    conv = nn.Conv2d(groups * per_group, groups * out_per_group, k, stride=s, padding=p, dilation=d, groups=groups,
                     bias=bias, padding_mode=mode)
    x = torch.randn(1, conv.in_channels, *hw)
    try:
        out = own_output(nn.Sequential(conv), x, "0")[1]
    except RuntimeError:  # a kernel wider than the padded input, reflect padding wider than the input
        assume(False)
    c, h, w = out.shape[1:]
    cell = [min(int(f * n), n - 1) for f, n in zip(where, (c, h, w))]
    check_conv(nn.Sequential(conv), x, "0", *cell)


@pytest.mark.parametrize("layer,channel", [("conv_1", 3), ("conv_2", 7)])
def test_the_lecture_convnet(layer, channel):
    torch.manual_seed(2)
    model = cnnlab.create_model("convnet")
    x = torch.randn(1, 1, 28, 28)
    for y, x_ in cells(*own_output(model, x, layer)[1].shape[-2:]):
        e = check_conv(model, x, layer, channel, y, x_)
        assert len(e.to_dict()["inputs"]) == (1 if layer == "conv_1" else 4)


def test_a_vgg_before_its_in_place_relu():
    torch.manual_seed(3)
    model = cnnlab.create_model("vgg11", num_classes=10, input_size=32)
    x = torch.randn(1, 3, 32, 32)
    for layer in ("features.0", "features.3"):
        for y, x_ in cells(*own_output(model, x, layer)[1].shape[-2:]):
            check_conv(model, x, layer, 5, y, x_)
    relu = explain_cell(model, x, "features.1", 5, 0, 0)  # in place: its input is kept before the call
    assert relu.kind == "elementwise" and relu.value == max(relu.input, 0.0)
    assert relu.input == pytest.approx(explain_cell(model, x, "features.0", 5, 0, 0).value)


@pytest.mark.parametrize("layer", ["conv1", "layer2.0.conv1", "layer2.0.downsample.0", "layer4.1.conv2"])
def test_a_resnet(layer):
    torch.manual_seed(4)
    model = cnnlab.create_model("resnet18", num_classes=10, input_size=64)
    x = torch.randn(1, 3, 64, 64)
    for y, x_ in cells(*own_output(model, x, layer)[1].shape[-2:]):
        e = check_conv(model, x, layer, 9, y, x_)
        assert e.bias is None and e.to_dict()["bias"] is None
        assert list(e.rf_box) == list(receptive_field_map(model, (3, 64, 64))[layer].box(y, x_))


def test_a_residual_block_and_its_relu_called_twice():
    torch.manual_seed(5)
    model = cnnlab.create_model("resnet18", num_classes=10, input_size=64)
    x = torch.randn(1, 3, 64, 64)
    block = explain_cell(model, x, "layer1.0", 2, 3, 4)
    want = float(own_output(model, x, "layer1.0")[1][0, 2, 3, 4])
    assert block.kind == "block" and block.value == pytest.approx(want)
    relu = explain_cell(model, x, "layer1.0.relu", 2, 3, 4)  # its last call: after the addition
    assert relu.kind == "elementwise" and relu.value == pytest.approx(block.value) and relu.value >= 0
    bn = explain_cell(model, x, "bn1", 2, 3, 4)
    conv = explain_cell(model, x, "conv1", 2, 3, 4)
    assert bn.kind == "elementwise" and bn.input == pytest.approx(conv.value)
    assert set(block.to_dict()) == {"kind", "layer", "type", "channel", "y", "x", "value", "rf_box"}


MAXPOOLS = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2, dilation=2),
            dict(kernel_size=3, stride=2, ceil_mode=True), dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1),
                                                                ceil_mode=True),
            dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True)]


@pytest.mark.parametrize("options", MAXPOOLS, ids=str)
@pytest.mark.parametrize("hw", [(7, 7), (8, 5)])
def test_max_pool_argmax_is_the_one_max_pool2d_returns(options, hw):
    torch.manual_seed(6)
    pool = nn.MaxPool2d(**options)
    x = -torch.rand(1, 2, *hw) - 1  # all negative: a zero from the padding would win
    values, indices = F.max_pool2d(x, pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode,
                                   return_indices=True)
    geometry = cnnlab.geometry.layer_geometry(pool, hw)
    for y, x_ in cells(*values.shape[-2:]):
        e = explain_cell(nn.Sequential(pool), x, "0", 1, y, x_)
        assert e.kind == "pool" and e.op == "max" and e.value == float(values[0, 1, y, x_])
        u, v = e.argmax
        assert not e.padding[u, v] and float(e.window[u, v]) == e.value == e.to_dict()["total"]
        row = y * geometry.stride[0] - geometry.padding[0] + u * geometry.dilation[0]
        col = x_ * geometry.stride[1] - geometry.padding[1] + v * geometry.dilation[1]
        assert row * hw[1] + col == int(indices[0, 1, y, x_])
        json.dumps(e.to_dict(), allow_nan=False)  # the padding's -inf is null in JSON


AVGPOOLS = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
            dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
            dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), dict(kernel_size=3, stride=2, ceil_mode=True,
                                                                           count_include_pad=False),
            dict(kernel_size=2, padding=1, divisor_override=3)]


@pytest.mark.parametrize("options", AVGPOOLS, ids=str)
def test_avg_pool_value_is_the_window_sum_over_its_divisor(options):
    torch.manual_seed(7)
    pool = nn.AvgPool2d(**options)
    x = torch.randn(1, 2, 7, 6)
    out = pool(x)
    for y, x_ in cells(*out.shape[-2:]):
        e = explain_cell(nn.Sequential(pool), x, "0", 0, y, x_)
        assert e.op == "avg" and e.value == float(out[0, 0, y, x_])
        assert float(e.window.sum()) / e.divisor == pytest.approx(e.value, abs=1e-5)
        assert e.to_dict()["total"] == pytest.approx(e.value, abs=1e-5)
        assert set(e.to_dict()) >= {"kind", "op", "value", "window", "padding", "divisor", "rf_box"}


@pytest.mark.parametrize("pool", [nn.AdaptiveAvgPool2d((3, 2)), nn.AdaptiveMaxPool2d(3), nn.AdaptiveAvgPool2d(1)],
                         ids=str)
def test_adaptive_pools(pool):
    torch.manual_seed(8)
    x = torch.randn(1, 2, 7, 5)
    out = pool(x)
    for y, x_ in cells(*out.shape[-2:]):
        e = explain_cell(nn.Sequential(pool), x, "0", 1, y, x_)
        want = e.window.max() if e.op == "max" else e.window.mean()
        assert float(want) == pytest.approx(e.value, abs=1e-6) and e.value == float(out[0, 1, y, x_])
        assert not e.padding.any()


@pytest.mark.parametrize("layer", [nn.ReLU(), nn.LeakyReLU(0.1), nn.Sigmoid(), nn.BatchNorm2d(3), nn.Dropout(0.5),
                                   nn.Dropout2d(0.5), nn.Identity()], ids=str)
def test_element_wise_layers_give_the_input_at_the_cell(layer):
    torch.manual_seed(9)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), layer)
    x = torch.randn(1, 1, 6, 6)
    e = explain_cell(model, x, "1", 2, 1, 3)
    inp, out = own_output(model, x, "1")
    assert e.kind == "elementwise" and (e.input, e.value) == (float(inp[0, 2, 1, 3]), float(out[0, 2, 1, 3]))
    assert set(e.to_dict()) == {"kind", "layer", "type", "channel", "y", "x", "value", "input", "rf_box"}


def test_to_dict_is_the_cell_endpoints_json():
    torch.manual_seed(10)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1))
    d = explain_cell(model, torch.randn(1, 2, 5, 5), "0", 1, 0, 4).to_dict()
    assert set(d) == CONV_KEYS and [set(r) for r in d["inputs"]] == [ROW_KEYS] * 2
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert all(type(d[k]) is float for k in ("value", "total", "bias"))
    row = d["inputs"][1]
    assert row["channel"] == 1 and type(row["sum"]) is float and type(row["window"][0][0]) is float
    assert row["padding"][0] == [True, True, True] and row["padding"][1] == [False, False, True]
    assert row["products"] == [[w * k for w, k in zip(a, b)] for a, b in zip(row["window"], row["kernel"])]
    assert d["rf_box"] == [0, 3, 2, 5] and d["padding"] == [1, 1] and d["kernel"] == [3, 3]


def test_trace_keeps_a_modules_input_before_an_in_place_call():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), nn.Flatten())
    x = torch.randn(1, 1, 5, 5)
    traced = trace(model, x, keep={"1"}, keep_inputs={"1", "2"})
    relu = next(c for c in traced.calls if c.name == "1")
    assert (relu.input < 0).any() and torch.equal(relu.output, relu.input.clamp(min=0))
    assert set(traced.kept_inputs()) == {"1", "2"} and traced.kept_inputs()["2"].shape == (1, 2, 3, 3)
    assert all(c.input is None for c in trace(model, x).calls)


class Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.spare, self.fc = nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 1), nn.Linear(2 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


@pytest.mark.parametrize("args,error,words", [
    (("conv", 2, 0, 0), CnnlabValueError, "channel=2 is outside conv's 2x4x4 map"),
    (("conv", -1, 0, 0), CnnlabValueError, "channels run 0..1"),
    (("conv", 0, 4, 0), CnnlabValueError, "y=4 is outside conv's 2x4x4 map"),
    (("conv", 0, 0, -1), CnnlabValueError, "columns run 0..3"),
    (("cnv", 0, 0, 0), UnknownNameError, "did you mean conv?"),
    (("spare", 0, 0, 0), CnnlabValueError, "does not run"),
    (("fc", 0, 0, 0), CnnlabValueError, "cells are for feature maps"),
    (("conv", True, 0, 0), CnnlabTypeError, "channel must be an integer"),
    (("conv", 0, 1.0, 0), CnnlabTypeError, "y must be an integer"),
    (("conv", 0, 0, "1"), CnnlabTypeError, "x must be an integer"),
    ((0, 0, 0, 0), CnnlabTypeError, "layer must be a layer's name"),
])
def test_bad_input_is_one_line(args, error, words):
    with pytest.raises(error) as info:
        explain_cell(Unused(), torch.randn(1, 1, 6, 6), *args)
    assert isinstance(info.value, CnnlabError) and words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("image,error,words", [
    ([[0.0]], CnnlabTypeError, "must be a torch.Tensor"),
    (torch.zeros(2, 1, 6, 6), CnnlabValueError, "batch of shape (1, C, H, W)"),
    (torch.zeros(1, 1, 6, 6, dtype=torch.uint8), CnnlabTypeError, "float tensor"),
])
def test_a_bad_image_is_one_line(image, error, words):
    with pytest.raises(error) as info:
        explain_cell(Unused(), image, "conv", 0, 0, 0)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_an_image_the_model_cannot_take_is_one_line():
    with pytest.raises(CnnlabValueError) as info:
        explain_cell(cnnlab.create_model("convnet"), torch.zeros(1, 3, 28, 28), "conv_1", 0, 0, 0)
    assert "does not go through ConvNet in conv_1" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("layer", [nn.ConvTranspose2d(2, 2, 2, stride=2), nn.Upsample(scale_factor=2),
                                   nn.LPPool2d(2, 2)], ids=str)
def test_a_layer_of_no_arithmetic_shown_still_gives_its_value(layer):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), layer)
    x = torch.randn(1, 1, 8, 8)
    e = explain_cell(model, x, "1", 1, 1, 2)
    assert e.kind == "other" and e.value == float(own_output(model, x, "1")[1][0, 1, 1, 2])
    json.dumps(e.to_dict(), allow_nan=False)


def test_numpy_integers_and_an_unbatched_image_are_accepted():
    np = pytest.importorskip("numpy")
    model = Unused()
    x = torch.randn(1, 6, 6)
    e = explain_cell(model, x, "conv", np.int64(1), np.int32(2), torch.tensor(3))
    assert (e.channel, e.y, e.x) == (1, 2, 3) and type(e.to_dict()["channel"]) is int
