"""multislerp and karcher against references written from mergekit's
definitions (merge_methods/multislerp.py: multislerp(); karcher.py:
karcher_merge_tensors()), step for step in fp64 numpy, tangent step and
iterations included. ladle sums its statistics in fp64 and combines the
inputs in fp32, so outputs agree within a few fp32 ulps of the terms."""
import re

import numpy as np
import pytest

import st
from conftest import ladle

F32 = np.float32


def multislerp_ref(tensors, weight, base=None, normalize=True, eps=1e-8):
    if len(tensors) == 1:
        return tensors[0].astype(np.float64)
    shape = tensors[0].shape
    t = np.stack([x.astype(np.float64) for x in tensors])
    if base is not None:
        t = t - base.astype(np.float64)
    flat = t.reshape(len(tensors), -1)
    w = np.array(weight, dtype=np.float64)
    if normalize:
        w = w / w.sum()
    norms = np.linalg.norm(flat, axis=-1, keepdims=True)
    unit = flat / (norms + eps)
    mean = (unit * w[:, None]).sum(0)
    mn = np.linalg.norm(mean)
    if mn < eps:
        assert len(tensors) == 2
        res = (t[0] * w[0] + t[1] * w[1]).reshape(shape)
        return res + base if base is not None else res
    mean = mean / mn
    dots = (unit * mean).sum(-1, keepdims=True)
    tangent = ((unit - dots * mean) * w[:, None]).sum(0)
    tn = np.linalg.norm(tangent) + eps
    res = mean * np.cos(tn) + tangent * (np.sin(tn) / tn)
    res = (res * (norms[:, 0] * w).sum()).reshape(shape)
    return res + base if base is not None else res


def karcher_ref(tensors, max_iter=10, tol=1e-5):
    alphas = [1.0 / len(tensors)] * len(tensors)
    if len(tensors) == 1:
        return tensors[0].astype(np.float64)
    norms, units = [], []
    for x in tensors:
        x = x.astype(np.float64).reshape(-1)
        n = np.linalg.norm(x)
        norms.append(n)
        units.append(np.zeros_like(x) if n == 0 else x / n)
    valid = [i for i, n in enumerate(norms) if n > tol]
    if not valid:
        return np.zeros(tensors[0].shape)
    va = np.array([alphas[i] for i in valid])
    va = va / va.sum()
    vu = [units[i] for i in valid]
    u = sum(a * x for a, x in zip(va, vu))
    nu = np.linalg.norm(u)
    u = vu[0].copy() if nu < tol else u / nu
    for _ in range(max_iter):
        T = np.zeros_like(u)
        for a, x in zip(va, vu):
            dot = np.clip(u @ x, -1, 1)
            theta = np.arccos(dot)
            if theta < tol:
                continue
            T += a * (theta / np.sin(theta)) * (x - dot * u)
        nt = np.linalg.norm(T)
        if nt < tol:
            break
        u = np.cos(nt) * u + np.sin(nt) * (T / nt)
        un = np.linalg.norm(u)
        if un > tol:
            u = u / un
    s = sum(a * n for a, n in zip(alphas, norms))
    return (s * u).reshape(tensors[0].shape)


def close(got, want, name, terms):
    """Within 4 fp32 ulps of the largest term summed."""
    g = got.astype(np.float64)
    scale = np.max(np.abs(np.stack(terms)), axis=0).astype(F32)
    scale = np.maximum(scale, np.abs(want).astype(F32))
    assert np.all(np.abs(g - want) <= (len(terms) + 2) * np.spacing(scale)), (
        name, np.max(np.abs(g - want)))


def family(tmp_path, rng, n=3, dtype="F32"):
    base = st.llama(rng, dtype, layers=2, hidden=16, inter=24, vocab=32)
    models = [st.llama(rng, dtype, layers=2, hidden=16, inter=24, vocab=32, base=base,
                       noise=0.05) for _ in range(n)]
    paths = []
    for i, m in enumerate([base] + models):
        p = tmp_path / f"m{i}.safetensors"
        st.write(p, m)
        paths.append(p)
    as_dict = [{k: st.to_f32(d, x) for k, d, x in m if d == dtype} for m in [base] + models]
    return paths, as_dict


