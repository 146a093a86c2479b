"""sce, ram, ramplus_tl and model_stock's filter_wise against numpy
references written from mergekit's definitions (merge_methods/sce.py,
ram.py, model_stock.py), element arithmetic in fp32 in mergekit's order.
Where ladle fixes what mergekit leaves open, the references do the same
and say so: SCE's variances in fp64 ranked as fp32 with ties to the lowest
index; weights (means of squares) summed in fp64 and rounded once."""
import numpy as np
import pytest

import st
from conftest import ladle
from test_stock import stock_ref

F32 = np.float32


def sce_ref(base, xs, topk):
    tv = np.stack([(x - base).astype(F32) for x in xs])  # (N, ...) fp32
    flat = tv.reshape(len(xs), -1).copy()
    if topk <= 0:
        flat[:] = 0
    elif topk < 1:
        d = flat.astype(np.float64)
        var = ((d - d.mean(0)) ** 2).mean(0).astype(F32)
        k = int(F32(np.count_nonzero(var)) * F32(topk))
        keep = np.zeros(var.size, bool)
        if k:
            order = np.lexsort((np.arange(var.size), -var.astype(np.float64)))
            keep[order[:k]] = True
        flat[:, ~keep] = 0
    means = (flat.astype(np.float64) ** 2).mean(1)
    w = (np.full(len(xs), 1 / len(xs)) if abs(means.sum()) < 1e-6
         else means / means.sum()).astype(F32)
    ssum = np.zeros(flat.shape[1], F32)
    for i in range(len(xs)):
        ssum = ssum + flat[i]
    elected = np.where(ssum >= 0, F32(1), F32(-1))
    num = np.zeros_like(ssum)
    den = np.zeros_like(ssum)
    for i in range(len(xs)):
        agree = np.sign(flat[i]) == elected
        num = num + np.where(agree, flat[i] * w[i], F32(0))
        den = den + np.where(agree, w[i], F32(0))
    out = num / np.maximum(den, F32(1e-6))
    return (base.reshape(-1) + out).reshape(base.shape).astype(F32)


def ram_ref(base, xs, eps=1e-5, plus=False, r=0.1, alpha=0.2):
    tv = np.stack([(x - base).astype(F32).reshape(-1) for x in xs])
    nz = np.abs(tv) > F32(eps)
    cnt = nz.sum(0)
    overlap, unique = cnt > 1, cnt == 1
    lam = np.ones(len(xs), F32)
    if plus:
        shared = (nz & overlap).sum(1)
        uniq = (nz & unique).sum(1)
        rho = shared.astype(F32) / np.maximum(uniq.astype(F32), F32(eps))
        lam = (F32(1) + F32(r) * np.clip(rho, F32(0), F32(alpha))).astype(F32)
    acc = np.zeros(tv.shape[1], F32)
    for i in range(len(xs)):
        tz = np.where(nz[i], tv[i], F32(0))
        term = np.where(unique, tz * lam[i], tz / np.maximum(cnt, 1).astype(F32))
        acc = acc + term
    return (base.reshape(-1) + acc).reshape(base.shape).astype(F32)


def family(tmp_path, rng, n=3, sparse=0.0):
    base = st.llama(rng, "F32", layers=2, hidden=16, inter=24, vocab=40)
    ms = []
    for i in range(n):
        m = st.llama(rng, "F32", layers=2, hidden=16, inter=24, vocab=40, base=base, noise=0.03)
        if sparse:  # many elements equal to the base's: RAM's unique/shared structure
            m = [(k, d, np.where(rng.random(x.shape) < sparse, y, x).astype(x.dtype))
                 for (k, d, x), (_, _, y) in zip(m, base)]
        ms.append(m)
    paths = []
    for i, m in enumerate([base] + ms):
        p = tmp_path / f"m{i}.safetensors"
        st.write(p, m)
        paths.append(p)
    return paths, [{k: x for k, d, x in m if d == "F32"} for m in [base] + ms]


