"""Convolution arithmetic as animations, after Dumoulin & Visin (2016), "A guide to convolution
arithmetic for deep learning": the padded input grid (padding shaded), the kernel window moving one
output cell per frame, the output grid filling in, the formula from :mod:`cnnlab.arithmetic` as the
caption. One frame per output position, plus a title frame and a summary frame.

The numbers are real: small integers in, the layer's own output out (checked against
``F.conv2d``, ``F.conv_transpose2d``, ``F.max_pool2d`` and :mod:`cnnlab.conv` in the tests).
A transposed convolution is drawn as the direct convolution it equals (Dumoulin & Visin, Sec. 4):
``s - 1`` zeros inserted between input cells, ``d(k-1) - p`` padding on each side (plus
``output_padding`` after), the kernel flipped, stride 1.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from cnnlab import arithmetic
from cnnlab.conv import convolve2d, correlate2d
from cnnlab.errors import CnnlabError, CnnlabTypeError, CnnlabValueError
from cnnlab.pages import fragment

__all__ = ["Panel", "Frame", "Animation", "conv_animation", "pool_animation", "xcorr_animation", "parse_padding",
           "MAX_POSITIONS", "FLAGS"]

MAX_POSITIONS = 4096  # output positions (= frames) one animation may have
MAX_GRID_SIDE = 256  # side of the (padded) input grid drawn: every cell is a number in the animation
# the lecture's symbols -> the ``cnnlab animate`` flags: pass ``names=FLAGS`` for messages that name the flags
FLAGS = {"i": "--input", "k": "--kernel", "s": "--stride", "p": "--padding", "d": "--dilation",
         "output_padding": "--output-padding", "mode": "--mode"}


@dataclass
class Panel:
    """One computation drawn: the (padded) input grid, the kernel as applied, the output."""

    name: str
    grid: list[list[float]]  # padded input values, row-major
    kinds: list[list[str]]  # per grid cell: "input", "pad" (padding) or "inserted" (a transposed conv's zeros)
    output: list[list[float]]
    kernel: list[list[float]] | None = None  # the weights as applied at each window cell (flipped where flipped)
    order: list[list[int]] | None = None  # visiting order of each window cell (the xcorr slide's 1..9)
    op: str = "sum"  # "sum" (of products), "max" or "mean"
    kernel_label: str = "kernel"


@dataclass
class Frame:
    title: str
    out: tuple[int, int] | None = None  # the output cell computed in this frame
    window: tuple[int, int] | None = None  # top-left of the kernel window in the padded grid
    texts: list[str] = field(default_factory=list)  # one line per panel: how the value is made


@dataclass
class Animation:
    kind: str  # "conv", "transposed", "pool", "xcorr"
    params: dict[str, Any]
    kernel_size: int
    dilation: int
    stride: int  # stride of the window over the drawn grid (1 for a transposed conv drawn as a direct one)
    panels: list[Panel]
    caption: list[str]  # the formula, worked
    input: list[list[float]] = field(default_factory=list)  # the i x i input, before padding
    weight: list[list[float]] | None = None  # the k x k kernel as the layer stores it (None for pooling)
    frames: list[Frame] = field(default_factory=list)

    @property
    def output_size(self) -> tuple[int, int]:
        out = self.panels[0].output
        return len(out), len(out[0])

    @property
    def positions(self) -> int:
        h, w = self.output_size
        return h * w

    def taps(self, window: tuple[int, int]) -> list[tuple[int, int, int, int]]:
        """``(u, v, row, col)`` of every kernel tap for a window (dilation spreads them)."""
        k, d = self.kernel_size, self.dilation
        return [(u, v, window[0] + d * u, window[1] + d * v) for u in range(k) for v in range(k)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"output_size": list(self.output_size), "positions": self.positions}

    def _repr_html_(self) -> str:
        """In a notebook: the player that ``--out x.html`` writes, inline (its own element id each time)."""
        return fragment("animation.html", title=self.frames[0].title if self.frames else self.kind,
                        animation=self.to_dict(), uid=f"cnnlab-animation-{uuid.uuid4().hex[:12]}")


def parse_padding(text: str | int) -> int | str:
    """``--padding``: an integer, ``same`` or ``valid``."""
    value = str(text).strip().lower()
    if value in ("same", "valid"):
        return value
    try:
        return int(value)
    except ValueError:
        raise CnnlabError(f"--padding takes an integer, 'same' or 'valid', got {text!r}") from None


def _fail(exc: Exception) -> CnnlabError:
    return CnnlabError(str(exc).splitlines()[0])


def _check(names: Mapping[str, str] | None, *, at_least: int, **values: Any) -> None:
    """Each value an int >= ``at_least``; a message names it as ``names`` says (a flag), else by its symbol."""
    names = names or {}
    for key, value in values.items():
        label = names.get(key, key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise CnnlabTypeError(f"{label} must be an integer, got {value!r}")
        if value < at_least:
            raise CnnlabValueError(f"{label} must be >= {at_least}, got {value}")


SEED_LO, SEED_HI = -2**63, 2**64 - 1  # what torch.manual_seed takes; it reads a negative seed modulo 2**64


def _next_seed(seed: int) -> int:
    """The second generator's seed: ``seed + 1`` modulo 2**64, as torch reads seeds, so the top of the range
    does not leave it (2**64 - 1 is followed by 0; every other seed gives the pictures it always gave)."""
    return (seed + 1) % 2**64


def _ints(shape: tuple[int, ...], lo: int, hi: int, seed: int) -> torch.Tensor:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise CnnlabTypeError(f"seed must be an integer, got {seed!r}")
    if not SEED_LO <= seed <= SEED_HI:
        raise CnnlabValueError(f"seed must be an integer in [{SEED_LO}, {SEED_HI}] (the range torch.manual_seed "
                               f"takes), got {seed}")
    g = torch.Generator().manual_seed(seed)
    return torch.randint(lo, hi + 1, shape, generator=g).double()


def _rows(t: torch.Tensor) -> list[list[float]]:
    return [[float(v) for v in row] for row in t]


def _check_positions(o: int, names: Mapping[str, str] | None = None, *, grid: int = 0) -> None:
    """The animation stays drawable: at most :data:`MAX_POSITIONS` output positions (one frame each) and a
    (padded) input grid of at most :data:`MAX_GRID_SIDE` a side (checked before anything is allocated)."""
    label = (names or {}).get
    if o * o > MAX_POSITIONS:
        raise CnnlabValueError(f"the output would be {o}x{o} = {o * o} positions, one frame each; keep it to "
                               f"{MAX_POSITIONS} (e.g. a smaller {label('i', 'input i')} or a larger "
                               f"{label('s', 'stride s')})")
    if grid > MAX_GRID_SIDE:
        raise CnnlabValueError(f"the grid drawn would be {grid}x{grid} cells; keep its side to {MAX_GRID_SIDE} "
                               f"(a smaller {label('i', 'input i')} or {label('p', 'padding p')})")


def _value_text(panel: Panel, anim: Animation, frame_out: tuple[int, int], window: tuple[int, int]) -> str:
    """``Z[0,1] = 1*2 + 0*3 + ... = 7`` (products written out for kernels up to 3x3)."""
    y, x = frame_out
    value = panel.output[y][x]
    taps = [(u, v, r, c) for u, v, r, c in anim.taps(window)
            if 0 <= r < len(panel.grid) and 0 <= c < len(panel.grid[0])]
    if panel.op == "sum" and anim.kernel_size <= 3:
        terms = " + ".join(f"{panel.kernel[u][v]:g}*{panel.grid[r][c]:g}" for u, v, r, c in taps)
        return f"Z[{y},{x}] = {terms} = {value:g}"
    if panel.op == "max" and anim.kernel_size <= 4:
        vals = ", ".join(f"{panel.grid[r][c]:g}" for _, _, r, c in taps if panel.kinds[r][c] != "pad")
        return f"Z[{y},{x}] = max({vals}) = {value:g}"
    if panel.op == "mean" and anim.kernel_size <= 4:
        vals = " + ".join(f"{panel.grid[r][c]:g}" for _, _, r, c in taps)
        return f"Z[{y},{x}] = ({vals})/{len(taps)} = {value:.4g}"
    return f"Z[{y},{x}] = {value:.4g}"


def _add_frames(anim: Animation, title: str) -> Animation:
    """Title frame, one frame per output position (row-major), summary frame."""
    oh, ow = anim.output_size
    anim.frames.append(Frame(title=title))
    for y in range(oh):
        for x in range(ow):
            window = (y * anim.stride, x * anim.stride)
            texts = [_value_text(p, anim, (y, x), window) for p in anim.panels]
            anim.frames.append(Frame(f"output ({y}, {x}): position {y * ow + x + 1} of {oh * ow}", (y, x), window,
                                     texts))
    anim.frames.append(Frame(f"done: {oh}x{ow} output = {oh * ow} positions = {oh * ow} frames (+ title, summary)"))
    return anim


def _padded(a: torch.Tensor, before: int, after: int) -> tuple[torch.Tensor, list[list[str]]]:
    grid = F.pad(a, (before, after, before, after))
    n = grid.shape[0]
    inside = [before <= r < n - after for r in range(n)]
    return grid, [["input" if inside[r] and inside[c] else "pad" for c in range(n)] for r in range(n)]


def conv_animation(i: int, k: int, s: int = 1, p: int | str = 0, d: int = 1, *, transposed: bool = False,
                   output_padding: int = 0, seed: int = 0, names: Mapping[str, str] | None = None) -> Animation:
    """A ``k x k`` kernel over an ``i x i`` input with stride ``s``, padding ``p`` (int, "same" or
    "valid") and dilation ``d``; ``transposed``: the transposed convolution with those settings.
    ``names``: what messages call the arguments (e.g. :data:`FLAGS`); by default their symbols."""
    _check(names, at_least=1, i=i, k=k, s=s, d=d)
    if not isinstance(p, str):
        _check(names, at_least=0, p=p)
    if transposed:
        return _transposed_animation(i, k, s, p, d, output_padding, seed, names)
    try:
        before, after = arithmetic.resolve_padding(p, i, k, s, d)
        o, lines = arithmetic.explain_output_size(i, k, s, p, d)
    except ValueError as exc:
        raise _fail(exc) from None
    _check_positions(o, names, grid=i + before + after)
    a, w = _ints((i, i), 0, 3, seed), _ints((k, k), -1, 1, _next_seed(seed))
    grid, kinds = _padded(a, before, after)
    out = F.conv2d(grid[None, None], w[None, None], stride=s, dilation=d)[0, 0]
    panel = Panel("cross-correlation (what nn.Conv2d computes)", _rows(grid), kinds, _rows(out), _rows(w))
    anim = Animation("conv", {"input": i, "kernel": k, "stride": s, "padding": p, "dilation": d}, k, d, s, [panel],
                     lines, _rows(a), _rows(w))
    return _add_frames(anim, f"Conv2d: input {i}x{i}, kernel {k}x{k}, stride {s}, padding {p}, dilation {d}")


def _transposed_animation(i: int, k: int, s: int, p: int | str, d: int, output_padding: int,
                          seed: int, names: Mapping[str, str] | None) -> Animation:
    label = (names or {}).get
    if isinstance(p, str):
        if p.lower() != "valid":
            raise CnnlabError(f"{label('p', 'p')} {p!r} is for direct convolutions; a transposed one takes an integer")
        p = 0
    _check(names, at_least=0, output_padding=output_padding)
    if output_padding >= max(s, d):
        raise CnnlabValueError(f"{label('output_padding', 'output_padding')} {output_padding} must be smaller than "
                               f"{label('s', 'the stride s')} ({s}) or {label('d', 'the dilation d')} ({d}) "
                               f"(PyTorch's rule)")
    try:
        o = arithmetic.conv_transpose_output_size(i, k, s, p, output_padding, d)
    except ValueError as exc:
        raise _fail(exc) from None
    _check_positions(o, names, grid=max(i, o + d * (k - 1)))
    a, w = _ints((i, i), 0, 3, seed), _ints((k, k), -1, 1, _next_seed(seed))
    q = d * (k - 1) - p  # padding of the equivalent direct convolution (negative: cropping)
    n = o + d * (k - 1)  # its grid side
    grid = torch.zeros(n, n, dtype=torch.float64)
    kinds = [["pad"] * n for _ in range(n)]
    for r in range(n):
        for c in range(n):
            zr, zc = r - q, c - q  # position in the zero-inserted input
            if 0 <= zr <= (i - 1) * s and 0 <= zc <= (i - 1) * s:
                real = zr % s == 0 and zc % s == 0
                kinds[r][c] = "input" if real else "inserted"
                grid[r, c] = a[zr // s, zc // s] if real else 0.0
    flipped = torch.flip(w, dims=(0, 1))
    out = F.conv2d(grid[None, None], flipped[None, None], dilation=d)[0, 0]
    lines = [f"input i = {i}, kernel k = {k}, stride s = {s}, padding p = {p}, output_padding = {output_padding}"
             + (f", dilation d = {d}" if d != 1 else ""),
             f"o = (i-1)s - 2p + d(k-1) + output_padding + 1 = "
             f"{arithmetic.conv_transpose_output_formula(i, k, s, p, output_padding, d)}",
             f"drawn as a direct convolution: {s - 1} zero(s) between inputs, padding d(k-1) - p = {q} per side"
             + (f" (+{output_padding} after)" if output_padding else "") + ", kernel flipped, stride 1",
             f"output size: {o}"]
    panel = Panel("transposed convolution (nn.ConvTranspose2d) as a direct one", _rows(grid), kinds, _rows(out),
                  _rows(flipped), kernel_label="kernel flipped")
    anim = Animation("transposed", {"input": i, "kernel": k, "stride": s, "padding": p, "dilation": d,
                                    "output_padding": output_padding}, k, d, 1, [panel], lines, _rows(a), _rows(w))
    return _add_frames(anim, f"ConvTranspose2d: input {i}x{i}, kernel {k}x{k}, stride {s}, padding {p}")


def pool_animation(i: int, k: int, s: int | None = None, p: int = 0, d: int = 1, *, mode: str = "max",
                   ceil_mode: bool = False, seed: int = 0, names: Mapping[str, str] | None = None) -> Animation:
    """A ``k x k`` max or average pooling window (stride default ``k``, as ``nn.MaxPool2d``).
    ``names``: what messages call the arguments (e.g. :data:`FLAGS`); by default their symbols."""
    label = (names or {}).get
    _check(names, at_least=1, i=i, k=k, d=d)
    s = k if s is None else s
    _check(names, at_least=1, s=s)
    if mode not in ("max", "avg"):
        raise CnnlabValueError(f"{label('mode', 'mode')} must be max or avg, got {mode!r}")
    if mode == "avg" and d != 1:
        raise CnnlabValueError(f"average pooling has no dilation (nn.AvgPool2d); use {label('mode', 'mode')} max "
                               f"or {label('d', 'd')} 1")
    if isinstance(p, str) or isinstance(p, bool) or not isinstance(p, int) or p < 0 or 2 * p > k:
        raise CnnlabValueError(f"pooling {label('p', 'padding p')} must be an integer from 0 to "
                               f"{label('k', 'k')}/2 = {k // 2} (PyTorch's rule), got {p!r}")
    try:
        o = arithmetic.conv_output_size(i, k, s, p, d, ceil_mode)
    except ValueError as exc:
        raise _fail(exc) from None
    _check_positions(o, names, grid=i + 2 * p)
    a = _ints((i, i), 0, 9, seed)
    grid, kinds = _padded(a, p, p)
    if mode == "max":
        out = F.max_pool2d(a[None, None], k, s, p, d, ceil_mode=ceil_mode)[0, 0]
    else:
        out = F.avg_pool2d(a[None, None], k, s, p, ceil_mode=ceil_mode)[0, 0]
    name = "max pooling (padding never wins)" if mode == "max" else "average pooling (padding counts as 0)"
    panel = Panel(name, _rows(grid), kinds, _rows(out), op="max" if mode == "max" else "mean")
    dilation = f", dilation d = {d}" if d > 1 else ""
    lines = [f"input i = {i}, kernel k = {k}, stride s = {s}, padding p = {p}{dilation}",
             f"o = {'ceil' if ceil_mode else 'floor'}((i + 2p - d(k-1) - 1)/s) + 1 = "
             f"{arithmetic.conv_output_formula(i, k, s, p, d, ceil_mode)}", f"output size: {o}"]
    anim = Animation("pool", {"input": i, "kernel": k, "stride": s, "padding": p, "dilation": d, "mode": mode,
                              "ceil_mode": ceil_mode}, k, d, s, [panel], lines, _rows(a))
    return _add_frames(anim, f"{'Max' if mode == 'max' else 'Avg'}Pool2d: input {i}x{i}, window {k}x{k}, stride {s}")


def xcorr_animation(i: int = 5, k: int = 3, p: int = 0, *, seed: int = 0,
                    names: Mapping[str, str] | None = None) -> Animation:
    """The lecture's "Cross-Correlation vs Convolution" slide: the same window, visited in opposite
    orders; convolution multiplies each input cell by the kernel flipped on both axes.
    ``names``: what messages call the arguments (e.g. :data:`FLAGS`); by default their symbols."""
    _check(names, at_least=1, i=i, k=k)
    _check(names, at_least=0, p=p)
    try:
        o, lines = arithmetic.explain_output_size(i, k, 1, p)
    except ValueError as exc:
        raise _fail(exc) from None
    _check_positions(o, names, grid=i + 2 * p)
    a, w = _ints((i, i), 0, 3, seed), _ints((k, k), -2, 2, _next_seed(seed))
    grid, kinds = _padded(a, p, p)
    xcorr = correlate2d(grid, w, "valid")  # Z[i,j] = sum K[u,v] A[i+u, j+v]
    conv = convolve2d(grid, w, "valid")  # Z[i,j] = sum K[u,v] A[i-u, j-v]: the kernel flipped
    order = [[u * k + v + 1 for v in range(k)] for u in range(k)]
    panels = [Panel("cross-correlation Z = K (x) A: K[u,v] A[i+u, j+v]", _rows(grid), kinds, _rows(xcorr), _rows(w),
                    order),
              Panel("convolution Z = K * A: K[u,v] A[i-u, j-v] (kernel flipped)", _rows(grid), kinds, _rows(conv),
                    _rows(torch.flip(w, dims=(0, 1))), [row[::-1] for row in order[::-1]],
                    kernel_label="kernel flipped")]
    lines.append("convolution = cross-correlation with the kernel flipped horizontally and vertically")
    anim = Animation("xcorr", {"input": i, "kernel": k, "padding": p}, k, 1, 1, panels, lines, _rows(a), _rows(w))
    return _add_frames(anim, f"Cross-correlation vs convolution: input {i}x{i}, kernel {k}x{k}")
