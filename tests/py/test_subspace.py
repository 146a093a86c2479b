"""Subspace methods (issue 15) against float64 references written from the
papers' definitions and FusionBench's code (fusion_bench/method/
isotropic_merging/iso_utils.py: iso_c). ladle computes in fp32 with
LAPACK's SVD and rounds once: within 1e-5 of the task vectors' scale."""
import numpy as np
import pytest

import st
from conftest import ladle

F32 = np.float32
EPS32 = float(np.finfo(np.float32).eps)


def iso_c_ref(b, xs, weights=None, lam=1.0, mean_only=False):
    """Iso-C: M = sum of the weighted task vectors; every singular value
    replaced by their mean, over the nonzero ones' singular vectors (the
    polar factor: unique when M is rank-deficient). Non-matrices: the mean."""
    weights = weights or [1.0] * len(xs)
    b64 = b.astype(np.float64)
    taus = [w * (x.astype(np.float64) - b64) for w, x in zip(weights, xs)]
    if b.ndim != 2 or mean_only:
        merged = sum(taus) / len(taus)
    else:
        M = sum(taus)
        U, S, Vt = np.linalg.svd(M, full_matrices=False)
        r = int((S > np.sqrt(max(M.shape)) * EPS32 * (S[0] if S.size else 0)).sum())
        merged = S.mean() * (U[:, :r] @ Vt[:r]) if r else np.zeros_like(M)
    return b64 + lam * merged


def check(got, want, taus_scale, name):
    err = np.max(np.abs(got.astype(np.float64) - want)) if want.size else 0.0
    assert err <= 1e-5 * max(taus_scale, 1e-30) + 4 * EPS32 * np.max(np.abs(want)), (name, err)


def write(tmp_path, name, tensors):
    st.write(tmp_path / f"{name}.safetensors", [(n, "F32", x.astype(F32)) for n, x in tensors])
    return tmp_path / f"{name}.safetensors"


def test_iso_c_family(tmp_path, rng):
    base = st.llama(rng, "F32", layers=2, hidden=16, inter=24, vocab=32)
    fts = [st.llama(rng, "F32", layers=2, hidden=16, inter=24, vocab=32, base=base,
                    noise=0.03) for _ in range(3)]
    paths = []
    for i, m in enumerate([base] + fts):
        st.write(tmp_path / f"m{i}.safetensors", m)
        paths.append(tmp_path / f"m{i}.safetensors")
    w = [1.0, 0.5, 0.8]
    ladle("iso-c", "--base", paths[0], *paths[1:], "--weights", "1,0.5,0.8", "--lambda",
          "0.7", "--exclude", r"layers\.1\.mlp", "-o", tmp_path / "o.safetensors", "-q")
    got, _ = st.load(str(tmp_path / "o.safetensors"))
    B = {n: x for n, d, x in base if d == "F32"}
    X = [{n: x for n, d, x in m if d == "F32"} for m in fts]
    for n in B:
        mean_only = n in ("model.embed_tokens.weight", "lm_head.weight") or "layers.1.mlp" in n
        want = iso_c_ref(B[n], [x[n] for x in X], w, 0.7, mean_only)
        scale = max(np.max(np.abs(x[n] - B[n])) for x in X)
        check(got[n][1], want, scale, n)
    # the recipe: the same bytes (subspace: false by a filter excludes)
    (tmp_path / "r.yml").write_text(
        f"merge_method: iso_c\nbase_model: {paths[0]}\nparameters:\n  lambda: 0.7\n"
        "  subspace:\n    - filter: layers.1.mlp\n      value: false\n    - value: true\n"
        "models:\n" + "".join(f"  - model: {p}\n    parameters: {{weight: {x}}}\n"
                              for p, x in zip(paths[1:], w)))
    ladle("merge", tmp_path / "r.yml", "-o", tmp_path / "r.safetensors", "-q", "-j", "1")
    r, _ = st.load(str(tmp_path / "r.safetensors"))
    assert all(r[n][1].tobytes() == got[n][1].tobytes() for n in B)


