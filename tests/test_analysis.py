"""cnnlab analyze: exact counts against torchvision's documented figures and FlopCounterMode,
memory bookkeeping, timing fields, reports (table, csv, json, html, charts), any nn.Module."""

from __future__ import annotations

import json
import time
from html.parser import HTMLParser

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

import cnnlab
from cnnlab.analysis import IMAGENET_TOP1, activation_bytes, analyze, analyze_models
from cnnlab.errors import CnnlabError

from test_cli import assert_user_error, cnnlab_in_process as run_cli

# torchvision's documented "GFLOPS" column, which counts multiply-accumulates (GMACs)
TORCHVISION_GMACS = {"vgg11": 7.609, "vgg13": 11.308, "vgg16": 15.470, "vgg19": 19.632, "resnet18": 1.814,
                     "resnet34": 3.664, "resnet50": 4.089, "resnet101": 7.801, "resnet152": 11.514}


@pytest.fixture(scope="module")
def zoo_counts():
    return {m.name: m for m in analyze_models(cnnlab.list_models(), timing=False, estimates=False).models}


@pytest.mark.parametrize("name,gmacs", TORCHVISION_GMACS.items())
def test_macs_within_half_percent_of_torchvision(zoo_counts, name, gmacs):
    assert abs(zoo_counts[name].macs / 1e9 - gmacs) / gmacs < 0.005
    assert zoo_counts[name].flops == 2 * zoo_counts[name].macs


@pytest.mark.parametrize("name", cnnlab.list_models())
def test_flops_equal_flop_counter_mode(zoo_counts, name):
    info = cnnlab.get_model_info(name)
    with torch.device("meta"):
        model = cnnlab.create_model(name).eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, *info.input_shape, device="meta"))
    assert zoo_counts[name].flops == counter.get_total_flops()
    assert zoo_counts[name].unsupported == []


def test_params_equal_documented(zoo_counts):
    assert zoo_counts["vgg16"].params == 138_357_544 and zoo_counts["resnet50"].params == 25_557_032
    with torch.device("meta"):
        r50 = cnnlab.create_model("resnet50")
    bns = [m for m in r50.modules() if isinstance(m, nn.BatchNorm2d)]
    # buffers reported apart from parameters: running mean + var per channel, one step counter per BN
    assert zoo_counts["resnet50"].buffers == sum(2 * m.num_features + 1 for m in bns)
    assert zoo_counts["resnet50"].trainable_params == zoo_counts["resnet50"].params
    assert zoo_counts["vgg16"].param_bytes == 4 * 138_357_544
    assert zoo_counts["vgg16"].accuracy == IMAGENET_TOP1["vgg16"] == 71.592
    assert zoo_counts["convnet"].accuracy is None


def test_convnet_hand_count(zoo_counts):
    m = zoo_counts["convnet"]
    assert m.macs == 88_592  # 28*28*4*9 + 14*14*8*4*9 + 392*10
    # pooling and activations listed apart, never mixed into MACs
    assert m.other_ops["activation"] == 28 * 28 * 4 + 14 * 14 * 8
    assert m.other_ops["pool"] == (14 * 14 * 4 + 7 * 7 * 8) * 4


def test_resnet_adds_and_norms_counted_apart(zoo_counts):
    r18 = zoo_counts["resnet18"].other_ops
    assert r18["add"] == 64 * 56 * 56 * 2 + 128 * 28 * 28 * 2 + 256 * 14 * 14 * 2 + 512 * 7 * 7 * 2
    assert r18["norm"] > 0 and r18["pool"] > 0


@pytest.mark.parametrize("name", cnnlab.list_models())
def test_the_whole_zoo_is_counted_with_its_peaks(name):
    """Counting, activations and the simulated training and inference peaks for every model (how
    long it takes is benchmarks/bench_analyze.py's business, not a test's; one model per test, so the
    workers share the zoo)."""
    from cnnlab.analysis.pipeline import DEFAULT_BATCH_SIZES

    report = analyze_models([name], timing=False)
    assert [m.name for m in report.models] == [name]
    for m in report.models:
        assert m.macs > 0 and 2 * m.flops < m.training_flops <= 3 * m.flops, m.name
        assert [row["batch"] for row in m.memory] == list(DEFAULT_BATCH_SIZES), m.name
        for row in m.memory:
            assert 0 < row["inference_peak_bytes"] <= row["training_peak_bytes"], (m.name, row)


