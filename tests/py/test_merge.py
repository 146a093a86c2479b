"""Every merge command against numpy/PyTorch references on generated
llama-shaped models. ladle computes in fp32 with the same operation order as
the reference, so the outputs must match bit for bit; they are also checked
to be within one unit in the last place of the float64 math."""
import json
import os

import numpy as np
import pytest

import st
from conftest import ladle

DTYPES = ["BF16", "F16", "F32"]


def family(tmp_path, rng, n, dtype="BF16", hf=False, shards=1, tie=False):
    base = st.llama(rng, dtype, tie=tie)
    models = [base] + [st.llama(rng, dtype, base=base, tie=tie) for _ in range(n - 1)]
    refs = []
    for i, m in enumerate(models):
        if hf:
            d = tmp_path / f"m{i}"
            st.write_hf(d, m, st.config(tie=tie), shards=shards)
            refs.append(str(d))
        else:
            p = tmp_path / f"m{i}.safetensors"
            st.write(p, m, {"format": "pt"})
            refs.append(str(p))
    return refs


def f32(model):
    tensors, _ = st.load(model)
    return {k: st.to_f32(d, a) for k, (d, a) in tensors.items() if d in ("BF16", "F16", "F32")}


def check(out, expect_f32, expect_f64, dtype, ref_model):
    """out: ladle's output; expect_*: name -> reference math results."""
    got, order = st.load(out)
    src, src_order = st.load(ref_model)
    assert order == src_order, "tensor order differs from the input"
    for name, (d, arr) in src.items():
        gd, garr = got[name]
        if name not in expect_f32:  # non-float: copied unchanged
            assert gd == d and np.array_equal(garr, arr), name
            continue
        assert gd == dtype, (name, gd)
        want = st.round_to(dtype, expect_f32[name])
        assert garr.shape == want.shape
        u = f"u{garr.itemsize}"
        nbad = int(np.count_nonzero(garr.ravel().view(u) != want.ravel().view(u)))
        assert nbad == 0, f"{name}: {nbad} of {garr.size} elements differ from numpy"
        # Against the float64 math: within one ulp of the output dtype, plus
        # the fp32 rounding noise a cancellation can expose (relative to the
        # tensor's scale, not to a result that happens to be near zero).
        e64 = expect_f64[name]
        tol = st.ulp(dtype, e64) + 2.0**-21 * np.abs(e64).max()
        err = np.abs(st.to_f64(dtype, garr) - e64)
        assert (err <= tol).all(), f"{name}: off the float64 math by {err.max()}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_lerp(tmp_path, rng, dtype):
    a, b = family(tmp_path, rng, 2, dtype)
    alpha = 0.3
    out = tmp_path / "out.safetensors"
    ladle("lerp", a, b, "--alpha", alpha, "-o", out, "-q")
    A, B = f32(a), f32(b)
    e32 = {k: np.float32(1 - alpha) * A[k] + np.float32(alpha) * B[k] for k in A}
    e64 = {k: (1 - alpha) * A[k].astype(np.float64) + alpha * B[k].astype(np.float64) for k in A}
    check(out, e32, e64, dtype, a)


def test_lerp_endpoints_reproduce_inputs(tmp_path, rng):
    a, b = family(tmp_path, rng, 2, "BF16")
    for alpha, src in ((0, a), (1, b)):
        out = tmp_path / f"e{alpha}.safetensors"
        ladle("lerp", a, b, "--alpha", alpha, "-o", out, "-q")
        got, _ = st.load(out)
        want, _ = st.load(src)
        for k in want:
            if want[k][0] == "BF16":
                assert np.array_equal(got[k][1], want[k][1]), k


def test_lerp_alpha_range(tmp_path, rng):
    a, b = family(tmp_path, rng, 2)
    out = tmp_path / "x.safetensors"
    r = ladle("lerp", a, b, "--alpha", "1.5", "-o", out, check=False)
    assert r.code == 2 and "--extrapolate" in r.err and not out.exists()
    ladle("lerp", a, b, "--alpha", "1.5", "--extrapolate", "-o", out, "-q")
    A, B = f32(a), f32(b)
    e32 = {k: np.float32(-0.5) * A[k] + np.float32(1.5) * B[k] for k in A}
    e64 = {k: -0.5 * A[k].astype(np.float64) + 1.5 * B[k].astype(np.float64) for k in A}
    check(out, e32, e64, "BF16", a)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weights", [None, [1.0, 2.0, 0.5]])