def test_iso_c_ambiguous_svds(tmp_path, rng):
    """Rank-deficient sums, zero task vectors, repeated singular values,
    1 x n and n x 1 matrices: one answer each, the reference's."""
    b = {n: rng.standard_normal(s).astype(F32) * F32(0.1) for n, s in (
        ("lowrank.weight", (20, 12)), ("zero.weight", (8, 8)), ("orth.weight", (10, 10)),
        ("row.weight", (1, 30)), ("col.weight", (30, 1)), ("vec.weight", (7,)))}
    q, _ = np.linalg.qr(rng.standard_normal((10, 10)))
    t1, t2 = {}, {}
    for n, x in b.items():
        if n == "lowrank.weight":  # rank 1 each: the sum has rank 2 of 12
            d1 = np.outer(rng.standard_normal(20), rng.standard_normal(12)) * 0.01
            d2 = np.outer(rng.standard_normal(20), rng.standard_normal(12)) * 0.01
        elif n == "zero.weight":
            d1 = d2 = np.zeros(x.shape)
        elif n == "orth.weight":  # the sum is orthogonal: every singular value equal
            d1 = d2 = q * 0.005
        else:
            d1 = rng.standard_normal(x.shape) * 0.01
            d2 = rng.standard_normal(x.shape) * 0.01
        t1[n] = (x + d1).astype(F32)
        t2[n] = (x + d2).astype(F32)
    pb, p1, p2 = (write(tmp_path, k, list(m.items())) for k, m in
                  (("b", b), ("t1", t1), ("t2", t2)))
    ladle("iso-c", "--base", pb, p1, p2, "-o", tmp_path / "o.safetensors", "-q")
    got, _ = st.load(str(tmp_path / "o.safetensors"))
    for n in b:
        want = iso_c_ref(b[n], [t1[n], t2[n]])
        scale = max(np.max(np.abs(t1[n] - b[n])), np.max(np.abs(t2[n] - b[n])))
        check(got[n][1], want, scale, n)
    assert got["zero.weight"][1].tobytes() == b["zero.weight"].tobytes()
    # orthogonal sum: the spectrum is already flat, Iso-C changes nothing
    assert np.allclose(got["orth.weight"][1], b["orth.weight"] + (t1["orth.weight"] - b[
        "orth.weight"]) * 2, atol=1e-6)


def test_iso_c_refusals(tmp_path, rng):
    b = write(tmp_path, "b", [("w", np.ones((3, 3)))])
    m = write(tmp_path, "m", [("w", np.ones((3, 3)) * 2)])
    for args, msg in ((["iso-c", m], "--base"), (["iso-c", "--base", b], "besides the base"),
                      (["iso-c", "--base", b, m, "--weights", "1,2"], "2 weights for 1"),
                      (["iso-c", "--base", b, m, "--exclude", "("], "regular expression")):
        r = ladle(*args, "-o", tmp_path / "x.safetensors", check=False)
        assert r.code == 2 and msg in r.err, (args, r.err)


def polar(A):
    """W Z^T over the nonzero singular values (unique for dependent columns:
    above sqrt(max(m, n)) eps32 S_max, LAPACK's noise for exact dependence)."""
    W, S, Zt = np.linalg.svd(A, full_matrices=False)
    k = int((S > np.sqrt(max(A.shape)) * EPS32 * S[0]).sum()) if S.size else 0
    return W[:, :k] @ Zt[:k]