def same(path, want_fn, ms):
    got, _ = st.load(str(path))
    for k in ms[0]:
        want = want_fn(ms[0][k], [m[k] for m in ms[1:]])
        assert got[k][1].tobytes() == want.tobytes(), (k, np.max(np.abs(got[k][1] - want)))


def recipe(tmp_path, method, paths, params=""):
    models = "".join(f"  - model: {p}\n" for p in paths[1:])
    (tmp_path / "r.yml").write_text(f"merge_method: {method}\nbase_model: {paths[0]}\n"
                                    f"{params}models:\n{models}")
    out = tmp_path / f"r-{method}.safetensors"
    ladle("merge", tmp_path / "r.yml", "-o", out, "-q", "-j", "2", "--force")
    return out


@pytest.mark.parametrize("topk", [1.0, 0.3, 0.05, 0.0])
def test_sce(tmp_path, rng, topk):
    paths, ms = family(tmp_path, rng)
    out = tmp_path / "o.safetensors"
    ladle("sce", "--base", paths[0], *paths[1:], "--select-topk", str(topk), "-o", out, "-q")
    same(out, lambda b, xs: sce_ref(b, xs, topk), ms)
    r = recipe(tmp_path, "sce", paths, f"parameters: {{select_topk: {topk}}}\n")
    same(r, lambda b, xs: sce_ref(b, xs, topk), ms)


def test_sce_ties_and_threads(tmp_path, rng):
    """Many equal variances (quantised deltas) across work items: the same
    elements kept for any -j, the lowest indexes first."""
    n = 300_000  # several work items
    base = rng.standard_normal(n).astype(F32)
    xs = [(base + F32(0.25) * rng.integers(-2, 3, n).astype(F32)).astype(F32) for _ in range(3)]
    st.write(tmp_path / "b.safetensors", [("w", "F32", base)])
    for i, x in enumerate(xs):
        st.write(tmp_path / f"x{i}.safetensors", [("w", "F32", x)])
    outs = []
    for j in ("1", "2"):
        o = tmp_path / f"o{j}.safetensors"
        ladle("sce", "--base", tmp_path / "b.safetensors",
              *[tmp_path / f"x{i}.safetensors" for i in range(3)], "--select-topk", "0.1",
              "-o", o, "-q", "-j", j)
        outs.append(st.load(str(o))[0]["w"][1].tobytes())
    assert outs[0] == outs[1]
    got, _ = st.load(str(tmp_path / "o1.safetensors"))
    assert got["w"][1].tobytes() == sce_ref(base, xs, 0.1).tobytes()


@pytest.mark.parametrize("plus", [False, True])
def test_ram(tmp_path, rng, plus):
    paths, ms = family(tmp_path, rng, sparse=0.5)
    out = tmp_path / "o.safetensors"
    ladle("ram", "--base", paths[0], *paths[1:], *(["--plus"] if plus else []), "-o", out, "-q")
    same(out, lambda b, xs: ram_ref(b, xs, plus=plus), ms)
    # the recipe (other parameters); a tiny epsilon, a large one
    params = ("parameters: {r: 0.5, alpha: 0.7, epsilon: 0.001}\n" if plus
              else "parameters: {epsilon: 0.001}\n")
    r = recipe(tmp_path, "ramplus_tl" if plus else "ram", paths, params)
    same(r, lambda b, xs: ram_ref(b, xs, 0.001, plus, 0.5, 0.7), ms)


def test_ram_refusals(tmp_path, rng):
    paths, _ = family(tmp_path, rng, n=1)
    r = ladle("ram", "--base", paths[0], paths[1], "--r", "0.3", "-o", tmp_path / "x.st",
              check=False)
    assert r.code == 2 and "--plus" in r.err
    r = ladle("sce", paths[1], "-o", tmp_path / "x.st", check=False)
    assert r.code == 2 and "--base" in r.err


