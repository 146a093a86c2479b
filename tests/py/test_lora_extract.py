"""ladle lora extract: adapters checked against numpy's SVD of each delta
(the Eckart-Young optimum mergekit-extract-lora computes with
torch.linalg.svd), PEFT's key and config conventions, and the round trip
through ladle lora apply (itself tested against PEFT's definitions)."""
import json
import re

import numpy as np
import pytest

import st
from conftest import ladle

F32 = np.float32


def family(tmp_path, rng, rank=4, noise=0.0, dtype="F32", decay=None):
    """A base and a fine-tune whose weight deltas are rank `rank` (plus
    noise), with a changed bias, changed norms, an unchanged tensor and
    changed embeddings and head."""
    base = st.llama(rng, dtype, layers=2, hidden=32, inter=48, vocab=64)
    base.append(("model.layers.0.self_attn.q_proj.bias", dtype,
                 st.round_to(dtype, rng.standard_normal(32).astype(F32))))
    ft = []
    for name, d, x in base:
        x32 = st.to_f32(d, x) if d in ("F32", "BF16", "F16") else x
        if d not in ("F32", "BF16", "F16") or name == "model.layers.1.mlp.up_proj.weight":
            ft.append((name, d, x))  # unchanged
            continue
        if x.ndim == 2:
            m, n = x.shape
            s = (decay ** np.arange(rank) if decay else np.ones(rank)).astype(F32)
            delta = (rng.standard_normal((m, rank)) * s) @ rng.standard_normal((rank, n)) * 0.02
            delta += rng.standard_normal((m, n)) * noise
        else:
            delta = rng.standard_normal(x.shape) * 0.01
        ft.append((name, d, st.round_to(d, (x32 + delta).astype(F32))))
    st.write(tmp_path / "base.safetensors", base)
    st.write(tmp_path / "ft.safetensors", ft)
    as_f32 = lambda m: {n: st.to_f32(d, x) for n, d, x in m if d in ("F32", "BF16", "F16")}
    return as_f32(base), as_f32(ft)


def extract(tmp_path, *extra, out="ad"):
    """Exact SVDs unless the caller asks for --randomized (the default)."""
    if "--randomized" not in extra:
        extra = ("--exact", *extra)
    r = ladle("lora", "extract", "--base", tmp_path / "base.safetensors", "--fine-tuned",
              tmp_path / "ft.safetensors", "-o", tmp_path / out, *extra)
    ad, _ = st.load(str(tmp_path / out / "adapter_model.safetensors"))
    cfg = json.loads((tmp_path / out / "adapter_config.json").read_text())
    m = re.search(r"relative error ([0-9.e+-]+)", r.err)
    return ad, cfg, float(m.group(1)) if m else None


def optimum(D, k):
    """numpy's truncated SVD: the best rank-k approximation, and its error^2."""
    U, S, Vt = np.linalg.svd(D.astype(np.float64), full_matrices=False)
    return (U[:, :k] * S[:k]) @ Vt[:k], float((S[k:] ** 2).sum())


LORA = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_exact_extract_matches_numpy_svd(tmp_path, rng):
    base, ft = family(tmp_path, rng, rank=6, noise=0.002)
    ad, cfg, reported = extract(tmp_path, "--rank", "4")
    err2 = norm2 = 0.0
    for name in base:
        D = (ft[name] - base[name]).astype(F32)
        mod = name.rsplit(".", 1)[0]
        key = f"base_model.model.{mod}"
        if not D.any():
            assert not any(k.startswith(key + ".") or k == f"base_model.model.{name}"
                           for k in ad), name
            continue
        if D.ndim == 2 and name.split(".")[-2] in LORA:
            A, B = ad[key + ".lora_A.weight"][1], ad[key + ".lora_B.weight"][1]
            assert A.shape == (4, D.shape[1]) and B.shape == (D.shape[0], 4)
            want, e2 = optimum(D, 4)
            got = B.astype(np.float64) @ A.astype(np.float64)
            # LAPACK in fp32 vs numpy in fp64: the same subspace, to fp32 precision
            assert np.linalg.norm(got - want) <= 1e-4 * np.linalg.norm(D), name
            # distribute_scale: A and B carry sqrt(S) each (equal row/column norms)
            assert np.allclose(np.linalg.norm(A, axis=1), np.linalg.norm(B, axis=0), rtol=1e-3)
            err2 += e2
            norm2 += float((D.astype(np.float64) ** 2).sum())
        elif name.endswith("q_proj.bias"):
            assert ad[key + ".lora_B.bias"][1].tobytes() == D.tobytes()
        else:  # full copies: the fine-tune's tensor
            assert ad[f"base_model.model.{name}"][1].tobytes() == ft[name].tobytes(), name
    assert reported == pytest.approx(np.sqrt(err2 / norm2), rel=2e-3)
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 4 and cfg["lora_alpha"] == 4
    assert sorted(cfg["target_modules"]) == sorted(LORA)
    assert cfg["rank_pattern"] == {} and cfg["lora_bias"] is True
    assert set(cfg["modules_to_save"]) == {"embed_tokens", "input_layernorm",
                                           "post_attention_layernorm", "norm", "lm_head"}
    assert "task_type" not in cfg and not cfg["use_rslora"]  # a bare file: no config


