"""TIES, DARE and Breadcrumbs against a numpy reference written from
mergekit's generalized task arithmetic (sparsify, weight, elect sign,
disjoint merge, normalise, lambda), with ladle's documented choices: ties
at the top-k threshold go to the lowest index; DARE rescales by 1/density
and draws its mask from a counter-based hash, re-implemented here."""
import numpy as np
import pytest

import st
from conftest import ladle

F32 = np.float32


def topk(d, k):
    """Mask of the k largest |d|, ties broken by lowest index."""
    n = d.size
    mask = np.zeros(n, bool)
    if k >= n:
        mask[:] = True
    elif k > 0:
        order = np.lexsort((np.arange(n), -np.abs(d.ravel().astype(np.float64))))
        mask[order[:k]] = True
    return mask.reshape(d.shape)


def mix32(x):
    """lowbias32; uint32 multiplication wraps, as in C."""
    x = np.asarray(x, dtype=np.uint32)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(0x7FEB352D)
        x = x ^ (x >> np.uint32(15))
        x = x * np.uint32(0x846CA68B)
        return x ^ (x >> np.uint32(16))


def tensor_key(name):
    h = 2166136261
    for c in name.encode():
        h = ((h ^ c) * 16777619) & 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x7FEB352D) & 0xFFFFFFFF
    return h ^ (h >> 15)


def draws(name, i, seed, n):
    """The counter-based uniform draws of task vector i of a tensor."""
    tv = mix32(np.uint32(tensor_key(name)) ^ mix32(np.uint32(seed & 0xFFFFFFFF) ^ mix32(
        np.uint32(seed >> 32) ^ mix32(np.uint32(i + 1)))))
    idx = np.arange(n, dtype=np.uint64)
    return mix32((idx & np.uint64(0xFFFFFFFF)).astype(np.uint32) ^ mix32(
        (idx >> np.uint64(32)).astype(np.uint32) ^ tv))


def dare_mask(name, i, seed, density, n):
    if density >= 1:
        return np.ones(n, bool)
    thr = int(density * 4294967296.0) if density > 0 else 0
    return draws(name, i, seed, n).astype(np.uint64) < np.uint64(thr)


def della_factor(name, i, seed, d, density, eps, rescale):
    """Per element: 0 if dropped, else 1/p (or 1): ranks within each row
    (last dim; 1-D is one row), ascending |d|, ties to the lower index."""
    if density >= 1 or density <= 0:
        return np.full(d.shape, 1.0 if density >= 1 else 0.0)
    rows = d.reshape(1, -1) if d.ndim < 2 else d.reshape(-1, d.shape[-1])
    nrow, width = rows.shape
    u = draws(name, i, seed, d.size).reshape(nrow, width).astype(np.float64)
    fac = np.zeros((nrow, width))
    for r in range(nrow):
        order = np.lexsort((np.arange(width), np.abs(rows[r].astype(np.float64))))
        p = np.empty(width)
        p[order] = density - eps + (2 * eps * np.arange(width) / (width - 1) if width > 1 else 0)
        keep = u[r] < p * 4294967296.0
        fac[r] = np.where(keep, 1 / p if rescale else 1.0, 0.0)
    return fac.reshape(d.shape)


def gta_ref(name, base, xs, weights, kind, density=1.0, consensus="sum", normalize=False,
            lam=1.0, gamma=0.01, seed=0, rescale=True, epsilon=0.15, tall_k=0, tall=0.6):
    b = base
    wds = []
    densities = density if isinstance(density, (list, tuple)) else [density] * len(xs)
    for i, (x, w) in enumerate(zip(xs, weights)):
        density = densities[i]
        d = d0 = (x - b).astype(F32)
        n = d.size
        if kind == "magnitude":
            keep = topk(d, n if density >= 1 else int(density * n))
        elif kind == "outliers":
            if density >= 1:
                keep = np.ones(d.shape, bool)
            else:
                target, top = int(density * n), int(gamma * n)
                top = min(top, n - target)
                keep = topk(d, target + top) & ~topk(d, top)
        elif kind == "della":
            fac = della_factor(name, i, seed, d, density, epsilon, rescale is True)
            keep = fac != 0
            d = (d * fac.astype(F32)).astype(F32)
        else:
            keep = dare_mask(name, i, seed, density, n).reshape(d.shape)
            if rescale is True and 0 < density < 1:
                d = (d * F32(1.0 / density)).astype(F32)
        kept = np.where(keep, d, F32(0)).astype(F32)
        if rescale == "l1" and kind != "dense":
            # mergekit's rescaled_masked_tensor: |d|_1 / |kept|_1 (sums in fp64),
            # applied before the weight
            a = np.abs(d0.astype(np.float64)).sum()
            k = np.abs(kept.astype(np.float64)).sum()
            if a >= 1e-7 and k >= 1e-7:
                kept = (kept * F32(a / k)).astype(F32)
        wds.append((kept * F32(w)).astype(F32))
    if consensus:
        if consensus == "sum":
            s = F32(0)
            for wd in wds:
                s = s + wd
            elected = np.where(s >= 0, 1, -1)
        else:
            elected = np.where(sum(np.sign(wd) for wd in wds) >= 0, 1, -1)
        mixed = np.zeros_like(b)
        div = np.zeros_like(b)
        for wd, w in zip(wds, weights):
            agree = np.sign(wd) == elected
            mixed = np.where(agree, mixed + wd, mixed).astype(F32)
            div = np.where(agree, div + F32(w), div).astype(F32)
        div = np.where(div == 0, F32(1), div)
    else:
        mixed = F32(0)
        for wd in wds:
            mixed = mixed + wd
        div = F32(0)
        for w in weights:
            div = F32(div + F32(w))
        if abs(div) < 1e-8:
            div = F32(1)
    if normalize:
        mixed = (mixed / div).astype(F32)
    if tall_k:  # consensus TIES: TALL masks against the merged vector (Wang et al. 2024)
        count = sum((np.abs(t) > F32(tall) * np.abs((mixed - t).astype(F32))).astype(np.int32)
                    for t in (((x - b).astype(F32) * F32(w)).astype(F32)
                              for x, w in zip(xs, weights)))
        mixed = np.where(count >= tall_k, mixed, F32(0)).astype(F32)
    return (b + F32(lam) * mixed).astype(F32)


