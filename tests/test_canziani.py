"""Issue 24: any torchvision classifier and any model file in ``analyze`` and ``summary``; ``analyze
--canziani`` (the paper's figures with the paper's values beside ours) and ``--modern`` (later networks,
findings computed). Counts only, on the meta device: nothing here times a network."""

from __future__ import annotations

import json
import math

import pytest
import torch

from cnnlab.analysis import analyze_models, count_ops
from cnnlab.analysis import canziani as cz
from cnnlab.analysis import pipeline
from cnnlab.analysis.charts import chart_figures
from cnnlab.analysis.charts_canziani import CANZIANI_CHARTS, OURS_LATER, OURS_PAPER, PAPER
from cnnlab.analysis.report import ModelReport, Report
from cnnlab.analysis.sources import resolve_model
from cnnlab.cli.modelspec import run_summary
from cnnlab.external import torchvision_info, torchvision_names
from cnnlab.figures import close
from test_cli import assert_user_error, cnnlab_in_process

TORCHVISION = torchvision_names()


@pytest.mark.parametrize("name", TORCHVISION)
def test_every_torchvision_classifier_resolves_and_counts(name):
    """Built with weights=None on the meta device at its weights' input: parameters equal torchvision's
    documented count, multiply-adds its documented GFLOPS (which count multiply-adds), accuracy its top-1."""
    src = resolve_model(f"torchvision:{name}")
    info = torchvision_info(name)
    model = src.build(True)
    assert next(model.parameters()).device.type == "meta"
    assert src.input_shape == [3, info.input_size, info.input_size]
    assert sum(p.numel() for p in model.parameters()) == info.params
    counter = count_ops(model, src.input_shape)
    assert counter.macs / 1e9 == pytest.approx(info.gflops, abs=6e-4, rel=1e-3)
    assert not counter.unsupported, counter.unsupported
    assert src.accuracy == info.top1 and "torchvision" in src.accuracy_source


def test_torchvision_list_is_the_classifiers():
    assert len(TORCHVISION) >= 70 and "resnet50" in TORCHVISION and "vit_b_16" in TORCHVISION
    assert not any(n.startswith(("fasterrcnn", "deeplab", "r3d", "quantized")) for n in TORCHVISION)


MODEL_FILE = """
import torch.nn as nn

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))
"""


def test_a_model_file_works_in_analyze_as_in_summary(tmp_path):
    path = tmp_path / "tiny_net.py"
    path.write_text(MODEL_FILE)
    spec = f"{path}:Tiny"
    summary = run_summary(spec, input="3x16x16")
    report = pipeline.run_analyze([spec], input="3x16x16", no_timing=True, batch_sizes="1,2")
    (m,) = report.models
    assert (m.name, m.params, m.macs) == ("Tiny", summary.total_params, summary.total_macs)
    assert m.input_shape == [3, 16, 16] == list(summary.input_shape)
    proc = cnnlab_in_process("analyze", spec, "--input", "3x16x16", "--no-timing", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["macs"] == summary.total_macs


def test_torchvision_in_summary_names_its_accuracy():
    result = run_summary("torchvision:mobilenet_v3_large")
    info = torchvision_info("mobilenet_v3_large")
    assert result.total_params == info.params and list(result.input_shape) == [3, 224, 224]
    assert f"{info.top1:.2f}%" in result.note and "IMAGENET1K_V1" in result.note


@pytest.mark.parametrize("command", ["analyze", "summary"])
def test_an_unknown_torchvision_name_is_one_line_with_a_hint(command):
    proc = cnnlab_in_process(command, "torchvision:mobilenet_v3_lage")
    assert_user_error(proc, "unknown torchvision classifier 'mobilenet_v3_lage'", "did you mean mobilenet_v3_large")


def _numbers(node, where=""):
    """(path, entry) of every {"value": ...} entry in the data file."""
    if isinstance(node, dict):
        if "value" in node:
            yield where, node
        for k, v in node.items():
            yield from _numbers(v, f"{where}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _numbers(v, f"{where}[{i}]")


def test_the_paper_data_names_a_source_for_every_number():
    """Every number of the data file, single values and curves alike, names its source (page and figure of
    arXiv:1605.07678v4) and its precision; a missing one says why."""
    entries = list(_numbers(cz.paper_data()))
    assert len(entries) >= 3 * 15
    curves = [(n["paper_name"], n[k]) for n in cz.paper_data()["networks"] for k in ("time_ms_per_image", "memory_mb")]
    for where, entry in entries + curves:
        value = entry["value"] if "value" in entry else entry["values"]
        if value is None:
            assert entry.get("note"), f"{where}: a missing value says why"
            continue
        assert "1605.07678v4" in entry.get("source", "") and "Figure" in entry["source"], f"{where}: no source"
        assert entry.get("precision"), f"{where}: a value decoded from a figure gives its precision"
        if "values" in entry:  # a curve: one value per batch size, powers of two from 1 up
            assert entry["batch_sizes"] == [2 ** i for i in range(len(entry["values"]))], where
            assert all(isinstance(v, float) and v > 0 for v in entry["values"]), where
        else:
            assert isinstance(value, (int, float)), where
    named = {n["cnnlab"] for n in cz.paper_data()["networks"]}
    assert set(cz.CANZIANI_NETWORKS) <= named and len(cz.CANZIANI_NETWORKS) == 14
    paper = [n for n in cz.paper_networks() if n["top1"] is not None]
    assert len(paper) == 14 and all(n["gops"] and n["params"] and n["time_ms"] for n in paper)
    assert sum(n["memory_mb"] is not None for n in paper) == 11  # the paper's Figure 5 draws 11 networks


def _fake(name, macs, acc, params=1_000_000, ms=None):
    return ModelReport(name=name, input_shape=[3, 224, 224], params=params, trainable_params=params,
                       non_trainable_params=0, buffers=0, param_bytes=4 * params, macs=macs, flops=2 * macs,
                       memory=[{"batch": 1, "forward_bytes": 10, "training_bytes": 20}],
                       timing=[] if ms is None else [{"batch": 1, "ms_per_image": ms}], accuracy=acc)


def test_rank_correlation_and_frontiers_on_a_known_set():
    assert cz.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1)
    assert cz.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1)
    assert cz.spearman([1, 2, 3, 4, 5], [1, 1, 2, 3, 3]) == pytest.approx(0.9486833, abs=1e-6)  # ties: mean ranks
    assert math.isnan(cz.spearman([1, 2], [1, 2]))
    points = [("a", 1, 60), ("b", 2, 70), ("c", 3, 65), ("d", 4, 80), ("e", 4, 75), ("f", 0.5, 50)]
    assert cz.pareto_front(points) == ["f", "a", "b", "d"]
    assert cz.pareto_front([("x", 1, 70), ("y", 1, 70)]) == ["x", "y"]  # equal points dominate neither


