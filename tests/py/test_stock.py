"""Model Stock against a numpy reference of mergekit's ModelStockMergeTask."""
import numpy as np
import pytest

import st
from conftest import ladle

F32 = np.float32


def stock_ref(w0, ws):
    offs = [(w - w0).astype(F32).ravel().astype(np.float64) for w in ws]
    cos = []
    for i in range(len(offs)):
        for j in range(i + 1, len(offs)):
            norm = np.sqrt(np.dot(offs[i], offs[i])) * np.sqrt(np.dot(offs[j], offs[j]))
            cos.append(np.clip(np.dot(offs[i], offs[j]) / max(norm, 1e-6), -1, 1))
    c, n = np.mean(cos), len(ws)
    t = n * c / (1 + (n - 1) * c)
    acc = ws[0].copy()
    for w in ws[1:]:
        acc = acc + w
    return F32(t) * (acc / F32(n)) + F32(1 - t) * w0


def check(out, base, fts, dtype):
    got, _ = st.load(out)
    B, _ = st.load(base)
    X = [st.load(f)[0] for f in fts]
    for name, (d, arr) in B.items():
        if d not in ("BF16", "F16", "F32"):
            continue
        want = st.round_to(dtype, stock_ref(st.to_f32(d, arr),
                                            [st.to_f32(x[name][0], x[name][1]) for x in X]))
        g = got[name][1]
        u = f"u{g.itemsize}"
        assert np.array_equal(g.view(u), want.view(u)), name


@pytest.mark.parametrize("dtype", ["BF16", "F32"])
@pytest.mark.parametrize("n", [2, 3])
def test_stock(tmp_path, rng, dtype, n):
    base = st.llama(rng, dtype)
    bp = tmp_path / "base.safetensors"
    st.write(bp, base)
    fts = []
    for i in range(n):
        p = tmp_path / f"ft{i}.safetensors"
        st.write(p, st.llama(rng, dtype, base=base, noise=0.03))
        fts.append(p)
    out = tmp_path / "o.safetensors"
    ladle("stock", "--base", bp, *fts, "-o", out, "-q")
    check(out, bp, fts, dtype)


def test_stock_degenerate_angles(tmp_path, rng):
    w0 = rng.standard_normal(5000).astype(F32)
    o = rng.standard_normal(5000).astype(F32)
    st.write(tmp_path / "b.safetensors", [("same", "F32", w0), ("zero", "F32", w0)])
    for i in range(2):  # identical displacements: cos 1, t 1; no displacement: t 0
        st.write(tmp_path / f"m{i}.safetensors", [("same", "F32", w0 + o), ("zero", "F32", w0)])
    out = tmp_path / "o.safetensors"
    ladle("stock", "--base", tmp_path / "b.safetensors", tmp_path / "m0.safetensors",
          tmp_path / "m1.safetensors", "-o", out, "-q")
    got = st.read(out)[0]
    assert np.array_equal(got["zero"][1], w0)
    check(out, tmp_path / "b.safetensors", [tmp_path / "m0.safetensors", tmp_path / "m1.safetensors"], "F32")


def test_stock_needs_two_fine_tunes(tmp_path):
    r = ladle("stock", "--base", "b", "m1", "-o", tmp_path / "o", check=False)
    assert r.code == 2 and "2 to 24" in r.err