def write_family(tmp_path, rng, dtype, n=3, noise=0.02, quantize=None):
    base = st.llama(rng, dtype)
    paths = []
    for i in range(n):
        m = st.llama(rng, dtype, base=base, noise=noise)
        if quantize:  # many exactly equal deltas: exercises tie-breaking
            m = [(nm, d, st.round_to(d, st.to_f32(d, bb) + np.round(
                (st.to_f32(d, a) - st.to_f32(d, bb)) / quantize) * F32(quantize)))
                 if d in ("BF16", "F16", "F32") else (nm, d, a)
                 for (nm, d, a), (_, _, bb) in zip(m, base)]
        p = tmp_path / f"ft{i}.safetensors"
        st.write(p, m)
        paths.append(p)
    bp = tmp_path / "base.safetensors"
    st.write(bp, base)
    return bp, paths


def check(out, base, fts, weights, dtype, **kw):
    got, _ = st.load(out)
    B, _ = st.load(base)
    X = [st.load(f)[0] for f in fts]
    for name, (d, arr) in B.items():
        if d not in ("BF16", "F16", "F32"):
            assert np.array_equal(got[name][1], arr)
            continue
        b = st.to_f32(d, arr)
        xs = [st.to_f32(x[name][0], x[name][1]) for x in X]
        want = st.round_to(dtype, gta_ref(name, b, xs, weights, **kw))
        g = got[name][1]
        u = f"u{g.itemsize}"
        bad = np.count_nonzero(g.view(u) != want.view(u))
        assert bad == 0, f"{name}: {bad} of {g.size} differ"


def run(cmd, base, fts, weights, out, *extra):
    args = [cmd, "--base", base]
    for w, f in zip(weights, fts):
        args += ["--add", f"{w}:{f}"]
    ladle(*args, *extra, "-o", out, "-q")


@pytest.mark.parametrize("dtype", ["BF16", "F16", "F32"])
@pytest.mark.parametrize("density", [0.2, 0.55, 1.0])
def test_ties(tmp_path, rng, dtype, density):
    base, fts = write_family(tmp_path, rng, dtype)
    weights = [1.0, 0.6, 0.3]
    out = tmp_path / "o.safetensors"
    run("ties", base, fts, weights, out, "--density", density, "--lambda", "0.8")
    check(out, base, fts, weights, dtype, kind="magnitude", density=density, consensus="sum",
          normalize=True, lam=0.8)


@pytest.mark.parametrize("majority,normalize", [("count", True), ("sum", False)])
def test_ties_options(tmp_path, rng, majority, normalize):
    base, fts = write_family(tmp_path, rng, "BF16")
    weights = [0.5, 1.5, -0.4]
    out = tmp_path / "o.safetensors"
    run("ties", base, fts, weights, out, "--density", "0.3", "--majority", majority,
        "--normalize" if normalize else "--no-normalize")
    check(out, base, fts, weights, "BF16", kind="magnitude", density=0.3, consensus=majority,
          normalize=normalize)