def tsv_ref(b, xs, weights=None, lam=1.0, mean_only=False):
    """TSV-M from FusionBench's compute_and_sum_svd_mem_reduction, with the
    vectors of a task's zero singular values dropped (they are arbitrary)."""
    weights = weights or [1.0] * len(xs)
    b64 = b.astype(np.float64)
    taus = [w * (x.astype(np.float64) - b64) for w, x in zip(weights, xs)]
    if b.ndim != 2 or mean_only:
        return b64 + lam * sum(taus) / len(taus)
    m, n = b.shape
    q, T = min(m, n), len(taus)
    k = int(q * (1 / T))
    Ucat, Scat, Vcat = np.zeros((m, q)), np.zeros(q), np.zeros((q, n))
    for t, tau in enumerate(taus):
        U, S, Vt = np.linalg.svd(tau, full_matrices=False)
        tol = np.sqrt(max(m, n)) * EPS32 * (S[0] if S.size else 0)
        for j in range(k):
            if S[j] > tol:
                Ucat[:, t * k + j], Scat[t * k + j], Vcat[t * k + j] = U[:, j], S[j], Vt[j]
    if k == 0:
        return b64
    return b64 + lam * (polar(Ucat) @ np.diag(Scat) @ polar(Vcat))


def test_tsv_family_and_edges(tmp_path, rng):
    shapes = {"model.layers.0.q.weight": (24, 16), "model.layers.0.o.weight": (16, 40),
              "model.norm.weight": (16,), "lowrank.weight": (12, 12), "thin.weight": (1, 9),
              "lm_head.weight": (30, 16)}
    b = {n: (rng.standard_normal(s) * 0.1).astype(F32) for n, s in shapes.items()}
    xs = []
    for t in range(3):
        x = {}
        for n, s in shapes.items():
            d = rng.standard_normal(s) * 0.02
            if n == "lowrank.weight" and t == 1:  # a rank-1 task vector
                d = np.outer(rng.standard_normal(12), rng.standard_normal(12)) * 0.02
            x[n] = (b[n] + d).astype(F32)
        xs.append(x)
    pb = write(tmp_path, "b", list(b.items()))
    ps = [write(tmp_path, f"x{t}", list(x.items())) for t, x in enumerate(xs)]
    w = [1.0, 0.7, 1.3]
    ladle("tsv", "--base", pb, *ps, "--weights", "1,0.7,1.3", "--lambda", "0.9", "-o",
          tmp_path / "o.safetensors", "-q")
    got, _ = st.load(str(tmp_path / "o.safetensors"))
    for n in b:
        want = tsv_ref(b[n], [x[n] for x in xs], w, 0.9, n == "lm_head.weight")
        scale = max(np.max(np.abs(x[n] - b[n])) for x in xs)
        check(got[n][1], want, scale, n)
    assert got["thin.weight"][1].tobytes() == b["thin.weight"].tobytes()  # k = 0: nothing kept
    # the recipe: the same bytes
    (tmp_path / "r.yml").write_text(
        f"merge_method: tsv\nbase_model: {pb}\nparameters: {{lambda: 0.9}}\nmodels:\n" +
        "".join(f"  - model: {p}\n    parameters: {{weight: {x}}}\n" for p, x in zip(ps, w)))
    ladle("merge", tmp_path / "r.yml", "-o", tmp_path / "r.safetensors", "-q")
    r, _ = st.load(str(tmp_path / "r.safetensors"))
    assert all(r[n][1].tobytes() == got[n][1].tobytes() for n in b)


