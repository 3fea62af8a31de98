"""Convolution arithmetic from the lecture, as pure integer functions.

No torch here: every function takes and returns plain ints so it can size a model
before any tensor exists, and explain a shape the way the lecture's comments do
(``28x28x1 => 28x28x4``). The formulas follow Dumoulin & Visin (2016),
"A guide to convolution arithmetic for deep learning", and PyTorch's own shape rules
(which the tests check against ``nn.Conv2d``, ``nn.MaxPool2d``, ``nn.AvgPool2d`` and
``nn.ConvTranspose2d``)::

    o = floor((i + 2p - d(k-1) - 1) / s) + 1        # the slide's floor((i + 2p - k)/s) + 1 for d = 1

and "same" padding, which for stride 1 is the lecture's p = (k - 1)/2. Also the one home of
the receptive-field recurrence (one step per layer, a union where branches meet) and of the
MAC counts of convolutions, linear layers and matrix products, which :mod:`cnnlab.geometry`,
:mod:`cnnlab.summary` and :mod:`cnnlab.analysis` call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from cnnlab.errors import ShapeError  # errors.py holds no torch either

from cnnlab.errors import CnnlabTypeError, CnnlabValueError

__all__ = [
    "conv_output_size",
    "conv_output_formula",
    "conv_transpose_output_size",
    "conv_transpose_output_formula",
    "same_padding",
    "resolve_padding",
    "RFLayer",
    "INPUT_RF",
    "receptive_field_step",
    "receptive_field_union",
    "receptive_fields",
    "receptive_field",
    "conv_macs",
    "conv2d_macs",
    "conv_transpose_macs",
    "conv_transpose2d_macs",
    "linear_macs",
    "matmul_macs",
    "feature_side",
    "explain_output_size",
]


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise CnnlabTypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < 1:
            raise CnnlabValueError(f"{name} must be >= 1, got {value}")


def _check_non_negative(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise CnnlabTypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < 0:
            raise CnnlabValueError(f"{name} must be >= 0, got {value}")


def conv_output_formula(i: int, k: int, s: int = 1, p: int = 0, d: int = 1, ceil_mode: bool = False) -> str:
    """The output-size formula with the numbers filled in, as written on the slides.

    >>> conv_output_formula(28, 3, 1, 1)
    '(28 + 2 - 3)/1 + 1 = 28'
    >>> conv_output_formula(28, 2, 2, 0)
    'floor((28 + 0 - 2)/2) + 1 = 14'
    """
    kernel = f"{k}" if d == 1 else f"({d}*({k}-1) + 1)"
    fraction = f"({i} + {2 * p} - {kernel})/{s}"
    if s != 1:
        fraction = f"{'ceil' if ceil_mode else 'floor'}({fraction})"
    return f"{fraction} + 1 = {_raw_output_size(i, k, s, p, d, ceil_mode)}"


def _raw_output_size(i: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    numerator = i + 2 * p - d * (k - 1) - 1
    if ceil_mode:
        o = -((-numerator) // s) + 1  # ceil division that also works for negatives
        # PyTorch's rule: the last pooling window must start inside the input or left padding
        if o >= 1 and (o - 1) * s >= i + p:
            o -= 1
        return o
    return numerator // s + 1


def conv_output_size(i: int, k: int, s: int = 1, p: int = 0, d: int = 1, ceil_mode: bool = False) -> int:
    """Output size along one axis of a convolution or pooling layer.

    ``o = floor((i + 2p - d(k-1) - 1)/s) + 1``; with ``ceil_mode=True`` the division
    rounds up (as ``nn.MaxPool2d(ceil_mode=True)`` does), except that the last window
    must start inside the input or its left padding (PyTorch's rule).

    Args:
        i: input size (height or width).
        k: kernel size.
        s: stride.
        p: zero padding added to *each* side.
        d: dilation.
        ceil_mode: round the division up instead of down (pooling only).

    Raises:
        ValueError: if the output would be smaller than 1; the message states the
            formula with the numbers filled in.
    """
    _check_positive(i=i, k=k, s=s, d=d)
    _check_non_negative(p=p)
    o = _raw_output_size(i, k, s, p, d, ceil_mode)
    if o < 1:
        dil = f", dilation {d}" if d != 1 else ""
        raise CnnlabValueError(
            f"input {i}, kernel {k}, padding {p}, stride {s}{dil}: "
            f"{conv_output_formula(i, k, s, p, d, ceil_mode)} "
            f"(output must be >= 1: use a larger input, more padding or a smaller kernel/stride)"
        )
    return o


def conv_transpose_output_size(i: int, k: int, s: int = 1, p: int = 0, output_padding: int = 0, d: int = 1) -> int:
    """Output size of a transposed convolution: ``(i-1)s - 2p + d(k-1) + output_padding + 1``.

    ``output_padding`` must be smaller than the stride or the dilation (PyTorch's rule).
    """
    _check_positive(i=i, k=k, s=s, d=d)
    _check_non_negative(p=p, output_padding=output_padding)
    if output_padding >= max(s, d):
        raise CnnlabValueError(
            f"output_padding {output_padding} must be smaller than either stride {s} or dilation {d}"
        )
    o = (i - 1) * s - 2 * p + d * (k - 1) + output_padding + 1
    if o < 1:
        raise CnnlabValueError(
            f"input {i}, kernel {k}, padding {p}, stride {s}: "
            f"({i}-1)*{s} - {2 * p} + {d}*({k}-1) + {output_padding} + 1 = {o} (output must be >= 1)"
        )
    return o


def conv_transpose_output_formula(i: int, k: int, s: int = 1, p: int = 0, output_padding: int = 0, d: int = 1) -> str:
    """The transposed-convolution output size with the numbers filled in.

    >>> conv_transpose_output_formula(7, 2, 2)
    '(7-1)*2 - 0 + 1*(2-1) + 0 + 1 = 14'
    """
    o = (i - 1) * s - 2 * p + d * (k - 1) + output_padding + 1
    return f"({i}-1)*{s} - {2 * p} + {d}*({k}-1) + {output_padding} + 1 = {o}"


def same_padding(i: int, k: int, s: int = 1, d: int = 1) -> tuple[int, int]:
    """The (before, after) zero padding that gives ``o = ceil(i/s)`` ("same" convolution).

    Symmetric when the total is even; otherwise the extra pixel goes after (right/bottom),
    as in TensorFlow and PyTorch's ``padding="same"``. For stride 1 the total is
    ``d(k-1)``, i.e. the lecture's ``p = (k-1)/2`` per side for odd ``k``.
    """
    _check_positive(i=i, k=k, s=s, d=d)
    o = -(-i // s)
    total = max((o - 1) * s + d * (k - 1) + 1 - i, 0)
    before = total // 2
    return before, total - before


def resolve_padding(padding: int | str, i: int, k: int, s: int = 1, d: int = 1) -> tuple[int, int]:
    """``padding`` as ``int``, ``"same"`` or ``"valid"`` -> (before, after)."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "same":
            return same_padding(i, k, s, d)
        if mode == "valid":
            return 0, 0
        raise CnnlabValueError(f"padding must be an int, 'same' or 'valid', got {padding!r}")
    _check_non_negative(padding=padding)
    return padding, padding


@dataclass(frozen=True)
class RFLayer:
    """Receptive-field bookkeeping after one layer, along one axis.

    Input pixel ``i`` covers ``[i, i+1)``, so its centre is ``i + 0.5``.

    Attributes:
        rf: receptive field (input pixels along one axis seen by one output unit).
        jump: distance in input pixels between two adjacent output units (product of strides).
        start: input coordinate of the centre of the first output unit's receptive field.
    """

    rf: int
    jump: int
    start: float

    def interval(self, index: int, size: int | None = None) -> tuple[int, int]:
        """Input pixels ``[lo, hi)`` seen by output unit ``index``, clipped to ``[0, size)`` if given.

        >>> RFLayer(rf=3, jump=1, start=0.5).interval(0, size=28)   # a 3x3 "same" conv, first row
        (0, 2)
        """
        centre = self.start + index * self.jump
        lo, hi = math.floor(centre - self.rf / 2), math.ceil(centre + self.rf / 2)
        if size is not None:
            lo, hi = max(lo, 0), min(hi, size)
        return lo, hi


INPUT_RF = RFLayer(rf=1, jump=1, start=0.5)  # one input pixel sees itself


def receptive_field_step(before: RFLayer, k: int, s: int = 1, p: int = 0, d: int = 1) -> RFLayer:
    """The receptive field after one conv or pooling layer ``(k, s, p, d)``, given the one before it.

    The recurrences (Araujo et al. 2019, "Computing Receptive Fields of CNNs", Distill)::

        rf_out    = rf_in + d(k-1) * jump_in
        jump_out  = jump_in * s
        start_out = start_in + ((d(k-1) + 1 - 1)/2 - p) * jump_in      # p: padding before (top/left)
    """
    _check_positive(k=k, s=s, d=d)
    k_eff = d * (k - 1) + 1
    return RFLayer(
        rf=before.rf + (k_eff - 1) * before.jump,
        jump=before.jump * s,
        start=before.start + ((k_eff - 1) / 2 - p) * before.jump,
    )


def receptive_field_union(branches: Iterable[RFLayer]) -> RFLayer:
    """The receptive field of a sum (or concatenation) of branches: the union of their boxes.

    Branches that meet in one tensor have the same output grid, hence the same jump; the union
    of the first output unit's intervals then holds for every unit. (Were the jumps to differ,
    the largest is kept and the union is that of the first unit only.)
    """
    branches = list(branches)
    if not branches:
        raise CnnlabValueError("receptive_field_union needs at least one branch")
    lo = min(b.start - b.rf / 2 for b in branches)
    hi = max(b.start + b.rf / 2 for b in branches)
    return RFLayer(rf=int(round(hi - lo)), jump=max(b.jump for b in branches), start=(lo + hi) / 2)


def receptive_fields(layers: Iterable[Sequence[int]], *, rf: int = 1, jump: int = 1, start: float = 0.5) -> list[RFLayer]:
    """Receptive field and jump after every layer of a chain.

    Each layer is ``(k, s)``, ``(k, s, p)`` or ``(k, s, p, d)``; see :func:`receptive_field_step`.
    """
    out: list[RFLayer] = []
    current = RFLayer(rf=rf, jump=jump, start=start)
    for layer in layers:
        k, s, *rest = layer
        p = rest[0] if rest else 0
        d = rest[1] if len(rest) > 1 else 1
        current = receptive_field_step(current, k, s, p, d)
        out.append(current)
    return out


def receptive_field(layers: Iterable[Sequence[int]]) -> tuple[int, int]:
    """(receptive field, jump) at the end of a chain of ``(k, s[, p[, d]])`` layers."""
    rfs = receptive_fields(layers)
    if not rfs:
        return 1, 1
    return rfs[-1].rf, rfs[-1].jump


# ---------------------------------------------------------------------------------------
# Multiply-accumulates (MACs). FLOPs = 2 x MACs. Bias adds are not counted.


def conv_macs(output_positions: int, in_channels: int, out_channels: int, kernel: Sequence[int], groups: int = 1) -> int:
    """MACs of a convolution of any dimension: each of ``output_positions * out_channels``
    outputs is a dot product over ``(in_channels / groups) * prod(kernel)`` inputs.

    ``output_positions`` counts every output pixel of every image (N * H_out * W_out in 2-D).
    """
    return output_positions * out_channels * (in_channels // groups) * math.prod(kernel)


def conv2d_macs(out_h: int, out_w: int, in_channels: int, out_channels: int, kernel: tuple[int, int], groups: int = 1) -> int:
    """Multiply-accumulates of one 2-D convolution for one image (bias adds not counted)."""
    return conv_macs(out_h * out_w, in_channels, out_channels, kernel, groups)


def conv_transpose_macs(input_positions: int, in_channels: int, out_channels: int, kernel: Sequence[int],
                        groups: int = 1) -> int:
    """MACs of a transposed convolution: every input element is scattered, times a weight,
    into ``(out_channels / groups) * prod(kernel)`` outputs."""
    return input_positions * in_channels * (out_channels // groups) * math.prod(kernel)


def conv_transpose2d_macs(in_h: int, in_w: int, in_channels: int, out_channels: int, kernel: tuple[int, int],
                          groups: int = 1) -> int:
    """Multiply-accumulates of one 2-D transposed convolution for one image."""
    return conv_transpose_macs(in_h * in_w, in_channels, out_channels, kernel, groups)


def linear_macs(in_features: int, out_features: int, rows: int = 1) -> int:
    """Multiply-accumulates of one fully connected layer applied to ``rows`` vectors (one sample: 1)."""
    return rows * in_features * out_features


def matmul_macs(m: int, k: int, n: int, batch: int = 1) -> int:
    """Multiply-accumulates of ``batch`` matrix products (m x k) @ (k x n)."""
    return batch * m * k * n


def feature_side(i: int, layers: Iterable[Sequence], *, model: str = "model") -> int:
    """Side of the square feature map after a chain of named layers.

    Each layer is ``(name, k, s, p)`` or ``(name, k, s, p, d)``; ``p`` may be a
    ``(before, after)`` pair where "same" padding needs an odd total. Raises
    :class:`cnnlab.errors.ShapeError` naming the layer where the map vanishes, with the
    formula and its numbers, so a model can size its head from ``input_size``.
    """
    side = i
    for name, k, s, p, *rest in layers:
        d = rest[0] if rest else 1
        try:
            if isinstance(p, (tuple, list)):  # asymmetric: pad explicitly, then no padding
                side = conv_output_size(side + p[0] + p[1], k, s, 0, d)
            else:
                side = conv_output_size(side, k, s, p, d)
        except ValueError as exc:
            raise ShapeError(
                f"{model}: input size {i} is too small, the feature map vanishes at {name}: {exc}"
            ) from None
    return side


def explain_output_size(
    i: int,
    k: int,
    s: int = 1,
    padding: int | str = 0,
    d: int = 1,
    ceil_mode: bool = False,
) -> tuple[int, list[str]]:
    """The output size and the worked steps, as the lecture's slides write them.

    >>> explain_output_size(28, 3, 1, "same")[0]
    28
    """
    before, after = resolve_padding(padding, i, k, s, d)
    lines = [f"input i = {i}, kernel k = {k}, stride s = {s}" + (f", dilation d = {d}" if d != 1 else "")]
    k_text = "k" if d == 1 else "d(k-1) + 1"
    if isinstance(padding, str) and padding.lower() == "same":
        o_target = -(-i // s)
        lines.append(f'"same" padding: want o = ceil(i/s) = ceil({i}/{s}) = {o_target}')
        raw = s * (o_target - 1) - i + d * (k - 1) + 1
        clipped = "" if raw >= 0 else " -> 0 (never negative)"
        lines.append(f"  total padding = s(o-1) - i + {k_text} = {s}*({o_target}-1) - {i} + {d * (k - 1) + 1} = {raw}{clipped}")
        if before == after:
            lines.append(f"  p = {before} per side" + (f"  (stride 1: p = (k-1)/2 = ({k}-1)/2 = {before})" if s == 1 and d == 1 else ""))
        else:
            lines.append(f"  odd total: {before} before, {after} after (the extra pixel goes right/bottom)")
    elif isinstance(padding, str):
        lines.append('"valid" padding: p = 0 (no padding; the feature map may shrink)')
    else:
        lines.append(f"padding p = {before} per side")
    if before == after:
        o = conv_output_size(i, k, s, before, d, ceil_mode)
        rounding = "ceil" if ceil_mode else "floor"
        lines.append(f"o = {rounding}((i + 2p - {k_text})/s) + 1")
        lines.append(f"  = {conv_output_formula(i, k, s, before, d, ceil_mode)}")
    else:
        # asymmetric: o = floor((i + p_before + p_after - k)/s) + 1
        total = before + after
        o = (i + total - d * (k - 1) - 1) // s + 1
        lines.append(f"o = floor((i + p_before + p_after - {k_text})/s) + 1")
        lines.append(f"  = floor(({i} + {before} + {after} - {d * (k - 1) + 1})/{s}) + 1 = {o}")
    lines.append(f"output size: {o}")
    return o, lines


def training_flops(forward_macs: int, input_grad: bool, weight_grad: bool) -> tuple[int, int, int]:
    """(forward, input-gradient, weight-gradient) FLOPs of a conv/linear layer doing ``forward_macs``: each
    gradient is a (transposed) convolution/product of the same size, 2 x MACs, computed only where needed."""
    return 2 * forward_macs, 2 * forward_macs * bool(input_grad), 2 * forward_macs * bool(weight_grad)


def conv_buffer_bytes(algorithm: str, n: int, c: int, k: int, h: int, w: int, *, kernel: int = 3, m: int = 2,
                      itemsize: int = 4) -> int:
    """Bytes of the buffer that defines an algorithm for a stride-1 'same' kernel x kernel convolution of
    n x c x h x w into k channels: im2col the unfolded input (n h w rows of c kernel^2); fft the complex spectra
    of input, filters and output on the padded (h+kernel-1) x ((w+kernel-1)//2 + 1) grid; winograd F(m, 3) the
    transformed tiles a^2 (P c + k c + P k), a = m + 2, P = n ceil(h/m) ceil(w/m) tiles; 0 for others."""
    if algorithm == "im2col":
        return n * h * w * c * kernel * kernel * itemsize
    if algorithm == "fft":
        return 2 * itemsize * (h + kernel - 1) * ((w + kernel - 1) // 2 + 1) * (n * c + k * c + n * k)
    if algorithm.startswith("winograd"):
        tiles = n * -(-h // m) * -(-w // m)
        return itemsize * (m + 2) ** 2 * (tiles * c + k * c + tiles * k)
    return 0