def test_ties_exact_with_many_ties_and_big_tensors(tmp_path, rng):
    """Quantised deltas make thousands of equal magnitudes at the threshold;
    tensors over one work item (128K elements) need the per-block tie
    counts to be carried across items and threads."""
    base = [("big", "F32", rng.standard_normal((700, 512)).astype(F32)),
            ("small", "F32", rng.standard_normal(100).astype(F32))]
    fts = []
    for i in range(2):
        m = [(n, d, a + np.round(rng.standard_normal(a.shape) * 3).astype(F32) * F32(0.25))
             for n, d, a in base]
        p = tmp_path / f"ft{i}.safetensors"
        st.write(p, m)
        fts.append(p)
    bp = tmp_path / "base.safetensors"
    st.write(bp, base)
    outs = []
    for j in (1, 2, 3):
        out = tmp_path / f"o{j}.safetensors"
        run("ties", bp, fts, [1, 1], out, "--density", "0.37", "-j", j)
        check(out, bp, fts, [1, 1], "F32", kind="magnitude", density=0.37, consensus="sum",
              normalize=True)
        outs.append(st.read(out)[0]["big"][1].tobytes())
    assert outs[0] == outs[1] == outs[2]
    # exactly int(density * n) kept per task vector: one model alone, no consensus effects
    out = tmp_path / "one.safetensors"
    run("ties", bp, fts[:1], [1], out, "--density", "0.37")
    got = st.read(out)[0]["big"][1]
    kept = np.count_nonzero(got != base[0][2])
    changed_possible = np.count_nonzero(st.read(fts[0])[0]["big"][1] != base[0][2])
    assert kept == min(int(0.37 * got.size), changed_possible)


def test_ties_tie_counts_every_way(tmp_path, rng):
    """The tie counts at the threshold come from the last digit pass (each
    block's distinct last digits) or, when a block holds too many distinct
    ones, from a pass of their own: both exact. Here every magnitude shares
    its top 16 bits, with a few hundred distinct last digits, each many
    times over, so the threshold falls inside a run of equal keys."""
    n = 6000
    mags = (F32(1.0) + rng.integers(0, 300, n).astype(F32) * F32(2.0 ** -23)).astype(F32)
    few = (F32(1.0) + rng.integers(0, 3, n).astype(F32) * F32(2.0 ** -23)).astype(F32)
    base = [("many", "F32", np.zeros(n, F32)), ("few", "F32", np.zeros(n, F32))]
    fts = []
    for i in range(2):
        sign = np.where(rng.random(n) < 0.5, F32(-1), F32(1))
        m = [("many", "F32", (sign * rng.permutation(mags)).astype(F32)),
             ("few", "F32", (sign * rng.permutation(few)).astype(F32))]
        p = tmp_path / f"ft{i}.safetensors"
        st.write(p, m)
        fts.append(p)
    bp = tmp_path / "base.safetensors"
    st.write(bp, base)
    for density in (0.3, 0.71):
        outs = []
        for j in (1, 2):
            out = tmp_path / f"o{density}-{j}.safetensors"
            run("ties", bp, fts, [1, 0.5], out, "--density", density, "-j", j)
            check(out, bp, fts, [1, 0.5], "F32", kind="magnitude", density=density,
                  consensus="sum", normalize=True)
            outs.append({k: a.tobytes() for k, (_, a) in st.read(out)[0].items()})
        assert outs[0] == outs[1]


def passes_read(err):
    """-> (bytes read once, bytes read over every pass) from ladle's summary."""
    import re
    unit = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}
    m = re.search(r"from ([\d.]+) (\w+) read(?: \(([\d.]+) (\w+) over every pass\))?", err)
    once = float(m.group(1)) * unit[m.group(2)]
    return once, float(m.group(3)) * unit[m.group(4)] if m.group(3) else once


@pytest.mark.parametrize("misleading", [False, True])
def test_ties_sampled_window_or_full_passes(tmp_path, rng, misleading):
    """A tensor too big to keep every key is sampled (every 16th work item
    of 128K elements): the first digit pass keeps the keys in the sample's
    window, which settle the threshold with no second digit pass nor tie
    pass (inputs read 2 times and the sample's 3/36). A misleading sample
    (the sampled items' task vectors are tiny) puts the threshold outside
    the window: the passes run as before (4 reads and the sample). Both exact,
    for TIES (one selection per task vector) and Breadcrumbs (two)."""
    n = 4608 * 1024  # 36 work items; 2 selections x 4 bytes x n > 32 MB
    base = [("w", "F32", rng.standard_normal(n).astype(F32))]
    fts = []
    for i in range(2):
        d = rng.standard_normal(n).astype(F32) * F32(0.01)
        if misleading:
            items = d.reshape(-1, 128 * 1024)
            items[::16] *= F32(1e-3)
        p = tmp_path / f"ft{i}.safetensors"
        st.write(p, [("w", "F32", base[0][2] + d)])
        fts.append(p)
    bp = tmp_path / "base.safetensors"
    st.write(bp, base)
    for cmd, extra, kw in (
            ("ties", ["--density", "0.3"], dict(kind="magnitude", density=0.3,
                                                 consensus="sum", normalize=True)),
            ("breadcrumbs", ["--density", "0.4", "--gamma", "0.05"],
             dict(kind="outliers", density=0.4, gamma=0.05, consensus=None,
                  normalize=False))):
        out = tmp_path / f"{cmd}.safetensors"
        args = [cmd, "--base", bp, "--add", f"1:{fts[0]}", "--add", f"0.5:{fts[1]}"]
        r = ladle(*args, *extra, "-o", out)
        check(out, bp, fts, [1, 0.5], "F32", **kw)
        once, every = passes_read(r.err)
        # the sample: items 0, 16 and 32; misleading: the second digit pass and
        # the tie pass (these fp32 keys' last digits are too many to count in it)
        want = (4 if misleading else 2) + 3 / 36
        assert abs(every / once - want) < 0.02, r.err


