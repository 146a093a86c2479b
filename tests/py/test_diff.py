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
