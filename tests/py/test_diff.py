"""ladle diff against numpy: norms, cosine, sign conflicts, norm ratio and
the recommendation each case calls for."""
import json

import numpy as np
import pytest

import st
from conftest import ladle

F32 = np.float32


def write(tmp_path, name, tensors):
    p = tmp_path / f"{name}.safetensors"
    st.write(p, [(k, "F32", v) for k, v in tensors.items()])
    return p


def reference(a, b, base):
    rows, tot = {}, np.zeros(5)
    for k in a:
        x = ((a[k] - base[k]).astype(F32) if base else a[k]).astype(np.float64).ravel()
        y = ((b[k] - base[k]).astype(F32) if base else b[k]).astype(np.float64).ravel()
        both = (x != 0) & (y != 0)
        conf = both & ((x > 0) != (y > 0))
        v = np.array([x @ x, y @ y, x @ y, both.sum(), conf.sum()])
        rows[k] = v
        tot += v
    return rows, tot


@pytest.mark.parametrize("case,advice", [
    ("independent", "prefer ties or dare"),
    ("scaled", "will dominate"),
    ("aligned", "plain soup"),
    ("mild", "little interference"),
])
def test_diff(tmp_path, rng, case, advice):
    shapes = {"layers.0.w": (300, 200), "layers.1.w": (300, 200), "norm": (200,)}
    base = {k: rng.standard_normal(s).astype(F32) for k, s in shapes.items()}
    tau = {k: rng.standard_normal(s).astype(F32) * F32(0.01) for k, s in shapes.items()}
    noise = {k: rng.standard_normal(s).astype(F32) * F32(0.01) for k, s in shapes.items()}
    a = {k: base[k] + tau[k] for k in shapes}
    b = {"independent": {k: base[k] + noise[k] for k in shapes},
         "scaled": {k: base[k] + F32(3) * tau[k] for k in shapes},
         "aligned": {k: base[k] + tau[k] + F32(0.1) * noise[k] for k in shapes},
         "mild": {k: base[k] + tau[k] + F32(0.9) * noise[k] for k in shapes}}[case]
    pa, pb, pbase = write(tmp_path, "a", a), write(tmp_path, "b", b), write(tmp_path, "base", base)
    r = json.loads(ladle("diff", pa, pb, "--base", pbase, "--json").out)
    rows, tot = reference(a, b, base)
    for row in r["tensors"]:
        aa, bb, ab, both, conf = rows[row["name"]]
        assert np.isclose(row["norm_a"], np.sqrt(aa), rtol=1e-9)
        assert np.isclose(row["norm_b"], np.sqrt(bb), rtol=1e-9)
        assert np.isclose(row["cosine"], ab / np.sqrt(aa * bb), rtol=1e-9, atol=1e-12)
        assert np.isclose(row["sign_conflict"], conf / both)
    aa, bb, ab, both, conf = tot
    o = r["overall"]
    assert np.isclose(o["cosine"], ab / np.sqrt(aa * bb), rtol=1e-9, atol=1e-12)
    assert np.isclose(o["sign_conflict"], conf / both)
    assert np.isclose(o["norm_ratio"], max(np.sqrt(aa), np.sqrt(bb)) / min(np.sqrt(aa), np.sqrt(bb)))
    assert advice in r["recommendation"], r["recommendation"]
    text = ladle("diff", pa, pb, "--base", pbase).out
    assert "recommendation: " in text and advice in text


def test_diff_without_base_and_errors(tmp_path, rng):
    a = {"w": rng.standard_normal(1000).astype(F32)}
    b = {"w": rng.standard_normal(1000).astype(F32)}
    pa, pb = write(tmp_path, "a", a), write(tmp_path, "b", b)
    r = json.loads(ladle("diff", pa, pb, "--json").out)
    rows, tot = reference(a, b, None)
    assert np.isclose(r["overall"]["cosine"], tot[2] / np.sqrt(tot[0] * tot[1]), rtol=1e-9)
    pc = write(tmp_path, "c", {"w": np.zeros(999, F32)})
    r = ladle("diff", pa, pc, check=False)
    assert r.code == 1 and "'w'" in r.err and "shapes" in r.err