@pytest.mark.parametrize("density", [0.0, 1.0])
def test_ties_density_edges(tmp_path, rng, density):
    base, fts = write_family(tmp_path, rng, "F32")
    out = tmp_path / "o.safetensors"
    run("ties", base, fts, [1, 1, 1], out, "--density", density)
    check(out, base, fts, [1, 1, 1], "F32", kind="magnitude", density=density, consensus="sum",
          normalize=True)
    if density == 0:  # nothing survives: the base itself
        got, B = st.load(out)[0], st.load(base)[0]
        assert all(np.array_equal(got[k][1], B[k][1]) for k in B)


def test_lambda_zero_gives_base(tmp_path, rng):
    base, fts = write_family(tmp_path, rng, "BF16")
    out = tmp_path / "o.safetensors"
    run("ties", base, fts, [1, 1, 1], out, "--density", "0.5", "--lambda", "0")
    got, B = st.load(out)[0], st.load(base)[0]
    assert all(np.array_equal(got[k][1], B[k][1]) for k in B)


@pytest.mark.parametrize("consensus", [False, True])
@pytest.mark.parametrize("dtype", ["BF16", "F32"])
def test_dare_matches_reference_mask(tmp_path, rng, consensus, dtype):
    base, fts = write_family(tmp_path, rng, dtype)
    weights = [1.0, 0.7, 0.5]
    out = tmp_path / "o.safetensors"
    extra = ["--density", "0.3", "--seed", "42"] + (["--sign-consensus"] if consensus else [])
    run("dare", base, fts, weights, out, *extra)
    check(out, base, fts, weights, dtype, kind="random", density=0.3,
          consensus="sum" if consensus else None, normalize=False, seed=42)


def test_dare_distribution_rescale_and_determinism(tmp_path, rng):
    n = 600_000
    b = rng.standard_normal(n).astype(F32)
    x = (b + rng.standard_normal(n).astype(F32)).astype(F32)
    st.write(tmp_path / "b.safetensors", [("w", "F32", b)])
    st.write(tmp_path / "x.safetensors", [("w", "F32", x)])
    d, density = (x - b).astype(F32), 0.3
    masks = {}
    for seed, j in ((1, 1), (1, 2), (1, 4), (2, 2)):
        out = tmp_path / f"o{seed}{j}.safetensors"
        run("dare", tmp_path / "b.safetensors", [tmp_path / "x.safetensors"], [1], out,
            "--density", density, "--seed", seed, "-j", j)
        got = st.read(out)[0]["w"][1]
        kept = got != b
        # survivors rescaled exactly by 1/density, the rest exactly the base
        assert np.array_equal(got[kept], b[kept] + (d[kept] * F32(1 / density)))
        assert np.array_equal(got[~kept], b[~kept])
        masks[(seed, j)] = kept
        rate = 1 - kept.mean()
        sigma = np.sqrt(density * (1 - density) / n)
        assert abs(rate - (1 - density)) < 3 * sigma, rate
    assert np.array_equal(masks[(1, 1)], masks[(1, 2)])
    assert np.array_equal(masks[(1, 1)], masks[(1, 4)])
    assert not np.array_equal(masks[(1, 2)], masks[(2, 2)])


def test_dare_density_one_and_no_rescale(tmp_path, rng):
    base, fts = write_family(tmp_path, rng, "F32")
    out = tmp_path / "o.safetensors"
    run("dare", base, fts, [1, 1, 1], out, "--density", "1")
    check(out, base, fts, [1, 1, 1], "F32", kind="random", density=1.0, consensus=None)
    run("dare", base, fts, [1, 1, 1], out, "--density", "0.4", "--no-rescale", "--force")
    check(out, base, fts, [1, 1, 1], "F32", kind="random", density=0.4, consensus=None,
          rescale=False)
    r = ladle("dare", "--base", base, "--add", f"1:{fts[0]}", "-o", out, check=False)
    assert r.code == 2 and "--density" in r.err


@pytest.mark.parametrize("ties", [False, True])
def test_breadcrumbs(tmp_path, rng, ties):
    base, fts = write_family(tmp_path, rng, "BF16")
    weights = [1.0, 0.5, 0.8]
    out = tmp_path / "o.safetensors"
    run("breadcrumbs", base, fts, weights, out, "--density", "0.6", "--gamma", "0.05",
        *(["--ties"] if ties else []))
    check(out, base, fts, weights, "BF16", kind="outliers", density=0.6, gamma=0.05,
          consensus="sum" if ties else None, normalize=False)


