"""--plot on sweep, soup --greedy and diff: the SVG parses, holds what the
search found (one marker per point, the best and the rejected marked, the
scores in the tooltips), and draws: rendered by rsvg-convert (Debian's
librsvg2-bin) to a PNG that this file decodes and checks for the series'
colour and the best marker's."""
import json
import shutil
import subprocess
import struct
import xml.etree.ElementTree as ET
import zlib

import numpy as np
import pytest

import st
from conftest import ladle
from test_search import evaluator, ingredients

NS = {"s": "http://www.w3.org/2000/svg"}
BLUE, GOLD = (0x1f, 0x77, 0xb4), (0xff, 0xbf, 0x00)


def png_pixels(data):
    """RGBA rows of an 8-bit, non-interlaced PNG (what rsvg-convert writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6)
            bpp = 4 if color == 6 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride, out, prev = w * bpp, [], bytearray(w * bpp)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out.append(bytes(line))
        prev = line
    return np.frombuffer(b"".join(out), np.uint8).reshape(h, w, bpp)[:, :, :3]


def rendered(svg, tmp_path):
    """The chart as rsvg-convert draws it (the test is skipped without it,
    which tools/install-deps.sh installs)."""
    if not shutil.which("rsvg-convert"):
        pytest.skip("rsvg-convert (librsvg2-bin) is not installed")
    png = tmp_path / "chart.png"
    subprocess.run(["rsvg-convert", str(svg), "-o", str(png)], check=True)
    px = png_pixels(png.read_bytes())
    assert px.shape[0] > 200 and px.shape[1] > 600
    return px


def has_color(px, rgb, tol=8):
    return bool(np.any(np.all(np.abs(px.astype(int) - rgb) <= tol, axis=2)))


def circles(root, cls):
    return [c for c in root.iter("{%s}circle" % NS["s"]) if c.get("class") == cls]


def test_sweep_one_axis(tmp_path, rng):
    target, models = ingredients(tmp_path, rng, "F32", n=2)
    svg = tmp_path / "sweep.svg"
    r = ladle("sweep", "--grid", "alpha=0:1:6", "--eval", evaluator(target), "--json", "-q",
              "--plot", svg, "--", "lerp", models[0], models[1], "--alpha", "{alpha}")
    got = json.loads(r.out)
    root = ET.parse(svg).getroot()
    pts, best = circles(root, "point"), circles(root, "best")
    assert len(pts) + len(best) == 6 and len(best) == 1
    scores = [p["score"] for p in got["points"]]
    b = int(np.argmax(scores))
    tip = best[0].find("s:title", NS).text
    assert tip == f"{got['points'][b]['params']['alpha']:g}: {scores[b]:.10g}"
    # the best marker is the highest point (SVG y grows downwards)
    assert float(best[0].get("cy")) == min(float(c.get("cy")) for c in pts + best)
    assert "alpha" in "".join(t.text or "" for t in root.iter("{%s}text" % NS["s"]))
    px = rendered(svg, tmp_path)
    assert has_color(px, BLUE) and has_color(px, GOLD)


def test_sweep_heat_map_and_three_axes(tmp_path, rng):
    target, models = ingredients(tmp_path, rng, "F32", n=3)
    base, m1, m2 = models
    svg = tmp_path / "heat.svg"
    r = ladle("sweep", "-g", "a=0.2:1:3", "-g", "b=0.5,-0.25", "--eval", evaluator(target),
              "--json", "-q", "--plot", svg, "--", "task", "--base", base, "--add",
              f"{{a}}:{m1}", "--add", f"{{b}}:{m2}")
    got = json.loads(r.out)
    root = ET.parse(svg).getroot()
    cells = [c for c in root.iter("{%s}rect" % NS["s"]) if c.get("class") == "cell"]
    assert len(cells) == 6
    outlined = [c for c in cells if c.get("stroke") == "red"]
    assert len(outlined) == 1
    bp = got["best"]["params"]
    assert outlined[0].find("s:title", NS).text.startswith(f"a={bp['a']:g}, b={bp['b']:g}:")
    px = rendered(svg, tmp_path)
    assert has_color(px, (0xfd, 0xe7, 0x25), tol=30)  # the top of viridis: the best cell
    # three axes: a panel per axis, the best score at each value
    svg3 = tmp_path / "three.svg"
    r = ladle("sweep", "-g", "a=0.2,1", "-g", "b=0.5,-0.25", "-g", "c=0,0.1", "--eval",
              evaluator(target), "--json", "-q", "--plot", svg3, "--", "task", "--base", base,
              "--add", f"{{a}}:{m1}", "--add", f"{{b}}:{m2}", "--lambda", "1", "--set",
              "norm:lambda={c}")
    got = json.loads(r.out)
    root = ET.parse(svg3).getroot()
    assert len([g for g in root.iter("{%s}g" % NS["s"]) if g.get("class") == "panel"]) == 3
    assert len(circles(root, "best")) == 3
    best_a = max(p["score"] for p in got["points"] if p["params"]["a"] == 0.2)
    tips = [c.find("s:title", NS).text for c in circles(root, "point") + circles(root, "best")]
    assert f"0.2: {best_a:.10g}" in tips
    rendered(svg3, tmp_path)


def test_greedy_plot(tmp_path, rng):
    target, models = ingredients(tmp_path, rng)
    svg = tmp_path / "greedy.svg"
    r = ladle("soup", "--greedy", "--eval", evaluator(target), *models, "-o",
              tmp_path / "soup.safetensors", "--json", "-q", "--plot", svg)
    got = json.loads(r.out)
    root = ET.parse(svg).getroot()
    rejected = sum(not x["accepted"] for x in got["ingredients"])
    assert 0 < rejected < len(models)
    assert len(circles(root, "rejected")) == rejected
    assert len(circles(root, "best")) == 1
    tip = circles(root, "best")[0].find("s:title", NS).text
    last = [x for x in got["ingredients"] if x["accepted"]][-1]
    assert tip.endswith(f": {last['soup_score']:.10g}")
    px = rendered(svg, tmp_path)
    assert has_color(px, BLUE) and has_color(px, (0xd6, 0x27, 0x28))


def test_diff_plot(tmp_path, rng):
    base = st.llama(rng, "F32", layers=2, hidden=16, inter=24, vocab=32)
    a = st.llama(rng, "F32", layers=2, hidden=16, inter=24, vocab=32, base=base, noise=0.03)
    b = st.llama(rng, "F32", layers=2, hidden=16, inter=24, vocab=32, base=base, noise=0.03)
    for n, m in (("base", base), ("a", a), ("b", b)):
        st.write(tmp_path / f"{n}.safetensors", m)
    svg = tmp_path / "diff.svg"
    r = ladle("diff", tmp_path / "a.safetensors", tmp_path / "b.safetensors", "--base",
              tmp_path / "base.safetensors", "--subspace", "--json", "--plot", svg)
    rows = json.loads(r.out)["tensors"]
    root = ET.parse(svg).getroot()
    panels = [g for g in root.iter("{%s}g" % NS["s"]) if g.get("class") == "panel"]
    assert len(panels) == 3
    tips = [c.find("s:title", NS).text for c in panels[0].iter("{%s}circle" % NS["s"])]
    assert tips == [f"{t['name']}: {t['cosine']:.10g}" for t in rows]
    nsub = sum("subspace" in t for t in rows)
    assert len(list(panels[2].iter("{%s}circle" % NS["s"]))) == 2 * nsub
    rendered(svg, tmp_path)


def test_plot_checked_before_the_search(tmp_path, rng):
    target, models = ingredients(tmp_path, rng, "F32", n=2)
    record = tmp_path / "record.jsonl"
    r = ladle("sweep", "--grid", "alpha=0:1:3", "--eval", evaluator(target, "--record", record),
              "--plot", tmp_path / "no" / "such" / "dir" / "x.svg", "--", "lerp", models[0],
              models[1], "--alpha", "{alpha}", check=False)
    assert r.code == 2 and "--plot" in r.err and not record.exists()
    r = ladle("diff", models[0], models[1], "--plot", tmp_path / "no" / "x.svg", check=False)
    assert r.code == 2 and "--plot" in r.err