@pytest.mark.parametrize("based", [False, True])
@pytest.mark.parametrize("normalize", [True, False])
def test_multislerp(tmp_path, rng, based, normalize):
    paths, ms = family(tmp_path, rng)
    w = [0.5, 0.3, 0.2] if normalize else [0.6, 0.3, 0.4]
    args = ["multislerp", *paths[1:], "--weights", ",".join(map(str, w))]
    if based:
        args += ["--base", paths[0]]
    if not normalize:
        args += ["--no-normalize"]
    ladle(*args, "-o", tmp_path / "o.safetensors", "-q")
    got, _ = st.load(str(tmp_path / "o.safetensors"))
    for n in ms[0]:
        b = ms[0][n] if based else None
        want = multislerp_ref([m[n] for m in ms[1:]], w, b, normalize)
        terms = [m[n] for m in ms[1:]] + ([ms[0][n]] if based else [])
        close(got[n][1], want, n, terms)
    # the recipe gives the same bytes; the base listed anywhere
    base_line = f"base_model: {paths[0]}\n" if based else ""
    models = "".join(f"  - model: {p}\n    parameters: {{weight: {x}}}\n"
                     for p, x in zip(paths[1:], w))
    (tmp_path / "r.yml").write_text(
        f"merge_method: multislerp\n{base_line}parameters:\n"
        f"  normalize_weights: {str(normalize).lower()}\nmodels:\n{models}")
    ladle("merge", tmp_path / "r.yml", "-o", tmp_path / "r.safetensors", "-q", "-j", "2")
    r, _ = st.load(str(tmp_path / "r.safetensors"))
    assert all(r[n][1].tobytes() == got[n][1].tobytes() for n in ms[0])


def test_multislerp_bf16_and_single(tmp_path, rng):
    paths, ms = family(tmp_path, rng, dtype="BF16")
    ladle("multislerp", *paths[1:], "-o", tmp_path / "o.safetensors", "-q")
    got, _ = st.load(str(tmp_path / "o.safetensors"))
    for n in ms[0]:
        want = multislerp_ref([m[n] for m in ms[1:]], [1, 1, 1])
        g = st.to_f64("BF16", got[n][1])
        assert np.all(np.abs(g - want) <= 1.01 * st.ulp("BF16", want)), n
    # one model: itself
    ladle("multislerp", paths[1], "-o", tmp_path / "one.safetensors", "-q")
    one, _ = st.load(str(tmp_path / "one.safetensors"))
    src, _ = st.load(str(paths[1]))
    assert all(one[n][1].tobytes() == src[n][1].tobytes() for n in src)


def test_multislerp_antipodal(tmp_path, rng):
    paths, ms = family(tmp_path, rng, n=1)
    neg = [(n, "F32", (-x).astype(F32)) for n, x in ms[1].items()]
    neg.append(("model.rotary.position_ids", "I64", np.arange(16, dtype=np.int64)))
    st.write(tmp_path / "neg.safetensors", neg)
    # two antipodal models with equal weights: mergekit's linear fallback (zeros)
    ladle("multislerp", paths[1], tmp_path / "neg.safetensors", "-o", tmp_path / "o.safetensors",
          "-q")
    got, _ = st.load(str(tmp_path / "o.safetensors"))
    for n in ms[0]:
        assert not np.any(got[n][1]), n
    # three, the third weighted 0: refused with the tensor named
    r = ladle("multislerp", paths[1], tmp_path / "neg.safetensors", paths[0], "--weights",
              "1,1,0", "-o", tmp_path / "x.safetensors", check=False)
    assert r.code == 1 and "antipodal" in r.err and "tensor '" in r.err
    assert not (tmp_path / "x.safetensors").exists()


def test_multislerp_many_models(tmp_path, rng):
    """Beyond 8 models the first pass sums only the norms (a Gram matrix
    costs m (m + 1) / 2 products per element) and a second one |m|^2."""
    paths, ms = family(tmp_path, rng, n=9)
    w = [float(v) for v in rng.uniform(0.2, 1, 9)]
    r = ladle("multislerp", *paths[1:], "--weights", ",".join(map(str, w)), "--base", paths[0],
              "-o", tmp_path / "o.safetensors")
    got, _ = st.load(str(tmp_path / "o.safetensors"))
    for n in ms[0]:
        terms = [m[n] for m in ms]
        close(got[n][1], multislerp_ref([m[n] for m in ms[1:]], w, ms[0][n]), n, terms)
    m = re.search(r"from ([\d.]+) kB read \(([\d.]+) kB over every pass\)", r.err)
    assert m and abs(float(m[2]) / float(m[1]) - 3) < 0.05, r.err