def test_activation_memory_by_hand():
    with torch.device("meta"):
        model = cnnlab.create_model("convnet")
    fwd, train = activation_bytes(model, (1, 28, 28), 4)
    produced = 4 * 4 * (28 * 28 * 4 + 14 * 14 * 4 + 14 * 14 * 8 + 7 * 7 * 8 + 10)  # conv_1, pool_1, conv_2, pool_2, linear_1
    assert fwd == produced
    assert train > 0
    rep = analyze_models(["convnet"], batch_sizes=(1, 2, 8), timing=False).models[0]
    assert [m["forward_bytes"] for m in rep.memory] == [produced // 4, produced // 2, 2 * produced]


def test_unsupported_ops_are_named_not_zeroed():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return torch.cumsum(self.conv(x), dim=-1)

    report = analyze(Odd(), (1, 8, 8), batch_sizes=(1,), timing=False)
    m = report.models[0]
    assert m.macs == 6 * 6 * 2 * 9
    assert any("cumsum" in u and "Odd" in u for u in m.unsupported)


def test_any_module_with_timing_and_frames():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    report = analyze(model, (3, 16, 16), batch_sizes=(1, 4), repeats=3, name="tiny")
    m = report.models[0]
    assert [t["batch"] for t in m.timing] == [1, 4]
    for t in m.timing:
        assert t["ms_per_batch"] > 0 and t["images_per_s"] == pytest.approx(t["batch"] / t["ms_per_batch"] * 1e3)
        assert t["roof_fraction"] is not None and t["repeats"] == 3
    assert report.machine["roof_gflops"] > 1 and report.machine["threads"] == torch.get_num_threads()
    frame = report.to_frame()
    assert frame.loc[0, "name"] == "tiny" and frame.loc[0, "macs"] == 16 * 16 * 8 * 27 + 32
    d = report.to_dict()
    assert d["models"][0]["params"] == sum(p.numel() for p in model.parameters())
    objs = json.loads(report.to_json())
    assert {"name", "params", "macs", "flops"} <= set(objs[0])
    assert report.to_csv().splitlines()[0].startswith("name,")


class _Checker(HTMLParser):
    """Embedded images, rows of the main table (id="models"), its headers, <details> sections."""

    def __init__(self):
        super().__init__()
        self.images, self.rows, self.details, self.headers = 0, 0, 0, []
        self.table = None
        self.in_th = False

    def handle_starttag(self, tag, attrs):
        if tag == "img" and dict(attrs).get("src", "").startswith("data:image/png;base64,"):
            self.images += 1
        if tag == "table":
            self.table = dict(attrs).get("id")
        if tag == "tr" and self.table == "models":
            self.rows += 1
        if tag == "details":
            self.details += 1
        self.in_th = tag == "th" and self.table == "models"

    def handle_endtag(self, tag):
        if tag == "th":
            self.in_th = False

    def handle_data(self, data):
        if self.in_th:
            self.headers.append(data)


def test_cli_analyze_outputs(tmp_path):
    html_path = tmp_path / "report.html"
    proc = run_cli("analyze", "convnet", "resblocks_projection", "--quick", "--repeats", "1", "--format", "json",
                   "--html", str(html_path), "--charts", str(tmp_path / "charts"))
    assert proc.returncode == 0, proc.stderr
    objs = json.loads(proc.stdout)
    assert [o["name"] for o in objs] == ["convnet", "resblocks_projection"]
    assert objs[0]["params"] == 4266 and objs[0]["macs"] == 88592 and objs[0]["flops"] == 177184
    assert [t["batch"] for t in objs[0]["timing"]] == [1, 8]
    checker = _Checker()
    page = html_path.read_text()
    checker.feed(page)
    assert checker.images == 4 and checker.rows == 3  # header + two models, four embedded charts
    assert checker.details >= 3 and "Training GFLOPs / image" in checker.headers
    assert not any("_" in h for h in checker.headers)  # human headers, not raw keys
    assert "param_MB" not in page and "accuracy_source" not in page and page.count("documented top-1") <= 1
    assert objs[0]["training_flops"] > 2 * objs[0]["flops"]
    assert all(m["training_peak_bytes"] > m["inference_peak_bytes"] > 0 for m in objs[0]["memory"])
    assert all(m["measured_inference_peak_bytes"] > 0 for m in objs[0]["memory"])
    assert sorted(p.name for p in (tmp_path / "charts").iterdir()) == [
        "accuracy_vs_ops.png", "memory_vs_batch.png", "ops_vs_time.png", "time_vs_batch.png"]
    proc = run_cli("analyze", "vgg16", "resnet18", "--no-timing", "--format", "csv")
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("name,") and lines[1].startswith("vgg16,") and "138357544" in lines[1]
    assert_user_error(run_cli("analyze", "vgg17"), "unknown model 'vgg17'", "vgg16")
    assert_user_error(run_cli("analyze", "convnet", "--batch-sizes", "a,b"), "--batch-sizes")


def test_cli_analyze_accuracy_from_runs(tmp_path):
    proc = run_cli("train", "--dataset", "digits", "--epochs", "2", "--momentum", "0.9", "--lr", "0.1",
                   "--batch-size", "32", "--out", str(tmp_path / "runs" / "a"))
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("analyze", "convnet", "--no-timing", "--format", "json", "--runs", str(tmp_path / "runs"))
    obj = json.loads(proc.stdout)[0]
    assert obj["accuracy"] is not None and "digits test" in obj["accuracy_source"]
    assert_user_error(run_cli("analyze", "convnet", "--runs", str(tmp_path / "nothing")), "no cnnlab run directory")


def test_html_report_renders_in_headless_chromium(tmp_path):
    """Where a Chromium is installed, the report renders to a non-trivial screenshot."""
    import shutil
    import subprocess

    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no Chromium on this machine")
    from cnnlab.analysis import write_html

    report = analyze_models(["convnet", "resnet18"], batch_sizes=(1,), timing=False)
    page = write_html(report, tmp_path / "r.html")
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
                    page.as_uri()], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 20_000