def test_findings_are_computed_from_the_numbers():
    report = Report([_fake("small", 1e9, 70, ms=2), _fake("mid", 4e9, 76, ms=9), _fake("big", 15e9, 72, ms=30),
                     _fake("best", 8e9, 80, ms=15), _fake("noacc", 2e9, None, ms=4)], {"device": "cpu"}, [1])
    f = cz.findings(report)
    assert f["n_with_accuracy"] == 4
    assert f["spearman_accuracy_ops"] == pytest.approx(cz.spearman([1, 4, 15, 8], [70, 76, 72, 80]))
    assert f["pareto_accuracy_ops"] == ["small", "mid", "best"]
    assert f["pareto_accuracy_time"] == ["small", "mid", "best"]
    macs, ms = [1e9, 4e9, 15e9, 8e9, 2e9], [2, 9, 30, 15, 4]
    assert f["pearson_ops_time"] == pytest.approx(float(torch.corrcoef(torch.tensor([macs, ms]))[0, 1]), abs=1e-6)
    text = " ".join(f["sentences"])
    assert "small, mid, best" in text and f"{f['pearson_ops_time']:.2f}" in text
    untimed = cz.findings(Report([_fake("a", 1, 1), _fake("b", 2, 2)], {}, [1]))
    assert "pearson_ops_time" not in untimed and "too few" in untimed["sentences"][0]


def _figures(report):
    """{title: figure} of every chart (the caller closes them)."""
    figures = {}
    for title, _, fig in chart_figures(report):
        figures[title] = fig
    return figures