def test_multislerp_nearly_antipodal(tmp_path, rng):
    """|m|^2 comes from the Gram matrix of the first pass unless that sum
    cancels, as for nearly antipodal inputs (its terms some 10^12 times the
    sum here): then a second pass sums it element by element. Either way
    the output is the fp32 sum with the exact coefficients (the output's
    own sum cancels here, so it is checked against that, not the fp64
    result)."""
    x = rng.standard_normal((64, 48)).astype(F32)
    y = (-x.astype(np.float64) * (1 + 1e-6 * rng.standard_normal(x.shape))).astype(F32)
    for name, a in (("a", x), ("b", y)):
        st.write(tmp_path / f"{name}.safetensors", [("w", "F32", a)])
    for w in ([1, 1], [0.5, 0.7]):
        ladle("multislerp", tmp_path / "a.safetensors", tmp_path / "b.safetensors", "--weights",
              ",".join(map(str, w)), "-o", tmp_path / "o.safetensors", "-q", "--force")
        got = st.load(str(tmp_path / "o.safetensors"))[0]["w"][1]
        w = np.array(w, np.float64) / sum(w)
        X = [x.astype(np.float64).ravel(), y.astype(np.float64).ravel()]
        norms = [np.sqrt(np.sum(v * v)) for v in X]
        unit = [wi / (n + 1e-8) for wi, n in zip(w, norms)]
        mn = np.linalg.norm(unit[0] * X[0] + unit[1] * X[1])
        c = [F32(u * (w @ norms) / mn) for u in unit]
        terms = np.abs(c[0] * x) + np.abs(c[1] * y)
        want = c[0] * x + c[1] * y
        assert np.all(np.abs(got - want) <= 2 * np.spacing(terms)), np.max(np.abs(got - want))
    # the passes each pair took: two reads of the inputs and the merge's
    # when the Gram matrix settles |m|, three when it cancels
    z = (x.astype(np.float64) * (1 + 0.1 * rng.standard_normal(x.shape))).astype(F32)
    st.write(tmp_path / "c.safetensors", [("w", "F32", z)])
    for other, reads in (("b", 3), ("c", 2)):
        r = ladle("multislerp", tmp_path / "a.safetensors", tmp_path / f"{other}.safetensors",
                  "-o", tmp_path / "o.safetensors", "--force")
        m = re.search(r"from ([\d.]+) kB read \(([\d.]+) kB over every pass\)", r.err)
        assert m and abs(float(m[2]) / float(m[1]) - reads) < 0.01, r.err


@pytest.mark.parametrize("iters,tol", [(10, 1e-5), (1, 1e-5), (50, 1e-9), (0, 1e-5)])
def test_karcher(tmp_path, rng, iters, tol):
    paths, ms = family(tmp_path, rng, n=4)
    ladle("karcher", *paths[1:], "--max-iter", str(iters), "--tol", str(tol), "-o",
          tmp_path / "o.safetensors", "-q")
    got, _ = st.load(str(tmp_path / "o.safetensors"))
    for n in ms[0]:
        want = karcher_ref([m[n] for m in ms[1:]], iters, tol)
        close(got[n][1], want, n, [m[n] for m in ms[1:]])
    params = f"parameters: {{max_iter: {iters}, tol: {tol}}}\n"
    models = "".join(f"  - model: {p}\n" for p in paths[1:])
    (tmp_path / "r.yml").write_text(f"merge_method: karcher\n{params}models:\n{models}")
    ladle("merge", tmp_path / "r.yml", "-o", tmp_path / "r.safetensors", "-q", "-j", "2")
    r, _ = st.load(str(tmp_path / "r.safetensors"))
    assert all(r[n][1].tobytes() == got[n][1].tobytes() for n in ms[0])


def test_karcher_far_apart_and_zero(tmp_path, rng):
    """Independent random models (angles near 90 degrees, where the
    iteration has work to do) and one model that is zero in some tensors:
    left out of the direction, its norm 0 still in the scale."""
    shapes = {"a.weight": (40, 30), "b.weight": (64,), "c.weight": (7, 3)}
    ms = []
    for i in range(3):
        m = {n: (rng.standard_normal(s) * (i + 1)).astype(F32) for n, s in shapes.items()}
        if i == 2:
            m["b.weight"] = np.zeros(64, F32)
        ms.append(m)
        st.write(tmp_path / f"k{i}.safetensors", [(n, "F32", x) for n, x in m.items()])
    paths = [tmp_path / f"k{i}.safetensors" for i in range(3)]
    ladle("karcher", *paths, "--max-iter", "30", "-o", tmp_path / "o.safetensors", "-q")
    got, _ = st.load(str(tmp_path / "o.safetensors"))
    for n in shapes:
        want = karcher_ref([m[n] for m in ms], 30)
        close(got[n][1], want, n, [m[n] for m in ms])
        if n != "b.weight":  # not the plain mean: the directions' spherical mean
            assert not np.allclose(want, sum(m[n] for m in ms) / 3, rtol=1e-3)


def test_sphere_refusals(tmp_path, rng):
    paths, _ = family(tmp_path, rng, n=2)
    for args, msg in ((["multislerp", *paths[1:], "--weights", "1"], "1 weights for 2 models"),
                      (["multislerp", *paths[1:], "--weights", "1,-1"], "sum to 0"),
                      (["karcher", *paths[1:], "--max-iter", "-1"], "--max-iter"),
                      (["karcher", *paths[1:], "--tol", "-1"], "--tol")):
        r = ladle(*args, "-o", tmp_path / "x.safetensors", check=False)
        assert r.code == 2 and msg in r.err, (args, r.err)
    (tmp_path / "r.yml").write_text(
        "merge_method: karcher\nparameters: {max_iter: 2.5}\nmodels:\n"
        + "".join(f"  - model: {p}\n" for p in paths[1:]))
    r = ladle("merge", tmp_path / "r.yml", "-o", tmp_path / "x.safetensors", check=False)
    assert r.code == 1 and "max_iter is 2.5" in r.err