def magnitude_scales(base, xs):
    norms = [np.sqrt(np.sum((x - base).astype(F32).astype(np.float64) ** 2)) for x in xs]
    mean = sum(n / len(norms) for n in norms)
    return [mean / n if n > 0 else 1.0 for n in norms]


def scaled_models(base, xs):
    """x_i such that x_i - base is the magnitude-normalised task vector,
    for feeding gta_ref (which forms x - base itself)."""
    return [(x - base).astype(F32) * F32(s) for x, s in zip(xs, magnitude_scales(base, xs))]


@pytest.mark.parametrize("cmd", ["task", "ties"])
def test_normalize_magnitude(tmp_path, rng, cmd):
    base = st.llama(rng, "F32")
    fts = []
    for i, noise in enumerate((0.01, 0.05, 0.2)):  # very unequal task vectors
        p = tmp_path / f"ft{i}.safetensors"
        st.write(p, st.llama(rng, "F32", base=base, noise=noise))
        fts.append(p)
    bp = tmp_path / "base.safetensors"
    st.write(bp, base)
    out = tmp_path / "o.safetensors"
    extra = ["--density", "0.4"] if cmd == "ties" else ["--lambda", "0.9"]
    run(cmd, bp, fts, [1, 0.5, 1], out, "--normalize-magnitude", *extra)
    got, B = st.load(out)[0], st.load(bp)[0]
    X = [st.load(f)[0] for f in fts]
    for name, (d, b) in B.items():
        if d != "F32":
            continue
        deltas = scaled_models(b, [x[name][1] for x in X])
        zero = np.zeros_like(b)  # deltas are already task vectors: base 0, then add b
        if cmd == "ties":
            mixed = gta_ref(name, zero, deltas, [1, 0.5, 1], kind="magnitude", density=0.4,
                            consensus="sum", normalize=True)
        else:
            mixed = gta_ref(name, zero, deltas, [1, 0.5, 1], kind="magnitude", density=1.0,
                            consensus=None, normalize=False, lam=0.9)
        assert np.array_equal(got[name][1], b + mixed), name


def test_ties_model_scope(tmp_path, rng):
    """--trim-scope model: one top-k over the whole flattened task vector
    (every float tensor in file order), as the TIES paper's code does."""
    shapes = {"a.big": (600, 300), "b.mid": (1000,), "c.small": (64, 8)}
    base = [(k, "F32", rng.standard_normal(s).astype(F32)) for k, s in shapes.items()]
    base.append(("ids", "I64", np.arange(10, dtype=np.int64)))
    fts = []
    for i in range(2):  # quantised deltas: thousands of ties at the global threshold
        m = [(k, d, a + np.round(rng.standard_normal(a.shape) * 2).astype(F32) * F32(0.5 + i))
             if d == "F32" else (k, d, a) for k, d, a in base]
        p = tmp_path / f"ft{i}.safetensors"
        st.write(p, m)
        fts.append(p)
    bp = tmp_path / "base.safetensors"
    st.write(bp, base)
    names = [k for k, d, _ in base if d == "F32"]
    B = {k: a for k, d, a in base}
    X = [st.read(f)[0] for f in fts]
    sizes = [B[k].size for k in names]
    flat_b = np.concatenate([B[k].ravel() for k in names])
    flat_x = [np.concatenate([x[k][1].ravel() for k in names]) for x in X]
    want = gta_ref("model", flat_b, flat_x, [1, 0.7], kind="magnitude", density=0.3,
                   consensus="sum", normalize=True)
    outs = []
    for j in (1, 2, 3):
        out = tmp_path / f"o{j}.safetensors"
        run("ties", bp, fts, [1, 0.7], out, "--density", "0.3", "--trim-scope", "model", "-j", j)
        got = st.read(out)[0]
        flat = np.concatenate([got[k][1].ravel() for k in names])
        assert np.array_equal(flat, want)
        assert np.array_equal(got["ids"][1], B["ids"])
        outs.append(flat.tobytes())
    assert outs[0] == outs[1] == outs[2]
    # and it differs from per-tensor trimming
    out = tmp_path / "tensor.safetensors"
    run("ties", bp, fts, [1, 0.7], out, "--density", "0.3")
    per_tensor = np.concatenate([st.read(out)[0][k][1].ravel() for k in names])
    assert not np.array_equal(per_tensor, want)
    # one density for the whole model: a per-tensor override is refused
    r = ladle("ties", "--base", bp, "--add", f"1:{fts[0]}", "--density", "0.3", "--trim-scope",
              "model", "--set", "b.mid:density=0.5", "-o", tmp_path / "x.safetensors",
              check=False)
    assert r.code == 1 and "whole-model selection" in r.err


@pytest.mark.parametrize("linear", [False, True])
@pytest.mark.parametrize("dtype", ["BF16", "F32"])
def test_della(tmp_path, rng, linear, dtype):
    base, fts = write_family(tmp_path, rng, dtype)
    weights = [1.0, 0.6, 0.8]
    out = tmp_path / "o.safetensors"
    run("della", base, fts, weights, out, "--density", "0.5", "--epsilon", "0.2", "--seed", "7",
        *(["--linear"] if linear else []))
    check(out, base, fts, weights, dtype, kind="della", density=0.5, epsilon=0.2, seed=7,
          consensus=None if linear else "sum", normalize=not linear)


