"""SLERP against a numpy reference written from mergekit's definition."""
import numpy as np
import pytest

import st
from conftest import ladle


def slerp_coeffs(t, a, b):
    """mergekit's slerp(): normalise (unless the norm is <= 1e-8), lerp when
    |dot| > 0.9995, else the sin weights; applied to the raw tensors."""
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    na, nb = np.linalg.norm(a64), np.linalg.norm(b64)
    dot = np.dot(a64, b64) / ((na if na > 1e-8 else 1.0) * (nb if nb > 1e-8 else 1.0))
    if abs(dot) > 0.9995:
        return 1 - t, t
    th = np.arccos(dot)
    return np.sin(th - t * th) / np.sin(th), np.sin(t * th) / np.sin(th)


def check_slerp(out, a_ref, b_ref, t, dtype):
    got, _ = st.load(out)
    A, _ = st.load(a_ref)
    B, _ = st.load(b_ref)
    for name, (d, arr) in A.items():
        if d not in ("BF16", "F16", "F32"):
            continue
        a, b = st.to_f32(d, arr), st.to_f32(B[name][0], B[name][1])
        s0, s1 = slerp_coeffs(t, a, b)
        want = st.round_to(dtype, np.float32(s0) * a + np.float32(s1) * b)
        g = got[name][1]
        u = f"u{g.itemsize}"
        assert np.array_equal(g.view(u), want.view(u)), name


@pytest.mark.parametrize("dtype", ["BF16", "F16", "F32"])
@pytest.mark.parametrize("t", [0.3, 0.75])
def test_slerp_matches_reference(tmp_path, rng, dtype, t):
    base = st.llama(rng, dtype)
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    st.write(a, st.llama(rng, dtype, base=base, noise=0.05))
    st.write(b, st.llama(rng, dtype, base=base, noise=0.05))
    out = tmp_path / "o.safetensors"
    ladle("slerp", a, b, "--t", t, "-o", out, "-q")
    check_slerp(out, a, b, t, dtype)


def test_slerp_endpoints(tmp_path, rng):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    st.write(a, st.llama(rng, "BF16"))
    st.write(b, st.llama(rng, "BF16"))
    for t, src in ((0, a), (1, b)):
        out = tmp_path / f"t{t}.safetensors"
        ladle("slerp", a, b, "--t", t, "-o", out, "-q")
        got, want = st.load(out)[0], st.load(src)[0]
        for k in want:
            assert np.array_equal(got[k][1], want[k][1]), (t, k)


def test_slerp_parallel_antiparallel_and_zero(tmp_path, rng):
    x = rng.standard_normal(4096).astype(np.float32)
    ortho = rng.standard_normal(4096).astype(np.float32)
    tensors_a = [("par", "F32", x), ("anti", "F32", x), ("zero", "F32", np.zeros(64, np.float32)),
                 ("ortho", "F32", x)]
    tensors_b = [("par", "F32", 2 * x), ("anti", "F32", -x), ("zero", "F32", np.ones(64, np.float32)),
                 ("ortho", "F32", ortho)]
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    st.write(a, tensors_a)
    st.write(b, tensors_b)
    out = tmp_path / "o.safetensors"
    ladle("slerp", a, b, "--t", "0.4", "-o", out, "-q")
    got = st.read(out)[0]
    # colinear both ways: plain lerp
    assert np.array_equal(got["par"][1], np.float32(0.6) * x + np.float32(0.4) * (2 * x))
    assert np.array_equal(got["anti"][1], np.float32(0.6) * x + np.float32(0.4) * (-x))
    check_slerp(out, a, b, 0.4, "F32")


def test_slerp_independent_of_threads(tmp_path, rng):
    big = [("w", "F32", rng.standard_normal((1024, 700)).astype(np.float32))]
    big_b = [("w", "F32", rng.standard_normal((1024, 700)).astype(np.float32))]
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    st.write(a, big)
    st.write(b, big_b)
    outs = []
    for j in (1, 2, 5):
        out = tmp_path / f"j{j}.safetensors"
        ladle("slerp", a, b, "--t", "0.5", "-j", j, "-o", out, "-q")
        outs.append(st.read(out)[0]["w"][1].tobytes())
    assert outs[0] == outs[1] == outs[2]
    check_slerp(tmp_path / "j2.safetensors", a, b, 0.5, "F32")


def test_slerp_t_range():
    r = ladle("slerp", "a", "b", "--t", "1.5", "-o", "x", check=False)
    assert r.code == 2 and "outside [0, 1]" in r.err
