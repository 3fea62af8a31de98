"""cnnlab.conv: every algorithm against F.conv2d in float64 (forward and gradient), the
lecture's two definitions against scipy.signal, associativity, and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.conv import ALGORITHMS, conv2d, convolve2d, correlate2d
from cnnlab.conv.bench import bench_conv, error_report

from test_cli import assert_user_error, cnnlab_in_process as run_cli

GENERAL = ["direct", "im2col", "fft"]  # any kernel, stride, dilation, groups
WINOGRAD = ["winograd", "winograd4"]  # 3x3, stride 1, dilation 1 (groups and padding fine)
# float32 tolerances (relative to the output's scale), measured on VGG-16 shapes: see docs/BENCHMARKS.md
F32_TOL = {"direct": 1e-5, "im2col": 1e-5, "fft": 1e-5, "winograd": 1e-5, "winograd4": 1e-4}


def _case(seed, n, c, h, w, k, kh, kw, groups, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c * groups, h, w, generator=g, dtype=dtype)
    weight = torch.randn(k * groups, c, kh, kw, generator=g, dtype=dtype)
    bias = torch.randn(k * groups, generator=g, dtype=dtype)
    return x, weight, bias


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 2), c=st.integers(1, 3), k=st.integers(1, 3), groups=st.integers(1, 2),
    h=st.integers(5, 12), w=st.integers(5, 12), kh=st.integers(1, 4), kw=st.integers(1, 4),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)), algorithm=st.sampled_from(GENERAL),
)
def test_general_algorithms_equal_torch_float64(seed, n, c, k, groups, h, w, kh, kw, stride, dilation, padding, algorithm):
    x, weight, bias = _case(seed, n, c, h, w, k, kh, kw, groups)
    try:
        expected = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    except RuntimeError:
        with pytest.raises(ValueError):
            conv2d(x, weight, bias, stride, padding, dilation, groups, algorithm=algorithm)
        return
    got = conv2d(x, weight, bias, stride, padding, dilation, groups, algorithm=algorithm)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 2), c=st.integers(1, 4), k=st.integers(1, 4),
       groups=st.integers(1, 2), h=st.integers(3, 13), w=st.integers(3, 13), padding=st.integers(0, 2),
       algorithm=st.sampled_from(WINOGRAD))
def test_winograd_equal_torch_float64(seed, n, c, k, groups, h, w, padding, algorithm):
    x, weight, bias = _case(seed, n, c, h, w, k, 3, 3, groups)
    expected = F.conv2d(x, weight, bias, 1, padding, 1, groups)
    got = conv2d(x, weight, bias, 1, padding, 1, groups, algorithm=algorithm)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
@pytest.mark.parametrize("padding", ["same", "valid", 1])
def test_string_padding_and_gradients(algorithm, padding):
    x, weight, bias = _case(3, 2, 3, 7, 8, 4, 3, 3, 1)
    x.requires_grad_(True)
    weight.requires_grad_(True)
    ours = conv2d(x, weight, bias, padding=padding, algorithm=algorithm)
    ref = F.conv2d(x, weight, bias, padding=padding)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    grad = torch.randn_like(ref)
    gx, gw = torch.autograd.grad(ours, (x, weight), grad)
    rx, rw = torch.autograd.grad(ref, (x, weight), grad)
    torch.testing.assert_close(gx, rx, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(gw, rw, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("algorithm", ["im2col", "fft"])
def test_gradients_with_stride_dilation_groups(algorithm):
    x, weight, bias = _case(5, 2, 2, 11, 9, 3, 3, 2, 2)
    x.requires_grad_(True)
    weight.requires_grad_(True)
    kwargs = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    torch.autograd.gradcheck(lambda a, b: conv2d(a, b, algorithm=algorithm, **kwargs), (x, weight))


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_float32_tolerances(algorithm):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 32, 14, 14, generator=g)
    w = torch.randn(32, 32, 3, 3, generator=g) / 17
    ref = F.conv2d(x.double(), w.double(), padding=1)
    got = conv2d(x, w, padding=1, algorithm=algorithm)
    assert got.dtype == torch.float32
    assert float((got.double() - ref).abs().max() / ref.abs().max()) < F32_TOL[algorithm]


@pytest.mark.parametrize("algorithm", WINOGRAD)
@pytest.mark.parametrize("kwargs", [dict(stride=2), dict(dilation=2), dict()])
def test_winograd_rejects_what_it_cannot_do(algorithm, kwargs):
    x = torch.randn(1, 2, 8, 8)
    w = torch.randn(2, 2, 5, 5) if not kwargs else torch.randn(2, 2, 3, 3)
    with pytest.raises(ValueError, match="3x3 kernels with stride 1 and dilation 1"):
        conv2d(x, w, **kwargs, algorithm=algorithm)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown algorithm"):
        conv2d(torch.randn(1, 1, 5, 5), torch.randn(1, 1, 3, 3), algorithm="magic")
    with pytest.raises(ValueError, match="not supported for strided"):
        conv2d(torch.randn(1, 1, 5, 5), torch.randn(1, 1, 3, 3), stride=2, padding="same")
    with pytest.raises(ValueError, match=r"\(3 \+ 0 - 5\)/1 \+ 1 = -1"):
        conv2d(torch.randn(1, 1, 3, 3), torch.randn(1, 1, 5, 5))


SHAPES = [((5, 6), (3, 3)), ((7, 5), (2, 4)), ((4, 4), (4, 4)), ((6, 7), (1, 2)), ((3, 8), (3, 5)), ((2, 2), (3, 3))]


@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("a_shape,k_shape", SHAPES)
def test_correlate_and_convolve_equal_scipy(mode, a_shape, k_shape):
    rng = np.random.default_rng(hash((a_shape, k_shape)) % 2**32)
    a, k = rng.standard_normal(a_shape), rng.standard_normal(k_shape)
    if mode == "valid" and (a_shape[0] < k_shape[0] or a_shape[1] < k_shape[1]):
        with pytest.raises(ValueError):
            correlate2d(torch.from_numpy(a), torch.from_numpy(k), mode)
        return
    np.testing.assert_allclose(correlate2d(torch.from_numpy(a), torch.from_numpy(k), mode).numpy(),
                               scipy.signal.correlate2d(a, k, mode), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(convolve2d(torch.from_numpy(a), torch.from_numpy(k), mode).numpy(),
                               scipy.signal.convolve2d(a, k, mode), rtol=1e-12, atol=1e-12)


def test_convolve_is_correlate_with_flipped_kernel():
    a, k = torch.randn(6, 7, dtype=torch.float64), torch.randn(3, 3, dtype=torch.float64)
    torch.testing.assert_close(convolve2d(a, k), correlate2d(a, torch.flip(k, (0, 1))))
    torch.testing.assert_close(correlate2d(a, k), F.conv2d(a[None, None], k[None, None])[0, 0])


def test_convolution_associative_and_commutative_correlation_not():
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(s, generator=g, dtype=torch.float64) for s in [(6, 5), (3, 4), (2, 3)])
    torch.testing.assert_close(convolve2d(convolve2d(a, b, "full"), c, "full"),
                               convolve2d(a, convolve2d(b, c, "full"), "full"))
    torch.testing.assert_close(convolve2d(a, b, "full"), convolve2d(b, a, "full"))
    left = correlate2d(correlate2d(a, b, "full"), c, "full")
    right = correlate2d(a, correlate2d(b, c, "full"), "full")
    assert (left - right).abs().max() > 1e-3
    assert (correlate2d(a, b, "full") - correlate2d(b, a, "full")).abs().max() > 1e-3


def test_error_report_winograd4_least_accurate():
    report = error_report([(64, 14)], algorithms=("direct", "im2col", "fft", "winograd", "winograd4"))
    row = report[0]
    others = [row[k] for k in ("F.conv2d", "direct", "im2col", "fft", "winograd")]
    assert row["winograd4"] > max(others)
    assert max(others) < 1e-5 and row["winograd4"] < 1e-4


def test_bench_rows_have_reference_and_ratios():
    rows = bench_conv([(16, 14)], (1,), ("im2col", "winograd"), runs=1)
    assert [r.algorithm for r in rows] == ["F.conv2d", "im2col", "winograd"]
    assert rows[0].ratio == 1.0 and all(r.ms > 0 and r.gflops > 0 and r.max_error < 1e-5 for r in rows)


def test_cli_demo_and_bench():
    proc = run_cli("demo", "xcorr", "--associativity")
    assert proc.returncode == 0, proc.stderr
    for text in ["1) -1,-1", "9) -1,-1", "= 17", "= 61", "(associative)", "(not associative)"]:
        assert text in proc.stdout
    proc = run_cli("bench", "conv", "--quick", "--batch-sizes", "1", "--algorithms", "im2col", "--runs", "1",
                   "--no-errors", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    import json

    doc = json.loads(proc.stdout)
    assert {r["algorithm"] for r in doc["rows"]} == {"F.conv2d", "im2col"} and "torch" in doc["machine"]
    assert_user_error(run_cli("bench", "conv", "--algorithms", "strassen"), "unknown algorithm 'strassen'")
    assert_user_error(run_cli("bench", "conv", "--batch-sizes", "0"), "--batch-sizes")


def test_run_bench_is_the_command(monkeypatch):
    from cnnlab.conv import bench
    from cnnlab.errors import CnnlabError, UnknownNameError
    from cnnlab.runtime import machine_line

    assert bench.machine_line is machine_line  # one machine line for every benchmark
    with pytest.raises(UnknownNameError, match="unknown algorithm 'strassen'"):
        bench.run_bench(algorithms="im2col,strassen")
    for batch_sizes in ("0", "a", ""):
        with pytest.raises(CnnlabError, match="--batch-sizes takes comma-separated positive integers"):
            bench.run_bench(batch_sizes=batch_sizes)
    with pytest.raises(CnnlabError, match="--runs must be a positive integer"):
        bench.run_bench(runs=-1)
    monkeypatch.setattr(bench, "QUICK_LAYERS", [(4, 14)])  # tiny layers; the policy is what is tested
    rows = []
    result = bench.run_bench(quick=True, batch_sizes=[1, 2], algorithms="direct,fft,im2col", runs=1, on_row=rows.append)
    assert set(result) == {"machine", "rows", "errors"} and result["machine"] == machine_line("cpu")
    cases = {(r["batch"], r["algorithm"]) for r in result["rows"]}
    # direct only at batch 1 (side <= 14); --quick runs FFT at batch 1 only
    assert cases == {(1, "F.conv2d"), (1, "direct"), (1, "fft"), (1, "im2col"), (2, "F.conv2d"), (2, "im2col")}
    assert len(rows) == len(result["rows"]) and [e["layer"] for e in result["errors"]] == ["4@14"]
    assert "errors" not in bench.run_bench(quick=True, batch_sizes="1", algorithms=["im2col"], runs=1, errors=False)
