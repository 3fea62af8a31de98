"""cnnlab.arithmetic against the real PyTorch layers' output shapes."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab import arithmetic as A
from cnnlab.errors import ShapeError
from cnnlab.geometry import layer_geometry, module_macs, spatial_geometry
from cnnlab.models import ZeroPadShortcut

SIDES = range(1, 41)


def _torch_size(layer: nn.Module, i: int) -> int | None:
    """Output side of ``layer`` on a 1x1xixi input; None where torch refuses or gives an empty map."""
    try:
        side = layer(torch.zeros(1, 1, i, i)).shape[-1]
    except RuntimeError:
        return None
    return side if side >= 1 else None


def _ours(i, k, s, p, d=1, ceil_mode=False):
    try:
        return A.conv_output_size(i, k, s, p, d, ceil_mode)
    except ValueError:
        return None


@pytest.mark.parametrize("k", range(1, 8))
def test_conv2d_grid(k):
    for s, d in itertools.product(range(1, 5), range(1, 4)):
        for p in range(0, k // 2 + 1):
            conv = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d, bias=False)
            for i in SIDES:
                assert _ours(i, k, s, p, d) == _torch_size(conv, i), (i, k, s, p, d)


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("k", range(1, 8))
def test_maxpool2d_grid(k, ceil_mode):
    for s, d in itertools.product(range(1, 5), range(1, 4)):
        for p in range(0, k // 2 + 1):
            if p > ((k - 1) * d + 1) // 2:  # torch: pad at most half the effective kernel
                continue
            pool = nn.MaxPool2d(k, stride=s, padding=p, dilation=d, ceil_mode=ceil_mode)
            for i in SIDES:
                assert _ours(i, k, s, p, d, ceil_mode) == _torch_size(pool, i), (i, k, s, p, d, ceil_mode)


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("k", range(1, 8))
def test_avgpool2d_grid(k, ceil_mode):
    for s in range(1, 5):
        for p in range(0, k // 2 + 1):
            pool = nn.AvgPool2d(k, stride=s, padding=p, ceil_mode=ceil_mode)
            for i in SIDES:
                assert _ours(i, k, s, p, 1, ceil_mode) == _torch_size(pool, i), (i, k, s, p, ceil_mode)


@pytest.mark.parametrize("k", range(1, 8))
def test_conv_transpose2d_grid(k):
    for s, d in itertools.product(range(1, 5), range(1, 4)):
        for p in range(0, k // 2 + 1):
            for op in range(0, max(s, d)):
                conv = nn.ConvTranspose2d(1, 1, k, stride=s, padding=p, output_padding=op, dilation=d, bias=False)
                for i in range(1, 41, 3):
                    expected = _torch_size(conv, i)
                    try:
                        ours = A.conv_transpose_output_size(i, k, s, p, op, d)
                    except ValueError:
                        ours = None
                    assert ours == expected, (i, k, s, p, op, d)


def test_conv_transpose_rejects_large_output_padding():
    with pytest.raises(ValueError, match="output_padding"):
        A.conv_transpose_output_size(5, 3, s=2, output_padding=2)


@settings(max_examples=300, deadline=None)
@given(
    i=st.integers(1, 64),
    k=st.integers(1, 9),
    s=st.integers(1, 5),
    d=st.integers(1, 4),
    p=st.integers(0, 6),
    h=st.integers(1, 64),
)
def test_conv2d_hypothesis_rectangular(i, k, s, d, p, h):
    """Height and width follow the same formula independently, for any shapes."""
    x = torch.zeros(1, 2, h, i)
    w = torch.zeros(3, 2, k, k)
    try:
        out = F.conv2d(x, w, stride=s, padding=p, dilation=d)
        expected = tuple(out.shape[-2:])
    except RuntimeError:
        expected = None
    try:
        ours = (A.conv_output_size(h, k, s, p, d), A.conv_output_size(i, k, s, p, d))
    except ValueError:
        ours = None
    assert ours == expected


@settings(max_examples=200, deadline=None)
@given(i=st.integers(1, 50), k=st.integers(1, 9), s=st.integers(1, 5), d=st.integers(1, 3))
def test_same_padding_gives_ceil_i_over_s(i, k, s, d):
    before, after = A.same_padding(i, k, s, d)
    assert 0 <= after - before <= 1
    x = F.pad(torch.zeros(1, 1, i, i), (before, after, before, after))
    out = F.conv2d(x, torch.zeros(1, 1, k, k), stride=s, dilation=d)
    assert out.shape[-1] == -(-i // s)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("k", range(1, 8))
@pytest.mark.parametrize("d", [1, 2, 3])
def test_same_padding_matches_torch_padding_same(k, d):
    """For stride 1, torch's padding='same' pads exactly as same_padding says (values too)."""
    torch.manual_seed(k * 10 + d)
    conv = nn.Conv2d(2, 3, k, padding="same", dilation=d)
    x = torch.randn(1, 2, 13, 13)
    before, after = A.same_padding(13, k, 1, d)
    manual = F.conv2d(F.pad(x, (before, after, before, after)), conv.weight, conv.bias, dilation=d)
    torch.testing.assert_close(conv(x), manual)
    if k % 2 == 1 and d == 1:
        assert before == after == (k - 1) // 2  # the lecture's p = (k-1)/2