def test_round_trip_through_apply(tmp_path, rng):
    """Extract at the deltas' own rank, then apply: the fine-tune back, LoRA
    modules within fp32 rounding, everything else exact."""
    base, ft = family(tmp_path, rng, rank=3)
    extract(tmp_path, "--rank", "3", "-q")
    ladle("lora", "apply", tmp_path / "base.safetensors", tmp_path / "ad", "-o",
          tmp_path / "back.safetensors", "-q")
    back, _ = st.load(str(tmp_path / "back.safetensors"))
    for name in base:
        got, want = back[name][1], ft[name]
        if want.ndim == 2 and name.split(".")[-2] in LORA:
            D = want - base[name]
            assert np.linalg.norm(got - want) <= 1e-5 * np.linalg.norm(D) + 1e-7, name
        elif name.endswith(".bias"):  # base + 1 * delta, in fp32
            assert got.tobytes() == (base[name] + (want - base[name])).astype(F32).tobytes()
        else:
            assert got.tobytes() == want.tobytes(), name


@pytest.mark.parametrize("dtype", ["BF16"])
def test_rank_truncation_error_measured(tmp_path, rng, dtype):
    """A decaying spectrum: the error at each rank is numpy's optimum (the
    adapter in bf16 adds its rounding), and it falls as the rank grows."""
    base, ft = family(tmp_path, rng, rank=16, decay=0.7, dtype=dtype)
    errs = []
    for k in (2, 4, 8):
        _, _, reported = extract(tmp_path, "--rank", str(k), "--force", out=f"ad{k}")
        e2 = n2 = 0.0
        for name in base:
            D = ft[name] - base[name]
            if D.ndim == 2 and name.split(".")[-2] in LORA and D.any():
                e2 += optimum(D, min(k, *D.shape))[1]
                n2 += float((D.astype(np.float64) ** 2).sum())
        assert reported == pytest.approx(np.sqrt(e2 / n2), rel=1e-2)
        errs.append(reported)
    assert errs[0] > errs[1] > errs[2]


def test_randomized(tmp_path, rng):
    base, ft = family(tmp_path, rng, rank=12, decay=0.6, noise=0.0005)
    _, _, exact = extract(tmp_path, "--rank", "4", out="ex")
    a1, _, e1 = extract(tmp_path, "--rank", "4", "--randomized", out="r1")
    # the default is the randomized SVD
    ladle("lora", "extract", "--base", tmp_path / "base.safetensors", "--fine-tuned",
          tmp_path / "ft.safetensors", "-o", tmp_path / "r0", "--rank", "4", "-q")
    a0, _ = st.load(str(tmp_path / "r0" / "adapter_model.safetensors"))
    assert all(a0[k][1].tobytes() == a1[k][1].tobytes() for k in a1)
    a2, _, _ = extract(tmp_path, "--rank", "4", "--randomized", "-q", out="r2")
    a3, _, e3 = extract(tmp_path, "--rank", "4", "--randomized", "--seed", "7", out="r3")
    assert e1 <= exact * 1.02 and e3 <= exact * 1.02  # near-optimal
    k = "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight"
    assert a1[k][1].tobytes() == a2[k][1].tobytes()  # reproducible
    # another seed: another basis of (nearly) the same subspace
    B1 = a1[k.replace("lora_A", "lora_B")][1] @ a1[k][1]
    B3 = a3[k.replace("lora_A", "lora_B")][1] @ a3[k][1]
    assert np.linalg.norm(B1 - B3) <= 0.05 * np.linalg.norm(B1)