def iso_cts_ref(b, xs, weights=None, lam=1.0, frac=0.8, mean_only=False):
    """Iso-CTS from FusionBench's iso_cts, with the vectors of zero singular
    values dropped (arbitrary, and weighted by the mean there)."""
    weights = weights or [1.0] * len(xs)
    b64 = b.astype(np.float64)
    taus = [w * (x.astype(np.float64) - b64) for w, x in zip(weights, xs)]
    if b.ndim != 2 or mean_only:
        return b64 + lam * sum(taus) / len(taus)
    m, n = b.shape
    q, T = min(m, n), len(taus)
    cs = int(q * frac)
    cs = q - round((q - cs) / T) * T
    nper = int((q - cs) / T)
    U, S, Vt = np.linalg.svd(sum(taus), full_matrices=False)
    tol = np.sqrt(max(m, n)) * EPS32 * S[0]
    Uc = U[:, :cs][:, S[:cs] > tol]  # the nonzero common directions only
    us, vs, svals = [], [], list(S[:cs])
    us += [U[:, j] for j in range(cs) if S[j] > tol]
    vs += [Vt[j] for j in range(cs) if S[j] > tol]
    for tau in taus:
        u, s, vt = np.linalg.svd(tau - Uc @ (Uc.T @ tau), full_matrices=False)
        svals += list(s[:nper])  # zero by M's scale (a residual may be all noise)
        us += [u[:, j] for j in range(nper) if s[j] > tol]
        vs += [vt[j] for j in range(nper) if s[j] > tol]
    if not us:
        return b64
    mean = sum(svals) / q
    return b64 + lam * mean * (polar(np.stack(us, 1)) @ polar(np.stack(vs)))


@pytest.mark.parametrize("frac", [0.8, 0.5, 0.0, 1.0])
def test_iso_cts(tmp_path, rng, frac):
    shapes = {"a.weight": (24, 16), "b.weight": (16, 40), "norm.weight": (16,),
              "low.weight": (12, 10), "embed_tokens.weight": (30, 16)}
    b = {n: (rng.standard_normal(s) * 0.1).astype(F32) for n, s in shapes.items()}
    xs = []
    for t in range(3):
        x = {}
        for n, s in shapes.items():
            d = rng.standard_normal(s) * 0.02
            if n == "low.weight":  # rank-1 task vectors: a rank-3 sum
                d = np.outer(rng.standard_normal(s[0]), rng.standard_normal(s[1])) * 0.02
            x[n] = (b[n] + d).astype(F32)
        xs.append(x)
    pb = write(tmp_path, "b", list(b.items()))
    ps = [write(tmp_path, f"x{t}", list(x.items())) for t, x in enumerate(xs)]
    ladle("iso-cts", "--base", pb, *ps, "--common-space-fraction", str(frac), "--lambda",
          "1.2", "-o", tmp_path / "o.safetensors", "-q")
    got, _ = st.load(str(tmp_path / "o.safetensors"))
    for n in b:
        want = iso_cts_ref(b[n], [x[n] for x in xs], None, 1.2, frac, "embed" in n)
        scale = max(np.max(np.abs(x[n] - b[n])) for x in xs)
        check(got[n][1], want, scale, n)
    (tmp_path / "r.yml").write_text(
        f"merge_method: iso_cts\nbase_model: {pb}\n"
        f"parameters: {{lambda: 1.2, common_space_fraction: {frac}}}\nmodels:\n" +
        "".join(f"  - model: {p}\n" for p in ps))
    ladle("merge", tmp_path / "r.yml", "-o", tmp_path / "r.safetensors", "-q")
    r, _ = st.load(str(tmp_path / "r.safetensors"))
    assert all(r[n][1].tobytes() == got[n][1].tobytes() for n in b)


def test_iso_cts_refusals(tmp_path, rng):
    b = write(tmp_path, "b", [("w", np.ones((3, 3)))])
    m = write(tmp_path, "m", [("w", np.ones((3, 3)) * 2)])
    r = ladle("iso-cts", "--base", b, m, "--common-space-fraction", "1.5", "-o",
              tmp_path / "x.safetensors", check=False)
    assert r.code == 2 and "[0, 1]" in r.err
    (tmp_path / "r.yml").write_text(f"merge_method: iso_cts\nbase_model: {b}\n"
                                    "parameters: {common_space_fraction: -0.1}\n"
                                    f"models:\n  - model: {m}\n")
    r = ladle("merge", tmp_path / "r.yml", "-o", tmp_path / "x.safetensors", check=False)
    assert r.code == 1 and "outside [0, 1]" in r.err
    assert not (tmp_path / "x.safetensors").exists()