def test_della_rank_spread_and_errors(tmp_path, rng):
    """Larger entries survive more often: p runs from D - E to D + E."""
    b = np.zeros((64, 4096), F32)
    x = np.tile(np.arange(1, 4097, dtype=F32), (64, 1))  # rank = column
    st.write(tmp_path / "b.safetensors", [("w", "F32", b)])
    st.write(tmp_path / "x.safetensors", [("w", "F32", x)])
    out = tmp_path / "o.safetensors"
    run("della", tmp_path / "b.safetensors", [tmp_path / "x.safetensors"], [1], out,
        "--density", "0.5", "--epsilon", "0.3", "--linear", "-j", "2")
    kept = st.read(out)[0]["w"][1] != 0
    lo, hi = kept[:, :512].mean(), kept[:, -512:].mean()
    assert abs(lo - 0.2375) < 0.02 and abs(hi - 0.7625) < 0.02, (lo, hi)
    r = ladle("della", "--base", tmp_path / "b.safetensors", "--add", f"1:{tmp_path / 'x.safetensors'}",
              "--density", "0.1", "--epsilon", "0.2", "-o", tmp_path / "e.safetensors", check=False)
    assert r.code == 1 and "inside (0, 1)" in r.err


def test_della_ranks_every_sort_path(tmp_path, rng):
    """DELLA ranks a row by counting when its keys' high halves span at most
    n bins and at most n / 4 keys have a nonzero low half (those sorted
    apart); else its sort orders by the key's high half first and then
    sorts only the runs whose low halves differ (by insertion up to 32
    elements; a longer one split into its zero low halves and the others,
    sorted by insertion up to 64, else by radix): rows built to take each
    path, with exact ties, zeros and subnormals, against the numpy ranks."""
    w = 3000
    one = np.float32(1.0).view(np.uint32)
    rows = [
        # one run of w: every |d| in [1, 1 + 2^-7) shares its high half
        (one + rng.integers(0, 1 << 16, w)).astype(np.uint32).view(F32),
        # runs of about 12 and of about 47: high halves spread, low halves random
        (one + rng.integers(0, 1 << 24, w)).astype(np.uint32).view(F32),
        (one + rng.integers(0, 1 << 22, w)).astype(np.uint32).view(F32),
        # one run whose low halves are mostly zero: the others (40, 400)
        # sorted by insertion, by radix
        (one + np.where(rng.permutation(w) < 40, rng.integers(1, 1 << 16, w), 0)).astype(
            np.uint32).view(F32),
        (one + np.where(rng.permutation(w) < 400, rng.integers(1, 1 << 16, w), 0)).astype(
            np.uint32).view(F32),
        # bf16-like: low halves zero, so no run needs sorting
        (one + (rng.integers(0, 1 << 10, w) << 16)).astype(np.uint32).view(F32),
        # few distinct values: long runs of exact ties (index order)
        rng.choice(np.array([0.5, 0.25, 0.25 + 2 ** -20, 1e-3], F32), w),
        np.full(w, 0.125, F32),  # one value
        # counted: bf16-like with a third exact zeros (a bin of their own)
        np.where(rng.random(w) < 0.3, F32(0),
                 (one + (rng.integers(0, 1 << 10, w) << 16)).astype(np.uint32).view(F32)),
        # counted: zeros, subnormals (high half 0: the first bin after the
        # zeros') and a tenth of low halves nonzero (sorted apart)
        np.where(rng.random(w) < 0.2, 0, (rng.integers(0, 192, w) << 16) | np.where(
            rng.random(w) < 0.1, rng.integers(1, 1 << 16, w), 0)).astype(np.uint32).view(F32),
        # sorted: the high halves span far more than w bins
        (rng.standard_normal(w) * 2.0 ** rng.integers(-60, 60, w)).astype(F32),
    ]
    d = np.stack(rows) * np.where(rng.random((len(rows), w)) < 0.5, F32(-1), F32(1))
    b = rng.standard_normal(d.shape).astype(F32) * F32(0)
    st.write(tmp_path / "b.safetensors", [("w", "F32", b)])
    st.write(tmp_path / "x.safetensors", [("w", "F32", (b + d).astype(F32))])
    for j in (1, 2):
        out = tmp_path / f"o{j}.safetensors"
        run("della", tmp_path / "b.safetensors", [tmp_path / "x.safetensors"], [1], out,
            "--density", "0.5", "--epsilon", "0.3", "--seed", "3", "-j", j)
        check(out, tmp_path / "b.safetensors", [tmp_path / "x.safetensors"], [1], "F32",
              kind="della", density=0.5, epsilon=0.3, seed=3, consensus="sum", normalize=True)
    # F64 rows rank their fp64 magnitudes (a comparison sort): with a zero
    # base and one task vector of weight 1 the output is d / p exactly
    d64 = d.astype(np.float64)
    st.write(tmp_path / "b64.safetensors", [("w", "F64", b.astype(np.float64))])
    st.write(tmp_path / "x64.safetensors", [("w", "F64", d64)])
    out = tmp_path / "o64.safetensors"
    run("della", tmp_path / "b64.safetensors", [tmp_path / "x64.safetensors"], [1], out,
        "--density", "0.5", "--epsilon", "0.3", "--seed", "3")
    want = d64 * della_factor("w", 0, 3, d64, 0.5, 0.3, True)
    assert np.array_equal(st.read(out)[0]["w"][1], want)