def test_time_fn_warms_up_then_times():
    from cnnlab.runtime import time_fn

    calls = []
    timing = time_fn(lambda: calls.append(1) or len(calls), "cpu", repeats=4, warmup=2)
    assert len(calls) == 6 and len(timing.times) == 4 and timing.result == 6
    assert timing.best <= timing.median and timing.warmup_s >= 0
    slow = time_fn(lambda: time.sleep(0.02), "cpu", repeats=5, budget_s=0.001)  # slow warm-up: one timed run
    assert len(slow.times) == 1
    with pytest.raises(ValueError):
        time_fn(lambda: None, "cpu", repeats=0)


def test_report_machine_uses_the_shared_machine_line():
    from cnnlab.runtime import machine_line

    report = analyze(nn.Conv2d(1, 1, 3), (1, 5, 5), batch_sizes=(1,), timing=False)
    assert report.machine["description"] == machine_line("cpu") and report.batch_sizes == [1]


def test_run_analyze_is_the_command(tmp_path):
    from cnnlab.analysis import run_analyze

    seen = []
    report = run_analyze(["convnet"], batch_sizes="1,2", no_timing=True, input="1x32x32", on_model=seen.append)
    assert report.batch_sizes == [1, 2] and [m.name for m in seen] == ["convnet"]
    assert report.models[0].input_shape == [1, 32, 32] and report.models[0].timing == []
    assert run_analyze(["convnet"], quick=True, no_timing=True).batch_sizes == [1, 8]
    (tmp_path / "file").write_text("")
    bad = [
        (dict(models=["vgg17"]), "unknown model 'vgg17'"),
        (dict(models=["convnet"], batch_sizes="a,b"), "--batch-sizes takes comma-separated positive integers"),
        (dict(models=["convnet"], repeats=-1), "--repeats must be a positive integer"),
        (dict(models=["convnet"], input="28x28"), "CxHxW"),
        (dict(models=["convnet"], charts=tmp_path / "file"), "is a file; give a folder"),
        (dict(models=["convnet"], html=tmp_path), "is a folder; give a file name"),
    ]
    if not torch.cuda.is_available():
        bad.append((dict(models=["convnet"], device="cuda"), "no CUDA device"))
    for kwargs, message in bad:
        with pytest.raises(CnnlabError, match=message):
            run_analyze(**kwargs)


def test_roof_is_a_roof():
    """The best of several measurements; a model measured above it raises it: never above 100%."""
    from cnnlab.analysis import ModelReport
    from cnnlab.analysis.timing import raise_roof, roof_measurements, theoretical_peak

    roof = roof_measurements(torch.device("cpu"), repeats=1)
    assert len(roof["measurements"]) >= 5 and roof["gflops"] == max(roof["measurements"].values())
    fast = ModelReport("fast", [1, 8, 8], 1, 1, 0, 0, 4, 1, 2, timing=[{"batch": 8, "gflops": 3 * roof["gflops"]}])
    raised = raise_roof([fast], roof)
    assert raised["gflops"] == 3 * roof["gflops"] and "fast at batch 8" in raised["source"]
    assert fast.timing[0]["roof_fraction"] == 1.0
    peak = theoretical_peak(torch.device("cpu"))
    if peak is not None:
        assert "cores x" in peak["formula"] and peak["gflops"] > 0


def test_html_findings_come_first():
    from cnnlab.analysis.html import findings

    from cnnlab.analysis import ModelReport, Report

    def model(name, gflops, ms, peak):
        memory = [{"batch": 4, "forward_bytes": 1, "training_bytes": 1, "training_peak_bytes": peak,
                   "inference_peak_bytes": peak // 2, "measured_inference_peak_bytes": peak // 2}]
        timing = [{"batch": 4, "ms_per_image": ms, "images_per_s": 1e3 / ms, "gflops": 1.0, "roof_fraction": 0.5}]
        return ModelReport(name, [1, 8, 8], 1, 1, 0, 0, 4, int(gflops * 5e8), int(gflops * 1e9), memory=memory,
                           timing=timing, training_flops=int(gflops * 2.9e9))

    report = Report([model("a", 1, 2.0, 2**20), model("b", 2, 4.1, 2**22), model("c", 4, 7.9, 2**24)], {}, [4])
    lines = findings(report)
    assert lines[0].startswith("Operations predict time: Pearson r = ")
    assert any("training step costs 2.90x to 2.90x" in f for f in lines)
    assert any("Training at batch 4 needs from 1.0 MiB (a) to 16.0 MiB (c)" in f for f in lines)
    assert any("within 0.0% of the measured inference peak" in f for f in lines)