def test_sv_epsilon_embed_lora_filters(tmp_path, rng):
    base, ft = family(tmp_path, rng, rank=2)
    # rank-2 deltas: singular values beyond the 2nd are ~0, so --sv-epsilon
    # cuts every LoRA to rank 2: rank_pattern says so
    ad, cfg, _ = extract(tmp_path, "--rank", "8", "--sv-epsilon", "1e-3", "--embed-lora",
                         "--exclude", r"layers\.1\.", "-q")
    assert cfg["r"] == 2 and cfg["lora_alpha"] == 2 and cfg["rank_pattern"] == {}
    emb = "base_model.model.model.embed_tokens"
    A, B = ad[emb + ".lora_embedding_A"][1], ad[emb + ".lora_embedding_B"][1]
    D = ft["model.embed_tokens.weight"] - base["model.embed_tokens.weight"]
    assert A.shape == (2, 64) and B.shape == (32, 2)  # PEFT's: [r, vocab], [hidden, r]
    assert np.linalg.norm((B @ A).T - D) <= 1e-4 * np.linalg.norm(D)
    assert "base_model.model.lm_head.lora_A.weight" in ad
    assert not any("layers.1." in k for k in ad)
    assert "embed_tokens" in cfg["target_modules"] and "lm_head" in cfg["target_modules"]
    # the adapter applies (embedding form included) to within rounding
    ladle("lora", "apply", tmp_path / "base.safetensors", tmp_path / "ad", "-o",
          tmp_path / "back.safetensors", "-q")
    back, _ = st.load(str(tmp_path / "back.safetensors"))
    got = back["model.embed_tokens.weight"][1]
    assert np.linalg.norm(got - ft["model.embed_tokens.weight"]) <= 1e-4 * np.linalg.norm(D)
    # a rank above a matrix's size is capped per module (rank_pattern)
    ad, cfg, _ = extract(tmp_path, "--rank", "40", "--include", "(k|q)_proj.weight", "-q",
                         "--force")
    assert cfg["r"] == 32 and sorted(cfg["target_modules"]) == ["k_proj", "q_proj"]
    assert ad["base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"][1].shape == \
        (16, 32)
    assert cfg["rank_pattern"] == {"model.layers.0.self_attn.k_proj": 16,
                                   "model.layers.1.self_attn.k_proj": 16}
    assert cfg["alpha_pattern"] == cfg["rank_pattern"]


def test_refusals(tmp_path, rng):
    base, ft = family(tmp_path, rng)
    out = tmp_path / "x"
    args = ["lora", "extract", "--base", tmp_path / "base.safetensors", "--fine-tuned"]
    r = ladle(*args, tmp_path / "base.safetensors", "-o", out, check=False)
    assert r.code == 1 and "nothing to extract" in r.err and not out.exists()
    r = ladle(*args, tmp_path / "ft.safetensors", check=False)
    assert r.code == 2 and "-o ADAPTER_DIR" in r.err
    r = ladle(*args, tmp_path / "ft.safetensors", "-o", out, "--include", "(", check=False)
    assert r.code == 2 and "regular expression" in r.err and not out.exists()
    r = ladle(*args, tmp_path / "ft.safetensors", "-o", out, "--rank", "0", check=False)
    assert r.code == 2 and "--rank" in r.err
    # another shape, a missing tensor, a changed integer tensor
    for name, mutate, msg in (
            ("shape", lambda m: [(n, d, x[:-1] if n == "lm_head.weight" else x)
                                 for n, d, x in m], "another shape"),
            ("missing", lambda m: m + [("extra.weight", "F32", np.ones(3, F32))],
             "not in"),
            ("ints", lambda m: [(n, d, x + 1 if d == "I64" else x) for n, d, x in m],
             "carries float tensors only")):
        t, _, order = st.read(str(tmp_path / "ft.safetensors"))
        st.write(tmp_path / f"{name}.safetensors", mutate([(n, *t[n]) for n in order]))
        r = ladle(*args, tmp_path / f"{name}.safetensors", "-o", out, check=False)
        assert r.code == 1 and msg in r.err, (name, r.err)
        assert not out.exists()
    # an existing adapter is replaced only with --force
    extract(tmp_path, "--rank", "2", "-q", out="y")
    r = ladle(*args, tmp_path / "ft.safetensors", "-o", tmp_path / "y", check=False)
    assert r.code == 1 and "--force" in r.err


def test_apply_refuses_a_weighted_full_copy(tmp_path, rng):
    family(tmp_path, rng)
    extract(tmp_path, "--rank", "2", "-q")
    r = ladle("lora", "apply", tmp_path / "base.safetensors", tmp_path / "ad", "--scale", "0.5",
              "-o", tmp_path / "x.safetensors", check=False)
    assert r.code == 1 and "modules_to_save" in r.err and "weight 1" in r.err