def test_della_longest_row(tmp_path, rng):
    """A row of ladle's longest (LAD_MAX_ROW, 2^17: a 1-D tensor is one row)
    in F32 (ranked by counting) and F64 (a comparison sort): the ranks'
    work fits the kernel scratch (an F64 row of this length overran it
    once; the sanitizer build catches that) and the factors are numpy's."""
    n = 1 << 17
    for dt in (F32, np.float64):
        name = "F32" if dt == F32 else "F64"
        d = np.where(rng.random(n) < 0.2, 0, rng.standard_normal(n) * 1e-3).astype(dt)
        b = np.zeros(n, dt)
        st.write(tmp_path / "b.safetensors", [("w", name, b)])
        st.write(tmp_path / "x.safetensors", [("w", name, d)])
        out = tmp_path / f"o{name}.safetensors"
        run("della", tmp_path / "b.safetensors", [tmp_path / "x.safetensors"], [1], out,
            "--density", "0.4", "--epsilon", "0.2", "--seed", "5")
        fac = della_factor("w", 0, 5, d, 0.4, 0.2, True)
        # zero base, one task vector of weight 1: d times its factor, in
        # the row's type (the factor rounded to fp32 for F32, as the kernel)
        want = d * fac.astype(dt)
        assert np.array_equal(st.read(out)[0]["w"][1], want), name


@pytest.mark.parametrize("cmd,kind,extra,kw", [
    ("ties", "magnitude", ["--density", "0.3"], dict(consensus="sum", normalize=True)),
    ("breadcrumbs", "outliers", ["--density", "0.5", "--gamma", "0.05"], dict(consensus=None)),
    ("dare", "random", ["--density", "0.4", "--sign-consensus"], dict(consensus="sum")),
    ("della", "della", ["--density", "0.5"], dict(consensus="sum", normalize=True)),
])
def test_rescale_l1(tmp_path, rng, cmd, kind, extra, kw):
    """mergekit's rescale (L1 norm matching per tensor and task vector)."""
    base, fts = write_family(tmp_path, rng, "F32")
    weights = [1.0, 0.6, 0.3]
    out = tmp_path / "o.safetensors"
    run(cmd, base, fts, weights, out, *extra, "--rescale", "l1", "-j", "2")
    density = float(extra[1])
    gamma = float(extra[3]) if "--gamma" in extra else 0.01
    check(out, base, fts, weights, "F32", kind=kind, density=density, rescale="l1",
          gamma=gamma, **kw)
    # the L1 factor changes the result (it is not the unscaled merge)
    run(cmd, base, fts, weights, tmp_path / "n.safetensors", *extra, "--rescale", "none")
    assert st.load(str(out))[0]["lm_head.weight"][1].tobytes() != \
        st.load(str(tmp_path / "n.safetensors"))[0]["lm_head.weight"][1].tobytes()


def test_rescale_in_recipes(tmp_path, rng):
    """rescale: true is mergekit's L1 for ties and breadcrumbs; for dare and
    della it stays ladle's 1/p, and rescale: l1 asks for mergekit's."""
    base, fts = write_family(tmp_path, rng, "F32", n=2)
    weights = [1.0, 0.5]
    models = "".join(f"  - model: {f}\n    parameters: {{weight: {w}, density: 0.4}}\n"
                     for f, w in zip(fts, weights))
    for method, rescale, kind, kw in (
            ("ties", "true", "magnitude", dict(consensus="sum", normalize=True, rescale="l1")),
            ("dare_ties", "l1", "random", dict(consensus="sum", rescale="l1")),
            ("dare_linear", "true", "random", dict(consensus=None, rescale=True)),
            ("breadcrumbs", "true", "outliers", dict(consensus=None, rescale="l1"))):
        (tmp_path / "r.yml").write_text(
            f"merge_method: {method}\nbase_model: {base}\nparameters:\n  rescale: {rescale}\n"
            f"models:\n{models}")
        out = tmp_path / f"{method}.safetensors"
        ladle("merge", tmp_path / "r.yml", "-o", out, "-q")
        check(out, base, fts, weights, "F32", kind=kind, density=0.4, **kw)


