"""``cnnlab analyze --canziani`` and ``--modern``: the 14 networks of Canziani, Paszke & Culurciello (2016)
with the paper's own values beside ours (transcribed once, with their sources, in
``data/canziani2016.json``), a fixed set of later torchvision classifiers, and the findings the paper
wrote, computed from the numbers (rank and linear correlations, Pareto frontiers)."""

from __future__ import annotations

import functools
import json
import math
from importlib import resources
from typing import Any, Sequence

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.models import list_models

__all__ = ["CANZIANI_NETWORKS", "MODERN_NETWORKS", "paper_data", "paper_networks", "paper_accuracies",
           "missing_networks", "check_canziani", "comparison_rows", "spearman", "pearson", "pareto_front",
           "findings", "canziani_section"]

CANZIANI_NETWORKS = ("alexnet", "alexnet_bn", "nin_bn", "enet", "googlenet", "inception_v3", "resnet18", "resnet34",
                     "resnet50", "resnet101", "resnet152", "vgg16", "vgg19", "vgg16_bn")
MODERN_NETWORKS = tuple(f"torchvision:{n}" for n in (
    "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "efficientnet_b3", "regnet_y_400mf", "regnet_y_1_6gf",
    "convnext_tiny", "resnext50_32x4d", "vit_b_16"))


@functools.lru_cache(maxsize=1)
def paper_data() -> dict[str, Any]:
    """The paper's values as transcribed in ``cnnlab/analysis/data/canziani2016.json`` (each with its source)."""
    return json.loads((resources.files("cnnlab.analysis") / "data" / "canziani2016.json").read_text())


def _value(entry: dict) -> float | None:
    return entry.get("value")


def _curve(entry: dict | None) -> list[tuple[int, float]] | None:
    if not entry or entry.get("values") is None:
        return None
    return list(zip(entry["batch_sizes"], entry["values"]))


def paper_networks() -> list[dict[str, Any]]:
    """One flat dict per network of the paper: ``paper_name``, ``cnnlab`` (or None), ``top1`` (%),
    ``gops`` (the paper's G-Ops), ``params`` (parameters), ``time_ms`` and ``memory_mb`` ([(batch, value)] on
    the paper's Jetson TX1: ms per image, MB), each None where the paper gives none; ``gops_note`` and ``note``
    where the data file explains a value."""
    out = []
    for n in paper_data()["networks"]:
        params = _value(n["params_millions"])
        out.append({"paper_name": n["paper_name"], "cnnlab": n["cnnlab"], "top1": _value(n["top1"]),
                    "gops": _value(n["gops"]), "params": None if params is None else params * 1e6,
                    "time_ms": _curve(n.get("time_ms_per_image")), "memory_mb": _curve(n.get("memory_mb")),
                    "top1_source": n["top1"].get("source"), "note": n.get("note"),
                    "gops_note": n["gops"].get("note") if n["gops"]["value"] is not None else None})
    return out


PAPER_TOP1_SOURCE = "Canziani et al. 2016 (arXiv:1605.07678v4), Figure 1"


def paper_accuracies() -> dict[str, tuple[float, str]]:
    """{cnnlab name: (the paper's top-1, its source)}: for networks no documented weights give an accuracy."""
    return {n["cnnlab"]: (n["top1"], PAPER_TOP1_SOURCE) for n in paper_networks() if n["cnnlab"] and n["top1"] is not None}


def missing_networks(names: Sequence[str] = CANZIANI_NETWORKS) -> list[str]:
    known = set(list_models())
    return [n for n in names if n not in known]


