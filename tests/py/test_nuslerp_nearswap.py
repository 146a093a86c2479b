"""nearswap and nuslerp against references written from mergekit's
definitions (merge_methods/nearswap.py: nearswap(); nuslerp.py: nuslerp()
and NuSlerpTask), in numpy: nearswap in fp32 step for step (bit-exact),
nuslerp in fp64 (ladle sums norms and dots in fp64, then combines in fp32:
within a few fp32 ulps)."""
import numpy as np
import pytest

import st
from conftest import ladle

F32 = np.float32


def nearswap_ref(t, v0, v1):
    with np.errstate(divide="ignore", invalid="ignore"):
        w = (F32(t) / np.abs(v0 - v1)).astype(F32)
    w = np.nan_to_num(w, nan=1.0, posinf=1.0, neginf=1.0).astype(F32)
    w = np.clip(w, F32(0), F32(1))
    return (w * v1 + (F32(1) - w) * v0).astype(F32)


def nuslerp_ref(t, v0, v1, rows=False, cols=False):
    """mergekit's nuslerp(t, v0, v1, flatten=not rows, dim=0 if cols), in
    fp64: cols transposes dims 0 and -1 first, so the vectors run along the
    first dimension."""
    shape = v0.shape
    a, b = v0.astype(np.float64), v1.astype(np.float64)
    if cols:
        at, bt = np.swapaxes(a, 0, -1), np.swapaxes(b, 0, -1)
        res = nuslerp_ref(t, at, bt, rows=True)
        return np.swapaxes(res, 0, -1)
    a = a.reshape(-1, shape[-1] if shape else 1) if rows else a.reshape(1, -1)
    b = b.reshape(a.shape)
    na = np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-7)
    nb = np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-7)
    cos = np.clip(np.sum((a / na) * (b / nb), axis=-1, keepdims=True), -1, 1)
    theta = np.arccos(cos)
    s = np.sin(theta)
    with np.errstate(divide="ignore", invalid="ignore"):
        res = (np.sin((1 - t) * theta) * a + np.sin(t * theta) * b) / s
    colinear = np.abs(s) < 1e-8
    res = np.where(colinear, (1 - t) * a + t * b, res)
    return res.reshape(shape)


def family(tmp_path, rng, near=False):
    base = st.llama(rng, "F32", layers=2, hidden=16, inter=24, vocab=32)
    a = st.llama(rng, "F32", layers=2, hidden=16, inter=24, vocab=32, base=base)
    b = st.llama(rng, "F32", layers=2, hidden=16, inter=24, vocab=32, base=base)
    if near:  # some elements equal to the base's, some within the threshold
        b = [(n, d, np.where(rng.random(x.shape) < 0.2, y, x).astype(F32))
             for (n, d, x), (_, _, y) in zip(b, base)]
    for name, t in (("base", base), ("a", a), ("b", b)):
        st.write(tmp_path / f"{name}.safetensors", t)
    return ({n: x for n, d, x in m if d == "F32"} for m in (base, a, b))


def test_nearswap_bit_exact(tmp_path, rng):
    base, _, b = family(tmp_path, rng, near=True)
    ladle("nearswap", tmp_path / "base.safetensors", tmp_path / "b.safetensors", "--t", "0.01",
          "-o", tmp_path / "o.safetensors", "-q")
    got, _ = st.load(str(tmp_path / "o.safetensors"))
    for n in base:
        want = nearswap_ref(0.01, base[n], b[n])
        assert got[n][1].tobytes() == want.tobytes(), n
    # the recipe form, and t <= 0 refused
    (tmp_path / "r.yml").write_text(
        f"merge_method: nearswap\nbase_model: {tmp_path / 'base.safetensors'}\n"
        f"parameters: {{t: 0.01}}\nmodels:\n  - model: {tmp_path / 'b.safetensors'}\n")
    ladle("merge", tmp_path / "r.yml", "-o", tmp_path / "r.safetensors", "-q")
    r, _ = st.load(str(tmp_path / "r.safetensors"))
    assert all(r[n][1].tobytes() == got[n][1].tobytes() for n in base)
    r = ladle("nearswap", tmp_path / "base.safetensors", tmp_path / "b.safetensors", "--t", "0",
              "-o", tmp_path / "x.safetensors", check=False)
    assert r.code == 1 and "must be above 0" in r.err


def test_nearswap_special_values(tmp_path):
    """Equal values (signed zeros too), NaN and Inf inputs, huge and tiny
    gaps: the weight's NaN/Inf -> 1 and clamp, bit for bit."""
    inf, nan = F32(np.inf), F32(np.nan)
    v0 = np.array([1, 0, -0.0, 0, 2, nan, 1, inf, -inf, 1e-30, 3e38, -3e38, 1, 5],
                  dtype=F32)
    v1 = np.array([1, -0.0, 0, 0, nan, 2, inf, 1, -inf, -1e-30, -3e38, 3e38, 1.001, 5.5],
                  dtype=F32)
    st.write(tmp_path / "a.safetensors", [("w", "F32", v0)])
    st.write(tmp_path / "b.safetensors", [("w", "F32", v1)])
    for t in ("0.01", "1e-40", "1e30"):
        ladle("nearswap", tmp_path / "a.safetensors", tmp_path / "b.safetensors", "--t", t,
              "-o", tmp_path / "o.safetensors", "-q", "--force")
        got = st.load(str(tmp_path / "o.safetensors"))[0]["w"][1]
        with np.errstate(invalid="ignore", over="ignore"):
            want = nearswap_ref(float(t), v0, v1)
        assert got.tobytes() == want.tobytes(), (t, got, want)