def consensus_ref(b, xs, weights, lam, tall, k):
    """Consensus task arithmetic from its definition (TALL masks as
    FusionBench's generate_task_masks), in fp32 in ladle's order."""
    taus = [(F32(w) * (x - b).astype(F32)).astype(F32) for w, x in zip(weights, xs)]
    mtl = np.zeros_like(b)
    for t in taus:
        mtl = (mtl + t).astype(F32)
    count = sum((np.abs(t) > F32(tall) * np.abs((mtl - t).astype(F32))).astype(np.int32)
                for t in taus)
    kept = np.where(count >= k, mtl, F32(0)).astype(F32)
    return (b + (F32(lam) * kept).astype(F32)).astype(F32)


@pytest.mark.parametrize("k,tall", [(2, 0.6), (0, 0.6), (3, 0.2), (1, 1.0)])
def test_consensus_ta(tmp_path, rng, k, tall):
    base = st.llama(rng, "F32", layers=2, hidden=16, inter=24, vocab=32)
    fts = [st.llama(rng, "F32", layers=2, hidden=16, inter=24, vocab=32, base=base,
                    noise=0.03) for _ in range(3)]
    # sparse task vectors, so the masks disagree
    fts = [[(n, d, np.where(rng.random(x.shape) < 0.5, y, x).astype(x.dtype))
            for (n, d, x), (_, _, y) in zip(m, base)] for m in fts]
    paths = []
    for i, m in enumerate([base] + fts):
        st.write(tmp_path / f"m{i}.safetensors", m)
        paths.append(tmp_path / f"m{i}.safetensors")
    w = [1.0, 0.5, 0.8]
    ladle("consensus-ta", "--base", paths[0], *paths[1:], "--weights", "1,0.5,0.8", "--lambda",
          "0.9", "--k", str(k), "--tall-lambda", str(tall), "-o", tmp_path / "o.safetensors",
          "-q")
    got, _ = st.load(str(tmp_path / "o.safetensors"))
    B = {n: x for n, d, x in base if d == "F32"}
    X = [{n: x for n, d, x in m if d == "F32"} for m in fts]
    for n in B:
        want = consensus_ref(B[n], [x[n] for x in X], w, 0.9, tall, k)
        assert got[n][1].tobytes() == want.tobytes(), n
    (tmp_path / "r.yml").write_text(
        f"merge_method: consensus_ta\nbase_model: {paths[0]}\n"
        f"parameters: {{lambda: 0.9, k: {k}, tall_lambda: {tall}}}\nmodels:\n" +
        "".join(f"  - model: {p}\n    parameters: {{weight: {x}}}\n"
                for p, x in zip(paths[1:], w)))
    ladle("merge", tmp_path / "r.yml", "-o", tmp_path / "r.safetensors", "-q")
    r, _ = st.load(str(tmp_path / "r.safetensors"))
    assert all(r[n][1].tobytes() == got[n][1].tobytes() for n in B)
    r = ladle("consensus-ta", "--base", paths[0], *paths[1:], "--k", "4", "-o",
              tmp_path / "x.safetensors", check=False)
    assert r.code == 2 and "at most the number of fine-tunes" in r.err


def wudi_ref(b, xs, weights, lam, iters, lr, mean_only=False):
    """WUDI from the paper's objective, as FusionBench's wudi_merging runs it:
    torch autograd on sum_i |(X - tau_i) tau_i^T|^2 / |tau_i|^2 and
    torch.optim.Adam, here in float64; zero task vectors left out (0 / 0)."""
    import torch
    b64 = b.astype(np.float64)
    taus = [w * (x.astype(np.float64) - b64) for w, x in zip(weights, xs)]
    if b.ndim != 2 or mean_only:
        return b64 + lam * sum(taus) / len(taus)
    tvs = torch.tensor(np.stack(taus))
    X = torch.nn.Parameter(tvs.sum(0).clone())
    live = [i for i in range(len(taus)) if float((tvs[i] ** 2).sum()) > 0]
    tvs = tvs[live]
    norms = (tvs.reshape(len(live), -1) ** 2).sum(-1)
    opt = torch.optim.Adam([X], lr=lr)
    for _ in range(iters if live else 0):
        prod = torch.matmul(X.unsqueeze(0) - tvs, tvs.transpose(1, 2))
        loss = ((prod ** 2) / norms[:, None, None]).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return b64 + lam * X.detach().numpy()