def test_the_charts_plot_the_reports_numbers_and_the_papers():
    """Figure 1, operations vs parameters, time and memory vs batch size read back: ours filled or solid, the
    paper's hollow or dashed at the data file's values, Inception-v4 (the paper's alone) with them."""
    report = analyze_models(["resnet18", "torchvision:mobilenet_v2"], batch_sizes=[1, 2], timing=False,
                            estimates=False, fallback_accuracies=cz.paper_accuracies())
    report.canziani = cz.canziani_section(report, ["canziani"])
    figures = _figures(report)
    paper = {n["paper_name"]: n for n in cz.paper_networks()}
    p18, pv4 = paper["ResNet-18"], paper["Inception-v4"]
    r18, mv2 = report.models
    try:
        fig1, fig2, time, memory = (figures[t].axes[0] for t, _ in CANZIANI_CHARTS)
        by_label = {c.get_label(): c.get_offsets().tolist() for c in fig1.collections}
        assert by_label[OURS_PAPER] == [[pytest.approx(r18.flops / 1e9), pytest.approx(r18.accuracy)]]
        assert by_label[OURS_LATER] == [[pytest.approx(mv2.flops / 1e9), pytest.approx(mv2.accuracy)]]
        assert by_label[PAPER] == [[p18["gops"], p18["top1"]], [pv4["gops"], pv4["top1"]]]  # at the paper's G-Ops
        by_label = {c.get_label(): c.get_offsets().tolist() for c in fig2.collections}
        assert by_label[PAPER] == [[p18["params"] / 1e6, p18["gops"]], [pv4["params"] / 1e6, pv4["gops"]]]
        dashed = lambda ax: [list(zip(line.get_xdata(), line.get_ydata())) for line in ax.get_lines()
                             if line.get_linestyle() == "--" and len(line.get_xdata())]
        assert dashed(time) == [p18["time_ms"], pv4["time_ms"]]  # untimed here: the paper's curves alone
        assert not [line for line in time.get_lines() if line.get_linestyle() == "-"]
        assert dashed(memory) == [p18["memory_mb"]]  # the paper's Figure 5 has no Inception-v4
        solid = [line for line in memory.get_lines() if line.get_linestyle() == "-"]
        assert [list(line.get_ydata()) for line in solid] == [[x["forward_bytes"] / 2**20 for x in m.memory]
                                                               for m in report.models]
    finally:
        for fig in figures.values():
            close(fig)
    rows = {r["network"]: r for r in report.canziani["comparison"]}
    assert rows["ResNet-18"]["cnnlab_params"] == r18.params and rows["ResNet-18"]["cnnlab_gmacs"] == r18.macs / 1e9
    assert rows["ResNet-18"]["top1_difference"] == pytest.approx(r18.accuracy - p18["top1"])
    # the paper's G-Ops of ResNet-18 are 2 x cnnlab's multiply-adds (3.63 vs 3.628): a check of both counts
    assert rows["ResNet-18"]["gops_per_gflops"] == pytest.approx(1, abs=0.005)
    assert abs(r18.params / p18["params"] - 1) < 1e-3 and "parameters" not in rows["ResNet-18"]["why"]


def test_canziani_refuses_in_one_line_naming_the_missing_networks(monkeypatch):
    present = [n for n in cz.list_models() if n not in ("enet", "nin_bn")]
    monkeypatch.setattr(cz, "list_models", lambda: present)
    proc = cnnlab_in_process("analyze", "--canziani", "--no-timing")
    assert_user_error(proc, "--canziani")
    line = proc.stderr.strip()
    missing = [n for n in cz.CANZIANI_NETWORKS if n not in present]
    assert "enet" in missing and "nin_bn" in missing
    assert line.endswith(f"lacks {len(missing)} of them: {', '.join(missing)}; analyze the others by name instead")


def test_modern_adds_its_set_with_findings(monkeypatch, tmp_path):
    monkeypatch.setattr(pipeline, "MODERN_NETWORKS", ("torchvision:mobilenet_v2", "torchvision:regnet_y_400mf"))
    proc = cnnlab_in_process("analyze", "--modern", "resnet18", "--no-timing", "--batch-sizes", "1,2",
                             "--format", "json", "--charts", str(tmp_path / "charts"))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    names = [m["name"] for m in out["models"]]
    assert names == ["torchvision:mobilenet_v2", "torchvision:regnet_y_400mf", "resnet18"]
    assert out["canziani"]["sets"] == ["modern"]
    assert out["canziani"]["findings"]["n_with_accuracy"] == 3
    assert sorted(p.name for p in (tmp_path / "charts").iterdir())[0].startswith("canziani_fig1")


@pytest.mark.skipif(bool(cz.missing_networks()), reason="the zoo lacks some of the paper's networks")
def test_the_papers_14_resolve_with_an_accuracy():
    acc = cz.paper_accuracies()
    for name in cz.CANZIANI_NETWORKS:
        src = resolve_model(name, fallback=acc)
        assert src.accuracy is not None or name == "vgg16_bn", name


@pytest.mark.parametrize("name", ["alexnet", "googlenet", "inception_v3"])
def test_zoo_networks_with_torchvisions_architecture_get_its_documented_accuracy(name):
    """Inception-v3's documented count includes its auxiliary head (off by default in the zoo, as inference never
    runs it): the same network, so the same documented top-1."""
    import torch

    from cnnlab.analysis.sources import _registry_accuracy
    from cnnlab.external import torchvision_info
    from cnnlab.models import create_model

    with torch.device("meta"):
        params = sum(p.numel() for p in create_model(name).parameters())
    top1, source = _registry_accuracy(name, params)
    assert top1 == torchvision_info(name).top1 and "torchvision" in source