def test_lecture_examples():
    # slide: (4 - 3 + 2*0)/1 + 1 = 2 ; (5 - 4 + 2*2)/1 + 1 = 6 ; (5 - 3 + 2*0)/2 + 1 = 2
    assert A.conv_output_size(4, 3, 1, 0) == 2
    assert A.conv_output_size(5, 4, 1, 2) == 6
    assert A.conv_output_size(5, 3, 2, 0) == 2
    # the ConvNet's comments: 28 -> 28 -> 14 -> 14 -> 7
    assert A.same_padding(28, 3) == (1, 1)
    assert A.conv_output_size(28, 2, 2, 0) == 14
    assert A.resolve_padding("valid", 28, 3) == (0, 0)


def test_impossible_configuration_states_formula():
    with pytest.raises(ValueError) as info:
        A.conv_output_size(3, 5, 1, 0)
    assert "input 3, kernel 5, padding 0, stride 1: (3 + 0 - 5)/1 + 1 = -1" in str(info.value)


@pytest.mark.parametrize("bad", [dict(i=0, k=3), dict(i=5, k=0), dict(i=5, k=3, s=0), dict(i=5, k=3, p=-1)])
def test_invalid_arguments(bad):
    with pytest.raises(ValueError):
        A.conv_output_size(**bad)


def test_formula_text():
    assert A.conv_output_formula(28, 3, 1, 1) == "(28 + 2 - 3)/1 + 1 = 28"
    assert A.conv_output_formula(28, 2, 2, 0) == "floor((28 + 0 - 2)/2) + 1 = 14"
    assert A.conv_output_formula(5, 2, 2, 0, ceil_mode=True) == "ceil((5 + 0 - 2)/2) + 1 = 3"


def test_explain_output_size_same():
    o, lines = A.explain_output_size(28, 3, 1, "same")
    assert o == 28
    text = "\n".join(lines)
    assert "(28 + 2 - 3)/1 + 1 = 28" in text and "(3-1)/2 = 1" in text
    o, lines = A.explain_output_size(28, 3, 2, "same")
    assert o == 14 and any("0 before, 1 after" in line for line in lines)