def test_rescale_refusals(tmp_path, rng):
    base, fts = write_family(tmp_path, rng, "F32", n=1)
    for extra, msg in ((["ties", "--rescale", "p"], "dare and della only"),
                       (["ties", "--rescale", "l1", "--trim-scope", "model"], "--trim-scope"),
                       (["dare", "--density", "0.5", "--rescale", "l2"], "p, l1 or none")):
        r = ladle(extra[0], "--base", base, "--add", f"1:{fts[0]}", *extra[1:], "-o",
                  tmp_path / "x.safetensors", check=False)
        assert r.code == 2 and msg in r.err, r.err


@pytest.mark.parametrize("dtype", ["BF16", "F32"])
@pytest.mark.parametrize("k,tall", [(2, 0.6), (1, 0.3), (3, 1.0)])
def test_consensus_ties(tmp_path, rng, dtype, k, tall):
    base, fts = write_family(tmp_path, rng, dtype)
    weights = [1.0, 0.6, 0.3]
    out = tmp_path / "o.safetensors"
    run("consensus-ties", base, fts, weights, out, "--density", "0.4", "--lambda", "0.8",
        "--k", k, "--tall-lambda", tall)
    check(out, base, fts, weights, dtype, kind="magnitude", density=0.4, consensus="sum",
          normalize=True, lam=0.8, tall_k=k, tall=tall)
    # with k >= 2 the mask removes something, so this is not TIES
    ties = tmp_path / "t.safetensors"
    run("ties", base, fts, weights, ties, "--density", "0.4", "--lambda", "0.8")
    got, t = st.load(out)[0], st.load(ties)[0]
    assert k < 2 or any(got[n][1].tobytes() != t[n][1].tobytes() for n in got)
    # the recipe: the same bytes
    (tmp_path / "r.yml").write_text(
        f"merge_method: consensus_ties\nbase_model: {base}\n"
        f"parameters: {{lambda: 0.8, density: 0.4, k: {k}, tall_lambda: {tall}}}\nmodels:\n"
        + "".join(f"  - model: {p}\n    parameters: {{weight: {w}}}\n"
                  for p, w in zip(fts, weights)))
    ladle("merge", tmp_path / "r.yml", "-o", tmp_path / "r.safetensors", "-q")
    r = st.load(tmp_path / "r.safetensors")[0]
    assert all(r[n][1].tobytes() == got[n][1].tobytes() for n in got)


def test_consensus_ties_paper_setting_and_errors(tmp_path, rng):
    """The TALL paper's consensus TIES: whole-model trim to 20%, disjoint sum."""
    base, fts = write_family(tmp_path, rng, "F32")
    out = tmp_path / "o.safetensors"
    run("consensus-ties", base, fts, [1, 1, 1], out, "--density", "0.2", "--trim-scope",
        "model", "--no-normalize")
    B, _ = st.load(base)
    X = [st.load(f)[0] for f in fts]
    names = [n for n, (d, _) in B.items() if d == "F32"]
    flat_b = np.concatenate([B[n][1].ravel() for n in names])
    flat_x = [np.concatenate([x[n][1].ravel() for n in names]) for x in X]
    want = gta_ref("model", flat_b, flat_x, [1, 1, 1], kind="magnitude", density=0.2,
                   consensus="sum", normalize=False, tall_k=2, tall=0.6)
    got = st.load(out)[0]
    assert np.array_equal(np.concatenate([got[n][1].ravel() for n in names]), want)
    # k = 0 is TIES itself
    run("consensus-ties", base, fts, [1, 1, 1], tmp_path / "k0.safetensors", "--k", "0",
        "--density", "0.5")
    run("ties", base, fts, [1, 1, 1], tmp_path / "t.safetensors", "--density", "0.5")
    a, b = st.load(tmp_path / "k0.safetensors")[0], st.load(tmp_path / "t.safetensors")[0]
    assert all(a[n][1].tobytes() == b[n][1].tobytes() for n in a)
    for extra, msg in ((["--k", "4"], "at most the number of fine-tunes"),
                       (["--tall-lambda", "-1"], "at least 0")):
        r = ladle("consensus-ties", "--base", base, *sum((["--add", f"1:{f}"] for f in fts), []),
                  *extra, "-o", tmp_path / "x.safetensors", check=False)
        assert r.code == 2 and msg in r.err, r.err
    r = ladle("ties", "--base", base, "--add", f"1:{fts[0]}", "--k", "1", "-o",
              tmp_path / "x.safetensors", check=False)
    assert r.code == 2 and "consensus-ties' options" in r.err
    (tmp_path / "r.yml").write_text(f"merge_method: consensus_ties\nbase_model: {base}\n"
                                    f"parameters: {{k: 5}}\nmodels:\n  - model: {fts[0]}\n"
                                    "    parameters: {weight: 1}\n")
    r = ladle("merge", tmp_path / "r.yml", "-o", tmp_path / "x.safetensors", check=False)
    assert r.code == 1 and "k is 5" in r.err
    assert not (tmp_path / "x.safetensors").exists()