def close(got, want, name, *inputs):
    """Within a few fp32 ulps of the inputs' magnitude: ladle combines in
    fp32 (c0 * a + c1 * b, each step rounded), which cancellation can make
    large relative to the result itself."""
    g = got.astype(np.float64)
    scale = np.max([np.abs(x) for x in inputs], axis=0).astype(F32)
    assert np.all(np.abs(g - want) <= 4 * np.spacing(scale)), name


@pytest.mark.parametrize("form", ["flat", "rows", "cols"])
@pytest.mark.parametrize("based", [False, True])
def test_nuslerp(tmp_path, rng, form, based):
    base, a, b = family(tmp_path, rng)
    rows, cols = form == "rows", form == "cols"
    args = ["nuslerp", tmp_path / "a.safetensors", tmp_path / "b.safetensors", "--t", "0.3"]
    if based:
        args += ["--base", tmp_path / "base.safetensors"]
    if rows:
        args += ["--per-row"]
    if cols:
        args += ["--per-column"]
    ladle(*args, "-o", tmp_path / "o.safetensors", "-q", "-j", "2")
    got, _ = st.load(str(tmp_path / "o.safetensors"))
    for n in base:
        if based:
            want = base[n] + nuslerp_ref(0.3, a[n] - base[n].astype(np.float64),
                                         b[n] - base[n].astype(np.float64), rows, cols)
        else:
            want = nuslerp_ref(0.3, a[n], b[n], rows, cols)
        close(got[n][1], want, n, a[n], b[n], base[n])
    # the recipe: t = w_b / (w_a + w_b), the base listed anywhere
    flat = {"flat": "", "rows": "  nuslerp_flatten: false\n",
            "cols": "  nuslerp_flatten: false\n  nuslerp_row_wise: true\n"}[form]
    base_line = f"base_model: {tmp_path / 'base.safetensors'}\n" if based else ""
    (tmp_path / "r.yml").write_text(
        f"merge_method: nuslerp\n{base_line}parameters:\n  weight: 1\n{flat}models:\n"
        f"  - model: {tmp_path / 'a.safetensors'}\n    parameters: {{weight: 0.7}}\n"
        f"  - model: {tmp_path / 'b.safetensors'}\n    parameters: {{weight: 0.3}}\n")
    ladle("merge", tmp_path / "r.yml", "-o", tmp_path / "r.safetensors", "-q")
    r, _ = st.load(str(tmp_path / "r.safetensors"))
    assert all(r[n][1].tobytes() == got[n][1].tobytes() for n in base)


def test_nuslerp_colinear_and_refusals(tmp_path, rng):
    base, a, _ = family(tmp_path, rng)
    st.write(tmp_path / "a2.safetensors", [(n, "F32", (x * F32(2)).astype(F32))
                                           for n, x in a.items()] +
             [("model.rotary.position_ids", "I64", np.arange(16, dtype=np.int64))])
    ladle("nuslerp", tmp_path / "a.safetensors", tmp_path / "a2.safetensors", "--t", "0.25",
          "-o", tmp_path / "o.safetensors", "-q")
    got, _ = st.load(str(tmp_path / "o.safetensors"))
    for n, x in a.items():  # colinear: (1 - t) a + t 2a
        want = (F32(0.75) * x + F32(0.25) * (x * F32(2)).astype(F32)).astype(F32)
        close(got[n][1], want.astype(np.float64), n, x, 2 * x)
    r = ladle("nuslerp", tmp_path / "a.safetensors", tmp_path / "a2.safetensors", "--t", "0.5",
              "--per-row", "--per-column", "-o", tmp_path / "x.safetensors", check=False)
    assert r.code == 2 and "not both" in r.err


def test_nuslerp_columns_across_work_items(tmp_path, rng):
    """Per-column sums over many work items (a tall matrix): folded in item
    order, so -j 1 and -j 2 give the same bytes, equal to the reference."""
    a = rng.standard_normal((3000, 96)).astype(F32)
    b = (a * F32(0.5) + rng.standard_normal((3000, 96)).astype(F32)).astype(F32)
    b[:, 7] = a[:, 7] * F32(3)  # a colinear column
    st.write(tmp_path / "a.safetensors", [("w", "F32", a), ("v", "F32", a[:, 0].copy())])
    st.write(tmp_path / "b.safetensors", [("w", "F32", b), ("v", "F32", b[:, 0].copy())])
    outs = []
    for j in ("1", "2"):
        ladle("nuslerp", tmp_path / "a.safetensors", tmp_path / "b.safetensors", "--t", "0.4",
              "--per-column", "-o", tmp_path / f"o{j}.safetensors", "-q", "-j", j)
        got, _ = st.load(str(tmp_path / f"o{j}.safetensors"))
        outs.append(got)
    for n, (x, y) in (("w", (a, b)), ("v", (a[:, 0], b[:, 0]))):
        assert outs[0][n][1].tobytes() == outs[1][n][1].tobytes(), n
        close(outs[0][n][1], nuslerp_ref(0.4, x, y, cols=True), n, x, y)
