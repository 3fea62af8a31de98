"""Decode the per-network numbers of Canziani, Paszke & Culurciello (2016), arXiv:1605.07678v4, from the
vector drawings of its figures, and check ``src/cnnlab/analysis/data/canziani2016.json`` against them.

The paper states its per-network values only as figures; the arXiv PDF embeds them as matplotlib vector
drawings (form XObjects named ``./figures/*.pdf``), so a bar's top, a blob's centre and radius and a curve's
vertices are in the file as coordinates. Each is mapped to data through the figure's own axis ticks
(linear, or log for Figures 3 and 5). Standard library only; the PDF is not in the repository: the data file's
``pdf`` entry names the copy the values were decoded from (327,513 bytes, sha256 191b45b0...a126; a PDF of
https://arxiv.org/abs/1605.07678v4 built elsewhere should hold the same drawings, and a warning says so)::

    python tools/canziani_pdf.py 1605.07678v4.pdf            # the decoded values as JSON
    python tools/canziani_pdf.py 1605.07678v4.pdf --check    # every number of the data file against them

Figures used: 1 (top-1, bars), 2 (G-Ops = blob centre x, parameters = blob area, calibrated on its legend
blobs 5M..155M), 3 (inference time per image vs batch size), 5 (memory vs batch size); Figure 10 (top-1 per
M-parameter) only as a cross-check of Figures 1 and 2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
import zlib
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "src" / "cnnlab" / "analysis" / "data" / "canziani2016.json"
SHA256 = "191b45b0aa831ea419ca4bbfd55a4c8700c796aa07c87e81e9e3664d8853a126"
TOKEN = re.compile(rb"\((?:\\.|[^\\)])*\)|\[[^\]]*\]|/[^\s/\[\]()<>]+|-?\d*\.\d+|-?\d+|[A-Za-z'\"*]+")


def figure_streams(pdf: bytes) -> dict[str, bytes]:
    """{figure file name: decompressed content stream} of the form XObjects pdfTeX embedded."""
    out = {}
    for m in re.finditer(rb"\n(\d+) 0 obj\s*<<(.*?)>>\s*stream\r?\n", pdf, re.S):
        name = re.search(rb"/PTEX\.FileName \(\./figures/([^)]*)\)", m.group(2))
        if name:
            length = int(re.search(rb"/Length (\d+)", m.group(2)).group(1))
            out[name.group(1).decode()] = zlib.decompress(pdf[m.end():m.end() + length])
    return out


def _mul(a, b):
    return [a[0] * b[0] + a[1] * b[2], a[0] * b[1] + a[1] * b[3], a[2] * b[0] + a[3] * b[2],
            a[2] * b[1] + a[3] * b[3], a[4] * b[0] + a[5] * b[2] + b[4], a[4] * b[1] + a[5] * b[3] + b[5]]


def _at(m, x, y):
    return m[0] * x + m[2] * y + m[4], m[1] * x + m[3] * y + m[5]


def interpret(stream: bytes):
    """The painted paths (op, fill, stroke, on-curve points), texts (string, origin) and XObject uses
    (origin) of a matplotlib content stream, in page coordinates of the form."""
    stack, ctm, fill, stroke, args, path, cur = [], [1, 0, 0, 1, 0, 0], None, None, [], [], []
    paths, texts, uses, tm = [], [], [], [1, 0, 0, 1, 0, 0]
    for t in TOKEN.finditer(stream):
        g = t.group(0)
        if g[:1] in b"([/" or re.fullmatch(rb"-?[\d.]+", g):
            args.append(g)
            continue
        op = g.decode()
        num = [float(a) for a in args if re.fullmatch(rb"-?[\d.]+", a)]
        if op == "q":
            stack.append((ctm, fill, stroke))
        elif op == "Q":
            ctm, fill, stroke = stack.pop()
        elif op == "cm":
            ctm = _mul(num[-6:], ctm)
        elif op in ("rg", "RG", "g", "G"):
            c = tuple(num[-3:]) if op.lower() == "rg" else (num[-1],) * 3
            fill, stroke = (c, stroke) if op in ("rg", "g") else (fill, c)
        elif op == "m":
            cur = [_at(ctm, *num[-2:])]
            path.append(cur)
        elif op == "l":
            cur.append(_at(ctm, *num[-2:]))
        elif op == "c":
            cur.append(_at(ctm, *num[-2:]))
        elif op == "re":
            x, y, w, h = num[-4:]
            path.append([_at(ctm, x, y), _at(ctm, x + w, y), _at(ctm, x + w, y + h), _at(ctm, x, y + h)])
        elif op in ("f", "B", "S", "b", "f*", "B*", "n"):
            if op != "n":
                paths.append({"op": op, "fill": fill, "stroke": stroke, "pts": path})
            path = []
        elif op == "BT":
            tm = [1, 0, 0, 1, 0, 0]
        elif op == "Tm":
            tm = num[-6:]
        elif op == "Td":
            tm = _mul([1, 0, 0, 1, *num[-2:]], tm)
        elif op == "Tj":
            texts.append({"text": args[-1][1:-1].decode("latin1"), "at": _at(_mul(tm, ctm), 0, 0)})
        elif op == "Do":
            uses.append({"at": _at(ctm, 0, 0), "fill": fill})
        args = []
    return paths, texts, uses


def _key(c):
    return tuple(round(v, 4) for v in c)


def _isnum(s: str) -> bool:
    return s.replace(".", "", 1).isdigit()


def axis(paths, texts, left: float, right: float):
    """(x ticks, y ticks) of the axes spanning x in [left, right]: (position, label value) pairs, each tick mark
    (a 3-pt stroke) matched to its label."""
    marks = [p["pts"][0] for p in paths if p["op"] == "B" and len(p["pts"]) == 1 and len(p["pts"][0]) == 2]
    xm = [a for a, b in marks if a[0] == b[0] and abs(abs(a[1] - b[1]) - 3) < 1e-3 and left - 1 <= a[0] <= right + 1]
    ym = [a for a, b in marks if a[1] == b[1] and abs(abs(a[0] - b[0]) - 3) < 1e-3 and abs(max(a[0], b[0]) - left) < 5]
    xs, ys = sorted({x for x, _ in xm}), sorted({y for _, y in ym})
    base = min(y for _, y in xm) if xm else ys[0]  # a bar chart's categories have no tick marks
    xt, yt = set(), set()
    for t in texts:
        (tx, ty), s = t["at"], t["text"]
        if not _isnum(s):
            continue
        if xs and left - 15 <= tx <= right + 5 and base - 20 < ty < base - 5:  # below the axis, centred on its tick
            c = tx + 3.18 * len(s)
            x = min(xs, key=lambda v: abs(v - c))
            assert abs(x - c) < 4, (s, c)
            xt.add((x, float(s)))
        elif left - 40 <= tx < left - 3 and ty > base - 5:  # left of the axis, baseline a little below its tick
            y = min(ys, key=lambda v: abs(v - ty - 3))
            yt.add((y, float(s), y - ty))
    offsets = [d for _, _, d in yt]
    assert yt and max(offsets) - min(offsets) < 0.01 and 2 < offsets[0] < 4, yt  # every label as far from its tick
    return sorted(xt), sorted((y, v) for y, v, _ in yt)


def scale(ticks, log: bool):
    """Position -> value through the first and last ticks; every tick between must agree (1e-3 pt)."""
    f = math.log10 if log else (lambda v: v)
    (p0, v0), (p1, v1) = ticks[0], ticks[-1]
    b = (p1 - p0) / (f(v1) - f(v0))
    a = p0 - b * f(v0)
    assert all(abs(a + b * f(v) - p) < 1e-3 for p, v in ticks), ticks
    return (lambda p: 10 ** ((p - a) / b)) if log else (lambda p: (p - a) / b)


def frames(paths) -> list[float]:
    """Left edges of the axes: the white rectangles behind them (the figure's own background starts at 0)."""
    return sorted(min(q[0] for q in p["pts"][0]) for p in paths if p["op"] == "f" and p["fill"] == (1.0, 1.0, 1.0)
                  and len(p["pts"][0]) == 4 and min(q[0] for q in p["pts"][0]) > 0)


def figures_1_2(stream: bytes):
    """Figure 1 (bars: top-1) and Figure 2 (blobs: G-Ops, top-1, parameters) -> {network: values}, colours."""
    paths, texts, _ = interpret(stream)
    bars = sorted((p for p in paths if p["op"] == "f" and len(p["pts"][0]) == 4 and min(q[1] for q in p["pts"][0]) < 0),
                  key=lambda p: p["pts"][0][0][0])
    names = [t["text"] for t in texts[:len(bars)]]  # the bar labels come first, in bar order
    left, right_left = frames(paths)
    _, yt = axis(paths, texts, left, left + 406)
    top1 = scale(yt, False)
    colours = {_key(b["fill"]): n for n, b in zip(names, bars)}
    out = {n: {"fig1_top1": top1(max(q[1] for q in b["pts"][0]))} for n, b in zip(names, bars)}
    blobs = [p for p in paths if p["op"] == "B" and len(p["pts"][0]) == 9]  # circles: 8 Bezier arcs
    xt, yt2 = axis(paths, texts, right_left, right_left + 406)
    gops, top1b = scale(xt, False), scale(yt2, False)

    def circle(p):
        xs, ys = [q[0] for q in p["pts"][0]], [q[1] for q in p["pts"][0]]
        return (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2, (max(xs) - min(xs)) / 2

    legend = [circle(p) for p in blobs if p["fill"] == (0.9, 0.9, 0.9)]
    labels = [float(t["text"][:-1]) for t in texts if re.fullmatch(r"\d+M", t["text"])]
    k = [r * r / v for (_, _, r), v in zip(legend, labels)]  # radius^2 per M-params, one per legend blob
    assert len(k) == 6 and max(k) - min(k) < 1e-4, k
    for p in blobs:
        if p["fill"] != (0.9, 0.9, 0.9):
            x, y, r = circle(p)
            out[colours[_key(p["fill"])]].update(gops=gops(x), top1=top1b(y), params_millions=r * r / k[0])
    return out, colours


def curves(stream: bytes, colours: dict | None, log_y: bool, panel: int = 0):
    """{network: [(batch, value)]} of the left panel of a batch-size figure (log2 abscissa), curves told
    apart by colour (``colours``, or else the panel's legend)."""
    paths, texts, _ = interpret(stream)
    left = frames(paths)[panel]
    xt, yt = axis(paths, texts, left, left + 406)
    fx, fy = scale(xt, True), scale(yt, log_y)
    if colours is None:  # legend: a 14-pt line with its label just right of it
        colours = {}
        for p in paths:
            (a, *rest) = p["pts"][0]
            if p["op"] == "S" and len(rest) == 1 and a[1] == rest[0][1] and abs(rest[0][0] - a[0] - 14) < 1e-3:
                lab = [t["text"] for t in texts
                       if 0 < t["at"][0] - rest[0][0] < 15 and abs(t["at"][1] + 3.5 - a[1]) < 1.5]
                if len(lab) == 1:
                    colours[_key(p["stroke"])] = lab[0]
    out = {}
    for p in paths:
        pts = p["pts"][0] if p["pts"] else []
        if p["op"] == "S" and p["stroke"] and _key(p["stroke"]) in colours and len(pts) >= 3 \
                and all(left - 1 <= q[0] <= left + 407 for q in pts):
            name = colours[_key(p["stroke"])]
            assert name not in out, name
            out[name] = [(round(fx(x)), fy(y)) for x, y in pts]
    return out


def decode(pdf: bytes) -> dict:
    """Everything decoded, keyed by the paper's network names."""
    figs = figure_streams(pdf)
    nets, colours = figures_1_2(figs["acc_vs_net_vs_ops.pdf"])
    for n, pts in curves(figs["time_power_vs_batch.pdf"], colours, log_y=True).items():
        nets[n]["time_ms"] = pts
    for n, pts in curves(figs["mem.pdf"], None, log_y=True).items():
        nets[n]["memory_mb"] = pts
    paths, texts, _ = interpret(figs["acc_dens_vs_net.pdf"])  # Figure 10, a cross-check: top-1 / M-params
    left = frames(paths)[0]
    _, yt = axis(paths, texts, left, left + 558)
    dens = scale(yt, False)
    for p in paths:
        if p["op"] == "f" and p["fill"] and _key(p["fill"]) in colours and len(p["pts"][0]) == 4:
            nets[colours[_key(p["fill"])]]["fig10_density"] = dens(max(q[1] for q in p["pts"][0]))
    return nets


def check(nets: dict, data: dict) -> list[str]:
    """Differences between the data file and the decoded values (empty: every number agrees)."""
    bad = []
    for row in data["networks"]:
        n = row["paper_name"]
        if n not in nets:
            continue
        d = nets[n]
        assert abs(d["fig1_top1"] - d["top1"]) < 1e-4, n  # Figure 1's bar and Figure 2's blob agree
        assert abs(d["fig10_density"] - d["top1"] / d["params_millions"]) < 1e-4, n  # Figure 10 = top-1 / params
        for field in ("top1", "gops", "params_millions"):
            if row[field]["value"] is None or abs(row[field]["value"] - d[field]) > 1e-4:
                bad.append(f"{n} {field}: file {row[field]['value']}, figure {d[field]:.6f}")
        for field, got in (("time_ms_per_image", d["time_ms"]), ("memory_mb", d.get("memory_mb", []))):
            want = list(zip(row[field]["batch_sizes"] or [], row[field]["values"] or []))
            if len(want) != len(got) or any(b != c or abs(v - w) > 1e-4 for (b, v), (c, w) in zip(want, got)):
                bad.append(f"{n} {field}: file {want}, figure {[(b, round(v, 4)) for b, v in got]}")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pdf", type=Path, help="arXiv:1605.07678v4 as a PDF file")
    ap.add_argument("--check", action="store_true", help=f"compare {DATA.name} with the figures")
    args = ap.parse_args()
    pdf = args.pdf.read_bytes()
    if hashlib.sha256(pdf).hexdigest() != SHA256:
        print(f"note: {args.pdf} is not the copy the data were decoded from (sha256 {SHA256[:12]}...)", file=sys.stderr)
    nets = decode(pdf)
    if not args.check:
        print(json.dumps(nets, indent=1))
        return 0
    bad = check(nets, json.loads(DATA.read_text()))
    print("\n".join(bad) or f"{DATA.name}: every number agrees with the figures")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