def test_soup(tmp_path, rng, dtype, weights):
    refs = family(tmp_path, rng, 3, dtype)
    out = tmp_path / "soup.safetensors"
    args = ["soup", *refs, "-o", out, "-q"]
    if weights:
        args += ["--weights", ",".join(map(str, weights))]
    ladle(*args)
    w = weights or [1.0] * 3
    c = [x / sum(w) for x in w]
    M = [f32(r) for r in refs]
    e32, e64 = {}, {}
    for k in M[0]:
        acc = np.float32(c[0]) * M[0][k]
        for i in range(1, 3):
            acc = acc + np.float32(c[i]) * M[i][k]
        e32[k] = acc
        e64[k] = sum(ci * m[k].astype(np.float64) for ci, m in zip(c, M))
    check(out, e32, e64, dtype, refs[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_task_arithmetic(tmp_path, rng, dtype):
    base, ft1, ft2, onto = family(tmp_path, rng, 4, dtype)
    B, F1, F2, C = f32(base), f32(ft1), f32(ft2), f32(onto)
    cases = [
        (["--add", f"0.7:{ft1}", "--add", f"-0.4:{ft2}"], 1.0, None),      # compose + negate
        (["--add", f"1:{ft1}", "--lambda", "0.5"], 0.5, None),              # scaled
        (["--add", f"-1:{ft1}", "--add", f"1:{ft2}", "--onto", onto], 1.0, C),  # analogy
    ]
    for i, (extra, s, c) in enumerate(cases):
        out = tmp_path / f"task{i}.safetensors"
        ladle("task", "--base", base, *extra, "-o", out, "-q")
        lams = [(float(x.split(":")[0]), x.split(":", 1)[1]) for x in extra[1::2]
                if ":" in x and x.split(":", 1)[1] in (ft1, ft2)]
        fts = {ft1: F1, ft2: F2}
        e32, e64 = {}, {}
        for k in B:
            acc = None
            acc64 = 0
            for lam, m in lams:
                term = np.float32(lam) * (fts[m][k] - B[k])
                acc = term if acc is None else acc + term
                acc64 = acc64 + lam * (fts[m][k].astype(np.float64) - B[k].astype(np.float64))
            start = (c or B)[k]
            e32[k] = start + np.float32(s) * acc
            e64[k] = start.astype(np.float64) + s * acc64
        check(out, e32, e64, dtype, onto if c else base)


def test_task_requires_base_and_add(tmp_path, rng):
    base, ft = family(tmp_path, rng, 2)
    out = tmp_path / "t.safetensors"
    assert ladle("task", "--add", f"1:{ft}", "-o", out, check=False).code == 2
    assert ladle("task", "--base", base, "-o", out, check=False).code == 2
    r = ladle("task", "--base", base, "--add", ft, "-o", out, check=False)
    assert r.code == 2 and "WEIGHT:MODEL" in r.err


@pytest.mark.parametrize("layout", ["files", "folders"])
def test_ckpt_orders_steps_numerically(tmp_path, rng, layout):
    run = tmp_path / "run"
    run.mkdir()
    base = st.llama(rng, "F32")
    steps = [5, 999, 1000, 20, 100]
    models = {}
    for s in steps:
        m = st.llama(rng, "F32", base=base)
        models[s] = m
        if layout == "files":
            st.write(run / f"checkpoint-{s}.safetensors", m)
        else:
            st.write_hf(run / f"checkpoint-{s}", m, st.config(dtype="float32"))
    (run / "checkpoint-notanumber.safetensors").write_text("ignored")
    out = tmp_path / "ck.safetensors"
    ladle("ckpt", run, "--last", "3", "-o", out, "-q")
    chosen = [100, 999, 1000]  # numeric order, not 1000 < 20 < 5 < 999
    M = [{n: st.to_f32(d, a) for n, d, a in models[s] if d == "F32"} for s in chosen]
    e32, e64 = {}, {}
    for k in M[0]:
        acc = np.float32(1 / 3) * M[0][k]
        for m in M[1:]:
            acc = acc + np.float32(1 / 3) * m[k]
        e32[k] = acc
        e64[k] = sum(m[k].astype(np.float64) for m in M) / 3
    ref = str(run / "checkpoint-1000.safetensors") if layout == "files" else str(run / "checkpoint-1000")
    check(out, e32, e64, "F32", ref)


def test_ckpt_default_last_and_errors(tmp_path, rng):
    run = tmp_path / "run"
    run.mkdir()
    out = tmp_path / "o.safetensors"
    r = ladle("ckpt", run, "-o", out, check=False)
    assert r.code == 1 and "no checkpoint" in r.err
    base = st.llama(rng, "F32")
    for s in range(1, 4):
        st.write(run / f"checkpoint-{s}.safetensors", st.llama(rng, "F32", base=base))
    r = ladle("ckpt", run, "-o", out)  # default --last 5 with only 3: all, with a note
    assert "only 3 checkpoints" in r.err
    assert json.loads(st.read(out)[1]["ladle_recipe"])["parameters"]["steps"] == [1, 2, 3]


@pytest.mark.parametrize("out_dtype,src", [("f32", "BF16"), ("bf16", "F32"), ("f16", "F32"),
                                           ("bf16", "F16")])
def test_output_dtype(tmp_path, rng, out_dtype, src):
    a, b = family(tmp_path, rng, 2, src)
    out = tmp_path / "o.safetensors"
    ladle("lerp", a, b, "--alpha", "0.25", "--dtype", out_dtype, "-o", out, "-q")
    A, B = f32(a), f32(b)
    e32 = {k: np.float32(0.75) * A[k] + np.float32(0.25) * B[k] for k in A}
    e64 = {k: 0.75 * A[k].astype(np.float64) + 0.25 * B[k].astype(np.float64) for k in A}
    check(out, e32, e64, out_dtype.upper(), a)


def test_f64_tensors_merge_in_f64(tmp_path, rng):
    x = [rng.standard_normal(1000) for _ in range(2)]
    for i in range(2):
        st.write(tmp_path / f"d{i}.safetensors", [("w", "F64", x[i])])
    out = tmp_path / "o.safetensors"
    ladle("lerp", tmp_path / "d0.safetensors", tmp_path / "d1.safetensors", "--alpha", "0.3",
          "-o", out, "-q")
    got = st.read(out)[0]["w"]
    assert got[0] == "F64"
    assert np.array_equal(got[1], 0.7 * x[0] + 0.3 * x[1])


def test_hf_folders_sharded_in_and_out(tmp_path, rng):
    refs = family(tmp_path, rng, 3, "BF16", hf=True, shards=3)
    out = tmp_path / "soup-out"
    ladle("soup", *refs, "-o", out, "--shard-size", "30KB", "-q")
    names = sorted(os.listdir(out))
    shards = [n for n in names if n.endswith(".safetensors")]
    assert len(shards) > 1 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    index = json.load(open(out / "model.safetensors.index.json"))
    assert set(index["weight_map"].values()) == set(shards)
    sizes = {s: sum(a.nbytes for d, a in st.read(out / s)[0].values()) for s in shards}
    assert index["metadata"]["total_size"] == sum(sizes.values())
    for s, n in sizes.items():  # no shard over the limit unless it is one tensor
        assert n <= 30000 or len(st.read(out / s)[0]) == 1
    cfg = json.load(open(out / "config.json"))
    assert cfg["torch_dtype"] == "bfloat16" and cfg["model_type"] == "llama"
    assert "tokenizer.json" in names and "generation_config.json" in names
    card = open(out / "README.md").read()
    assert "soup" in card and refs[0] in card
    meta = st.read(out / shards[0])[1]
    assert meta["format"] == "pt"
    recipe = json.loads(meta["ladle_recipe"])
    assert recipe["method"] == "soup" and [i["path"] for i in recipe["inputs"]] == refs
    assert all(i["bytes"] > 0 for i in recipe["inputs"])
    M = [f32(r) for r in refs]
    e32 = {}
    for k in M[0]:
        acc = np.float32(1 / 3) * M[0][k]
        for m in M[1:]:
            acc = acc + np.float32(1 / 3) * m[k]
        e32[k] = acc
    e64 = {k: sum(m[k].astype(np.float64) for m in M) / 3 for k in M[0]}
    check(out, e32, e64, "BF16", refs[0])


def test_folder_output_unsharded_and_dtype_in_config(tmp_path, rng):
    a, b = family(tmp_path, rng, 2, "BF16", hf=True)
    out = tmp_path / "o"
    ladle("lerp", a, b, "--alpha", "0.5", "--dtype", "f16", "-o", out, "-q")
    assert (out / "model.safetensors").exists()
    assert not (out / "model.safetensors.index.json").exists()
    assert json.load(open(out / "config.json"))["torch_dtype"] == "float16"


def test_tied_head_resolved_from_config(tmp_path, rng):
    base = st.llama(rng, "F32", tie=True)
    tied = tmp_path / "tied"
    st.write_hf(tied, base, st.config(tie=True, dtype="float32"))
    untied_m = st.llama(rng, "F32", base=base, tie=True)
    embed = dict((n, a) for n, d, a in untied_m)["model.embed_tokens.weight"]
    head = embed + rng.standard_normal(embed.shape).astype(np.float32) * 0.01
    untied = tmp_path / "untied"
    st.write_hf(untied, untied_m + [("lm_head.weight", "F32", head)],
                st.config(tie=False, dtype="float32"))
    out = tmp_path / "o"
    ladle("lerp", tied, untied, "--alpha", "0.5", "-o", out, "-q")
    got, _ = st.load(out)
    base_embed = dict((n, a) for n, d, a in base)["model.embed_tokens.weight"]
    want = np.float32(0.5) * base_embed + np.float32(0.5) * head
    assert np.array_equal(got["lm_head.weight"][1], want)
    assert json.load(open(out / "config.json"))["tie_word_embeddings"] is False
    # without a config saying it is tied, a missing head is an error
    bare = tmp_path / "bare.safetensors"
    st.write(bare, base)
    r = ladle("lerp", untied, bare, "--alpha", "0.5", "-o", tmp_path / "x", check=False)
    assert r.code == 1 and "lm_head.weight" in r.err and not (tmp_path / "x").exists()


def test_threads_give_identical_bytes(tmp_path, rng):
    refs = family(tmp_path, rng, 3, "BF16")
    outs = []
    for j in (1, 2, 7):
        out = tmp_path / f"j{j}.safetensors"
        ladle("soup", *refs, "-j", j, "-o", out, "-q")
        tensors, _, order = st.read(out)  # the recipe in the header records -j
        outs.append([tensors[n][1].tobytes() for n in order])
    assert outs[0] == outs[1] == outs[2]


def test_mixed_input_dtypes(tmp_path, rng):
    base = st.llama(rng, "BF16")
    other = [(n, "F16" if d == "BF16" else d, st.round_to("F16", st.to_f32(d, a)) if d == "BF16" else a)
             for n, d, a in st.llama(rng, "BF16", base=base)]
    st.write(tmp_path / "a.safetensors", base)
    st.write(tmp_path / "b.safetensors", other)
    out = tmp_path / "o.safetensors"
    ladle("soup", tmp_path / "a.safetensors", tmp_path / "b.safetensors", "-o", out, "-q")
    A, B = f32(str(tmp_path / "a.safetensors")), f32(str(tmp_path / "b.safetensors"))
    e32 = {k: np.float32(0.5) * A[k] + np.float32(0.5) * B[k] for k in A}
    e64 = {k: (A[k].astype(np.float64) + B[k]) / 2 for k in A}
    check(out, e32, e64, "BF16", str(tmp_path / "a.safetensors"))