def _empirical_rf(layers: list[tuple[int, int, int, int]], side: int = 64) -> int:
    """Receptive field measured as the extent of the input gradient of one output unit."""
    mods = []
    for k, s, p, d in layers:
        conv = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d, bias=False)
        nn.init.ones_(conv.weight)
        mods.append(conv)
    net = nn.Sequential(*mods)
    x = torch.ones(1, 1, side, side, requires_grad=True)
    out = net(x)
    out[0, 0, out.shape[-2] // 2, out.shape[-1] // 2].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(dim=1)).flatten()
    return int(rows.max() - rows.min() + 1)


@pytest.mark.parametrize(
    "layers",
    [
        [(3, 1, 0, 1)] * 2,
        [(3, 1, 0, 1), (2, 2, 0, 1), (3, 1, 0, 1), (2, 2, 0, 1)],
        [(7, 2, 0, 1), (3, 2, 0, 1), (3, 1, 0, 1), (3, 1, 0, 1)],
        [(3, 1, 0, 2), (3, 2, 0, 1), (5, 1, 0, 3)],
        [(1, 2, 0, 1), (3, 1, 0, 1)],
    ],
)
def test_receptive_field_matches_gradient_extent(layers):
    rf, jump = A.receptive_field(layers)
    assert rf == _empirical_rf(layers)
    expected_jump = 1
    for _, s, _, _ in layers:
        expected_jump *= s
    assert jump == expected_jump


def test_receptive_fields_per_layer():
    rfs = A.receptive_fields([(3, 1, 1), (2, 2, 0), (3, 1, 1), (2, 2, 0)])  # the lecture's ConvNet
    assert [(r.rf, r.jump) for r in rfs] == [(3, 1), (4, 2), (8, 2), (10, 4)]


def test_feature_side_names_layer():
    assert A.feature_side(28, [("c", 3, 1, 1), ("p", 2, 2, 0)]) == 14
    with pytest.raises(ShapeError, match="vanishes at p2"):
        A.feature_side(3, [("p1", 2, 2, 0), ("p2", 2, 2, 0)], model="m")


def test_macs():
    assert A.conv2d_macs(28, 28, 1, 4, (3, 3)) == 28 * 28 * 4 * 9
    assert A.conv2d_macs(14, 14, 4, 8, (3, 3), groups=2) == 14 * 14 * 8 * 2 * 9
    assert A.linear_macs(392, 10) == 3920


def test_receptive_field_start_and_step():
    """start = centre of the first unit's field in input pixels (pixel i spans [i, i+1))."""
    rfs = A.receptive_fields([(3, 1, 1), (2, 2, 0), (3, 1, 1), (2, 2, 0)])
    assert [r.start for r in rfs] == [0.5, 1.0, 1.0, 2.0]
    step = A.receptive_field_step(A.INPUT_RF, 3, 1, 1)
    assert step == rfs[0] and step.interval(0) == (-1, 2) and step.interval(0, size=28) == (0, 2)
    assert rfs[-1].interval(3, size=28) == (9, 19)  # 10 wide, 4 apart


def test_receptive_field_union_of_branches():
    a = A.RFLayer(rf=3, jump=1, start=0.5)  # [i-1, i+2): a 3x3 conv, padding 1
    b = A.RFLayer(rf=3, jump=1, start=1.5)  # [i, i+3): two 2x2 "same" convs (padding after)
    u = A.receptive_field_union([a, b])
    assert u == A.RFLayer(rf=4, jump=1, start=1.0) and u.interval(5) == (4, 8)
    assert A.receptive_field_union([a, A.INPUT_RF]) == a  # an identity branch adds nothing
    with pytest.raises(ValueError):
        A.receptive_field_union([])


def test_mac_formulas_agree():
    assert A.conv_macs(28 * 28, 1, 4, (3, 3)) == A.conv2d_macs(28, 28, 1, 4, (3, 3))
    assert A.conv_transpose2d_macs(7, 7, 8, 4, (2, 2)) == 7 * 7 * 8 * 4 * 4
    assert A.linear_macs(392, 10, rows=3) == 3 * 3920
    assert A.matmul_macs(2, 3, 4, batch=5) == 120
    assert A.feature_side(8, [("same4", 4, 1, (1, 2))]) == 8  # asymmetric "same" padding


# ---------------------------------------------------------------------------------------
# cnnlab.geometry: a module's (k, s, p, d), checked against the module's real output shape

GEOMETRY_LAYERS = [
    nn.Conv2d(2, 3, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
    nn.Conv2d(2, 3, 4, padding="same"),  # odd total: the extra pixel after
    nn.Conv2d(2, 3, 3, padding="same", dilation=2),
    nn.Conv2d(2, 3, 3, stride=2, padding="valid"),
    nn.MaxPool2d(3, 2, 1, ceil_mode=True),
    nn.MaxPool2d(2),
    nn.MaxPool2d(3, 1, 1, dilation=2),
    nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True),
    nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1),
    nn.ConvTranspose2d(2, 4, (2, 3), stride=(2, 1), groups=2),
    ZeroPadShortcut(2, 4, stride=2),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("layer", GEOMETRY_LAYERS, ids=lambda m: repr(m)[:60])
@pytest.mark.parametrize("side", [7, 8, 13])
def test_layer_geometry_gives_the_real_output_shape(layer, side):
    x = torch.zeros(1, 2, side, side + 3)
    g = layer_geometry(layer, x.shape[-2:])
    assert g is not None and g.output_size(x.shape[-2:]) == tuple(layer(x).shape[-2:])


def test_layer_geometry_fields():
    g = layer_geometry(nn.Conv2d(1, 1, 4, padding="same"))  # "same" at stride 1 needs no input size
    assert (g.kernel, g.stride, g.padding, g.padding_after, g.padding_text) == ((4, 4), (1, 1), (1, 1), (2, 2), "same")
    assert g == layer_geometry(nn.Conv2d(1, 1, 4, padding="same"), (9, 9))
    g = layer_geometry(nn.MaxPool2d(2))
    assert (g.kernel, g.stride, g.padding, g.dilation, g.ceil_mode) == ((2, 2), (2, 2), (0, 0), (1, 1), False)
    g = layer_geometry(ZeroPadShortcut(4, 8, stride=2))
    assert (g.kernel, g.stride, g.padding) == ((1, 1), (2, 2), (0, 0))
    assert layer_geometry(nn.ConvTranspose2d(1, 1, 3, stride=2, output_padding=1)).transposed
    for other in (nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Linear(2, 2), nn.BatchNorm2d(2)):
        assert layer_geometry(other) is None
    stack = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(1, 1, 2, padding="same"))
    assert spatial_geometry(stack, "f") == [("f.0", 3, 1, 1, 1), ("f.2", 2, 2, 0, 1), ("f.3", 2, 1, (0, 1), 1)]
    assert A.feature_side(9, spatial_geometry(stack)) == stack(torch.zeros(1, 1, 9, 9)).shape[-1] == 4


@pytest.mark.parametrize("layer,shape", [
    (nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), (2, 4, 9, 8)),
    (nn.Conv2d(4, 6, 3, padding="same", dilation=2), (1, 4, 7, 7)),
    (nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2), (2, 4, 5, 6)),
    (nn.Linear(8, 5), (2, 3, 8)),
])
def test_module_macs_equal_flop_counter_mode(layer, shape):
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(shape)
    with FlopCounterMode(display=False) as counter:
        y = layer(x)
    assert 2 * module_macs(layer, x.shape, y.shape) == counter.get_total_flops() > 0
    assert module_macs(nn.ReLU(), x.shape, x.shape) == 0