def test_stock_filter_wise(tmp_path, rng):
    paths, ms = family(tmp_path, rng)

    def ref(b, xs):
        if b.ndim == 1:
            return stock_ref(b, xs)
        return np.stack([stock_ref(b[i], [x[i] for x in xs]) for i in range(b.shape[0])])

    out = tmp_path / "o.safetensors"
    ladle("stock", "--base", paths[0], *paths[1:], "--filter-wise", "-o", out, "-q")
    same(out, ref, ms)
    r = recipe(tmp_path, "model_stock", paths, "parameters: {filter_wise: true}\n")
    same(r, ref, ms)
    # not the per-tensor result
    ladle("stock", "--base", paths[0], *paths[1:], "-o", tmp_path / "t.safetensors", "-q")
    assert (tmp_path / "t.safetensors").read_bytes() != out.read_bytes()


def fusion_ref(base, p):
    """mergekit's ArceeFusionMergeTask for tensors of at most 10^6 elements
    (no sampling): KL per row in fp64 rounded to fp32, the rest in fp32."""
    shape = base.shape
    b2 = base.reshape(1, -1) if base.ndim < 2 else base.reshape(-1, shape[-1])
    p2 = p.reshape(b2.shape)

    def softmax(x):
        x = x.astype(np.float64)
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    P, Q = softmax(p2) + 1e-8, softmax(b2) + 1e-8
    kl = (P * np.log(P / Q)).sum(-1).astype(F32)
    d = (p2 - b2).astype(F32)
    imp = (np.abs(d) * kl[:, None]).astype(F32).ravel()
    s = np.sort(imp)
    q = lambda f: s[int(f * (s.size - 1))]
    thr = F32(q(0.5) + F32(F32(1.5) * F32(q(0.75) - q(0.25))))
    out = np.where(imp.reshape(d.shape) >= thr, b2 + d, b2 + F32(0)).astype(F32)
    return out.reshape(shape)


@pytest.mark.parametrize("dtype", ["F32", "BF16"])
def test_arcee_fusion(tmp_path, rng, dtype):
    base = st.llama(rng, dtype, layers=2, hidden=16, inter=24, vocab=40)
    ft = st.llama(rng, dtype, layers=2, hidden=16, inter=24, vocab=40, base=base, noise=0.05)
    extra = [("tiny.weight", (3,)), ("one.weight", (1,)), ("conv.weight", (4, 3, 5))]
    for name, shape in extra:
        x = rng.standard_normal(shape).astype(F32)
        base.append((name, dtype, st.round_to(dtype, x)))
        ft.append((name, dtype, st.round_to(dtype, x + rng.standard_normal(shape).astype(F32))))
    st.write(tmp_path / "b.safetensors", base)
    st.write(tmp_path / "p.safetensors", ft)
    out = tmp_path / "o.safetensors"
    ladle("arcee-fusion", "--base", tmp_path / "b.safetensors", tmp_path / "p.safetensors",
          "-o", out, "-q", "-j", "2")
    got, _ = st.load(str(out))
    bm = {n: st.to_f32(d, x) for n, d, x in base if d == dtype}
    pm = {n: st.to_f32(d, x) for n, d, x in ft if d == dtype}
    taken = 0
    for n in bm:
        want = st.round_to(dtype, fusion_ref(bm[n], pm[n]))
        assert got[n][1].tobytes() == want.tobytes(), n
        taken += np.count_nonzero(want != st.round_to(dtype, bm[n]))
    assert 0 < taken < sum(x.size for x in bm.values()) // 2  # a minority of changes kept
    (tmp_path / "r.yml").write_text(
        f"merge_method: arcee_fusion\nbase_model: {tmp_path / 'b.safetensors'}\n"
        f"models:\n  - model: {tmp_path / 'p.safetensors'}\n")
    ladle("merge", tmp_path / "r.yml", "-o", tmp_path / "r.safetensors", "-q")
    r, _ = st.load(str(tmp_path / "r.safetensors"))
    assert all(r[n][1].tobytes() == got[n][1].tobytes() for n in bm)