def check_canziani() -> None:
    """One line naming the paper's networks the zoo does not have (yet)."""
    missing = missing_networks()
    if missing:
        raise CnnlabError(f"--canziani runs the paper's 14 networks, and this cnnlab's zoo lacks "
                          f"{len(missing)} of them: {', '.join(missing)}; analyze the others by name instead")


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rank correlation (ties get their mean rank); NaN for fewer than 3 points."""
    if len(xs) < 3:
        return float("nan")
    return pearson(_ranks(xs), _ranks(ys))


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    if len(xs) < 2 or np.std(xs) == 0 or np.std(ys) == 0:
        return float("nan")
    return float(np.corrcoef(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float))[0, 1])


def pareto_front(points: Sequence[tuple[str, float, float]]) -> list[str]:
    """Names on the frontier of (name, cost, accuracy): no other point costs no more and is no less
    accurate while strictly better in one; in order of cost."""
    front = [(name, cost, acc) for name, cost, acc in points
             if not any(c <= cost and a >= acc and (c < cost or a > acc) for _, c, a in points)]
    return [name for name, _, _ in sorted(front, key=lambda p: p[1])]


def _time_at(m, batch: int) -> float | None:
    t = next((t for t in m.timing if t["batch"] == batch), None)
    return None if t is None else t["ms_per_image"]


def findings(report) -> dict[str, Any]:
    """The paper's questions asked of ``report``'s networks: does accuracy follow operations (Spearman),
    the accuracy/operations and (where timed) accuracy/time Pareto frontiers, operations vs time (Pearson)."""
    with_acc = [m for m in report.models if m.accuracy is not None]
    out: dict[str, Any] = {"n_with_accuracy": len(with_acc)}
    out["spearman_accuracy_ops"] = spearman([m.macs for m in with_acc], [m.accuracy for m in with_acc])
    out["pareto_accuracy_ops"] = pareto_front([(m.name, m.macs, m.accuracy) for m in with_acc])
    timed = [m for m in report.models if m.timing]
    if timed:
        batch = max(t["batch"] for t in timed[0].timing)
        rows = [(m, _time_at(m, batch)) for m in timed if _time_at(m, batch) is not None]
        out["time_batch"] = batch
        out["pearson_ops_time"] = pearson([m.macs for m, _ in rows], [t for _, t in rows])
        out["pareto_accuracy_time"] = pareto_front([(m.name, t, m.accuracy) for m, t in rows if m.accuracy is not None])
    out["sentences"] = _sentences(out)
    return out


def _strength(r: float) -> str:
    if math.isnan(r):
        return "cannot be said (too few networks)"
    a = abs(r)
    word = "strongly" if a >= 0.7 else "moderately" if a >= 0.4 else "weakly" if a >= 0.2 else "hardly"
    return f"{word} ({'rises' if r > 0 else 'falls'} with them)" if a >= 0.2 else word


def _sentences(f: dict[str, Any]) -> list[str]:
    r = f["spearman_accuracy_ops"]
    out = [f"Does accuracy still follow operations? It does {_strength(r)}: Spearman rank correlation "
           f"{r:.2f} between top-1 and multiply-adds over the {f['n_with_accuracy']} networks with an accuracy.",
           f"On the accuracy/operations Pareto frontier: {', '.join(f['pareto_accuracy_ops']) or 'none'}."]
    if "pearson_ops_time" in f:
        out.append(f"Operations vs measured time on this machine (batch {f['time_batch']}): Pearson r = "
                   f"{f['pearson_ops_time']:.2f}.")
        out.append(f"On the accuracy/time frontier on this machine: {', '.join(f['pareto_accuracy_time']) or 'none'}.")
    return out


NOTES = ("operations: cnnlab counts the multiply-adds of conv and linear layers (MACs; FLOPs = 2 x MACs); the "
         "paper counted operations with torch-opcounter, on an axis of G-Ops; 'G-Ops/GFLOPs' is the paper's count over "
         "cnnlab's FLOPs",
         "top-1: cnnlab's come from torchvision's documented weights (another training than the Torch7 models the "
         "paper measured; both single central crop), or, where no weights are documented, are the paper's own")


def _why(row: dict[str, Any], m) -> str:
    """What differs between the paper's numbers and cnnlab's for one network, beyond :data:`NOTES`."""
    why = []
    if m is not None and row["params"] is not None and abs(m.params / row["params"] - 1) > 0.005:
        why.append(f"parameters {100 * (m.params / row['params'] - 1):+.1f}% (another variant of the network)")
    if m is not None and row["gops"] is not None and abs(row["gops"] / (m.flops / 1e9) - 1) > 0.05:
        why.append("operations differ by more than 5%" + (" (see the notes)" if row.get("gops_note") else ""))
    if m is not None and m.input_shape[-1] != 224:
        why.append(f"cnnlab at {m.input_shape[-1]} px")
    if m is not None and m.accuracy_source == PAPER_TOP1_SOURCE:
        why.append("top-1 is the paper's (no documented weights)")
    elif m is not None and m.accuracy is not None and row["top1"] is not None:
        why.append("top-1 from torchvision's weights")
    if row.get("note"):
        why.append(row["note"])
    return "; ".join(why)


def comparison_rows(report) -> list[dict[str, Any]]:
    """Paper vs cnnlab per network of the paper: parameters, operations, top-1 and why they differ."""
    by_name = {m.name: m for m in report.models}
    rows = []
    for p in paper_networks():
        m = by_name.get(p["cnnlab"]) if p["cnnlab"] else None
        if p["cnnlab"] and m is None:
            continue  # not run this time
        ours = {} if m is None else {"params": m.params, "gmacs": m.macs / 1e9, "gflops": m.flops / 1e9,
                                     "top1": m.accuracy, "top1_source": m.accuracy_source,
                                     "input": "x".join(map(str, m.input_shape))}
        top1_diff = None if m is None or m.accuracy is None or p["top1"] is None or \
            m.accuracy_source == PAPER_TOP1_SOURCE else m.accuracy - p["top1"]
        gops_ratio = None if m is None or p["gops"] is None or not m.flops else p["gops"] / (m.flops / 1e9)
        rows.append({"network": p["paper_name"], "cnnlab": p["cnnlab"], "paper_top1": p["top1"],
                     "paper_gops": p["gops"], "paper_params": p["params"], **{f"cnnlab_{k}": v for k, v in ours.items()},
                     "gops_per_gflops": gops_ratio, "top1_difference": top1_diff, "why": _why(p, m),
                     "notes": [n for n in (p.get("gops_note"),) if n]})
    return rows


def canziani_section(report, sets: Sequence[str]) -> dict[str, Any]:
    """What ``report.canziani`` holds: the sets run, the paper, its setup, the comparison and the findings."""
    data = paper_data()
    return {"sets": list(sets), "paper": data["paper"], "setup": data["setup"], "readings": data["readings"],
            "notes": list(NOTES),
            "comparison": comparison_rows(report), "findings": findings(report)}