@pytest.mark.parametrize("iters,lr", [(300, 1e-5), (60, 3e-4)])
def test_wudi(tmp_path, rng, iters, lr):
    # square, tall, wide (n > 2 T m: the stacked form), a zero task vector,
    # a rank-1 one, a vector, an excluded head
    shapes = {"model.layers.0.q.weight": (12, 12), "model.layers.0.down.weight": (20, 6),
              "model.layers.0.up.weight": (2, 30), "zero.weight": (5, 7),
              "lowrank.weight": (9, 9), "model.norm.weight": (12,), "lm_head.weight": (14, 12)}
    b = {n: (rng.standard_normal(s) * 0.1).astype(F32) for n, s in shapes.items()}
    xs = []
    for t in range(3):
        x = {}
        for n, s in shapes.items():
            d = rng.standard_normal(s) * 0.01
            if n == "zero.weight" and t == 1:
                d = np.zeros(s)
            if n == "lowrank.weight" and t == 0:
                d = np.outer(rng.standard_normal(9), rng.standard_normal(9)) * 0.01
            x[n] = (b[n] + d).astype(F32)
        xs.append(x)
    pb = write(tmp_path, "b", list(b.items()))
    ps = [write(tmp_path, f"x{t}", list(x.items())) for t, x in enumerate(xs)]
    w = [1.0, 0.6, 1.2]
    ladle("wudi", "--base", pb, *ps, "--weights", "1,0.6,1.2", "--lambda", "0.8",
          "--iter-num", str(iters), "--lr", str(lr), "-o", tmp_path / "o.safetensors", "-q")
    got, _ = st.load(str(tmp_path / "o.safetensors"))
    for n in b:
        want = wudi_ref(b[n], [x[n] for x in xs], w, 0.8, iters, lr, n == "lm_head.weight")
        scale = max(np.max(np.abs(x[n] - b[n])) for x in xs)
        check(got[n][1], want, scale, n)
        if b[n].ndim == 2 and n != "lm_head.weight":  # the optimisation moved it
            tas = b[n] + 0.8 * sum(wi * (x[n] - b[n]) for wi, x in zip(w, xs))
            assert np.max(np.abs(got[n][1] - tas)) > 1e-3 * scale, n
    (tmp_path / "r.yml").write_text(
        f"merge_method: wudi\nbase_model: {pb}\n"
        f"parameters: {{lambda: 0.8, iter_num: {iters}, lr: {lr}}}\nmodels:\n" +
        "".join(f"  - model: {p}\n    parameters: {{weight: {x}}}\n" for p, x in zip(ps, w)))
    ladle("merge", tmp_path / "r.yml", "-o", tmp_path / "r.safetensors", "-q")
    r, _ = st.load(str(tmp_path / "r.safetensors"))
    assert all(r[n][1].tobytes() == got[n][1].tobytes() for n in b)