def subspace_reference(ta, tb):
    """From the definitions, in float64: effective rank (Roy & Vetterli),
    the 90%-energy rank k, |U_a,k^T U_b,k|_F^2 / min(k_a, k_b) and V's."""
    out = {}
    svds = [np.linalg.svd(t.astype(np.float64), full_matrices=False) for t in (ta, tb)]
    ks = []
    for name, (U, S, Vt) in zip("ab", svds):
        p = S / S.sum()
        p = p[p > 0]
        out["erank_" + name] = float(np.exp(-(p * np.log(p)).sum()))
        e = np.cumsum(S ** 2)
        ks.append(int(np.searchsorted(e, 0.9 * e[-1]) + 1))
        out["k_" + name] = ks[-1]
    lo, hi = min(ks), max(ks)
    (Ua, _, Vta), (Ub, _, Vtb) = svds
    out["overlap_u"] = float(np.sum((Ua[:, :ks[0]].T @ Ub[:, :ks[1]]) ** 2) / lo)
    out["overlap_v"] = float(np.sum((Vta[:ks[0]] @ Vtb[:ks[1]].T) ** 2) / lo)
    out["chance_u"], out["chance_v"] = hi / ta.shape[0], hi / ta.shape[1]
    return out


def test_diff_subspace(tmp_path, rng):
    m, n = 40, 30
    base = {"layers.0.shared": rng.standard_normal((m, n)).astype(F32),
            "layers.0.apart": rng.standard_normal((m, n)).astype(F32),
            "layers.0.wide": rng.standard_normal((6, 50)).astype(F32),
            "norm": rng.standard_normal(n).astype(F32),
            "lm_head.weight": rng.standard_normal((m, n)).astype(F32)}
    Q, _ = np.linalg.qr(rng.standard_normal((m, m)))
    P, _ = np.linalg.qr(rng.standard_normal((n, n)))

    def lowrank(cols, rows, spectrum):
        return (Q[:, cols] * spectrum) @ P[:, rows].T * 0.01

    a, b = dict(base), dict(base)
    # the same top directions with other weights: overlap 1
    a["layers.0.shared"] = base["layers.0.shared"] + lowrank([0, 1, 2, 3], [0, 1, 2, 3],
                                                             [4, 3, 2, 1])
    b["layers.0.shared"] = base["layers.0.shared"] + lowrank([0, 1, 2, 3], [0, 1, 2, 3],
                                                             [3, 4, 2, 0.5])
    # disjoint directions: overlap 0
    a["layers.0.apart"] = base["layers.0.apart"] + lowrank([0, 1, 2], [0, 1, 2], [3, 2, 1])
    b["layers.0.apart"] = base["layers.0.apart"] + lowrank([5, 6, 7], [5, 6, 7], [3, 2, 1])
    for k in ("layers.0.wide", "norm", "lm_head.weight"):
        a[k] = base[k] + rng.standard_normal(base[k].shape).astype(F32) * 0.01
        b[k] = base[k] + rng.standard_normal(base[k].shape).astype(F32) * 0.01
    a = {k: v.astype(F32) for k, v in a.items()}
    b = {k: v.astype(F32) for k, v in b.items()}
    pa, pb, p0 = write(tmp_path, "a", a), write(tmp_path, "b", b), write(tmp_path, "base", base)
    r = ladle("diff", pa, pb, "--base", p0, "--subspace", "--json")
    got = {t["name"]: t for t in json.loads(r.out)["tensors"]}
    assert "subspace" not in got["norm"] and "subspace" not in got["lm_head.weight"]
    for k in ("layers.0.shared", "layers.0.apart", "layers.0.wide"):
        want = subspace_reference((a[k] - base[k]).astype(F32), (b[k] - base[k]).astype(F32))
        s = got[k]["subspace"]
        for f, v in want.items():
            if f.startswith("k_"):
                assert s[f] == v, (k, f, s[f], v)
            else:
                assert abs(s[f] - v) <= 2e-3 * max(1.0, abs(v)), (k, f, s[f], v)
    assert got["layers.0.shared"]["subspace"]["overlap_u"] > 0.99
    assert got["layers.0.apart"]["subspace"]["overlap_u"] < 1e-3
    assert abs(got["layers.0.shared"]["subspace"]["erank_a"] - 3.4) < 0.4
    text = ladle("diff", pa, pb, "--base", p0, "--subspace").out
    assert "erank_a" in text and "subspace overlap" in text
    r = ladle("diff", pa, pb, "--subspace", check=False)
    assert r.code == 2 and "give --base" in r.err