def test_wudi_refusals(tmp_path, rng):
    b = write(tmp_path, "b", [("w", np.ones((3, 3)))])
    m = write(tmp_path, "m", [("w", np.ones((3, 3)) * 2)])
    for args, msg in ((["--lr", "0"], "--lr must be above 0"), (["--iter-num", "-1"], "--iter-num"),
                      (["--lr", "nan"], "--lr")):
        r = ladle("wudi", "--base", b, m, *args, "-o", tmp_path / "x.safetensors", check=False)
        assert r.code == 2 and msg in r.err, (args, r.err)
    (tmp_path / "r.yml").write_text(f"merge_method: wudi\nbase_model: {b}\n"
                                    "parameters: {iter_num: 2.5}\n"
                                    f"models:\n  - model: {m}\n")
    r = ladle("merge", tmp_path / "r.yml", "-o", tmp_path / "x.safetensors", check=False)
    assert r.code == 1 and "iter_num" in r.err
    assert not (tmp_path / "x.safetensors").exists()


@pytest.mark.parametrize("cmd", ["tsv", "iso-cts"])
def test_duplicate_tasks_and_unrelated_subspaces(tmp_path, rng, cmd):
    """Two identical fine-tunes stack the same singular vectors twice (exactly
    dependent: dropped from the polar factors); four unrelated full-rank
    ones give a stack close to dependent (kept: each is a real direction)."""
    m, n = 48, 48
    b = (rng.standard_normal((m, n)) * 0.1).astype(F32)
    same = (b + rng.standard_normal((m, n)) * 0.02).astype(F32)
    other = (b + rng.standard_normal((m, n)) * 0.02).astype(F32)
    fam = {"dup": [same, same, other]}
    fam["far"] = [(b + rng.standard_normal((m, n)) * 0.02).astype(F32) for _ in range(4)]
    for name, xs in fam.items():
        pb = write(tmp_path, "b", [("w", b)])
        ps = [write(tmp_path, f"{name}{t}", [("w", x)]) for t, x in enumerate(xs)]
        ladle(cmd, "--base", pb, *ps, "-o", tmp_path / f"{name}.safetensors", "-q")
        got = st.load(str(tmp_path / f"{name}.safetensors"))[0]["w"][1]
        want = (tsv_ref if cmd == "tsv" else iso_cts_ref)(b, xs)
        check(got, want, max(np.max(np.abs(x - b)) for x in xs), (cmd, name))


def test_dry_run_shows_the_treatment(tmp_path, rng):
    base = st.llama(rng, "F32", layers=1, hidden=16, inter=24, vocab=32)
    ft = st.llama(rng, "F32", layers=1, hidden=16, inter=24, vocab=32, base=base, noise=0.03)
    st.write(tmp_path / "b.safetensors", base)
    st.write(tmp_path / "f.safetensors", ft)
    for cmd in ("iso-c", "tsv", "iso-cts", "wudi"):
        r = ladle(cmd, "--base", tmp_path / "b.safetensors", tmp_path / "f.safetensors",
                  tmp_path / "f.safetensors", "--exclude", "v_proj", "--dry-run", "-o",
                  tmp_path / "x.safetensors")
        rows = {line.split()[0]: line for line in r.out.splitlines() if line.startswith("  ")}
        assert "treatment=subspace" in rows["model.layers.0.self_attn.q_proj.weight"], cmd
        for mean in ("model.layers.0.self_attn.v_proj.weight", "model.embed_tokens.weight",
                     "model.norm.weight"):
            assert "treatment=mean" in rows[mean], (cmd, mean)
        assert not (tmp_path / "x.safetensors").exists()


@pytest.mark.parametrize("cmd", ["iso-c", "tsv", "iso-cts", "wudi"])
def test_non_finite_refused(tmp_path, cmd):
    b = write(tmp_path, "b", [("w", np.ones((6, 6)))])
    x = np.full((6, 6), 2.0)
    x[2, 3] = np.nan if cmd != "tsv" else np.inf
    p1, p2 = write(tmp_path, "x", [("w", x)]), write(tmp_path, "y", [("w", np.ones((6, 6)) * 3)])
    r = ladle(cmd, "--base", b, p1, p2, "-o", tmp_path / "o.safetensors", check=False)
    assert r.code == 1 and "NaN or Inf" in r.err and "tensor 'w'" in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1
    assert not (tmp_path / "o.safetensors").exists()
