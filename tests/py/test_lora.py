"""LoRA adapters merged into their base (ladle lora apply, BASE+ADAPTER
references): W + w * s * B @ A, written here from PEFT's definitions
(LoraLayer.get_delta_weight: B @ A * scaling, scaling = lora_alpha / r, or
/ sqrt(r) with use_rslora; transposed for fan_in_fan_out and embeddings;
alpha_pattern by PEFT's get_pattern_key), with adapters laid out as PEFT
saves them (base_model.model.MODULE.lora_A.weight, ...)."""
import os

import numpy as np
import pytest

import st
from conftest import ladle
from lora_family import F32, HID, INTER, MODS, VOCAB, adapter, applied, base_model


@pytest.mark.parametrize("rslora", [False, True])
def test_apply_is_base_plus_scaled_delta(tmp_path, rng, rslora):
    base = base_model(tmp_path, rng)
    cfg = {"use_rslora": rslora, "alpha_pattern": {"v_proj": 3.0}}
    mats = adapter(tmp_path / "ad", rng, MODS, r=4, alpha=8.0, cfg=cfg)
    ladle("lora", "apply", tmp_path / "base", tmp_path / "ad", "-o", tmp_path / "o", "-q")
    got, _ = st.load(str(tmp_path / "o"))
    for name, (d, W) in base.items():
        mod = name[:-len(".weight")]
        if mod in mats:
            alpha = 3.0 if mod.endswith("v_proj") else 8.0
            s = np.float32(alpha / (np.sqrt(4) if rslora else 4))
            want = applied(W, *mats[mod], s)
            assert got[name][1].tobytes() == want.tobytes(), name
            # and the PEFT formula in float64, to the float32 rounding
            ref = W.astype(np.float64) + alpha / (np.sqrt(4) if rslora else 4) * (
                mats[mod][1].astype(np.float64) @ mats[mod][0].astype(np.float64))
            assert np.allclose(got[name][1], ref, rtol=1e-5, atol=1e-6), name
        else:
            assert got[name][1].tobytes() == W.tobytes(), name


def test_bf16_base_rounded_once(tmp_path, rng):
    base = base_model(tmp_path, rng, "BF16")
    mats = adapter(tmp_path / "ad", rng, MODS, dtype="BF16")
    ladle("lora", "apply", tmp_path / "base", tmp_path / "ad", "-o", tmp_path / "o", "-q")
    got, _ = st.load(str(tmp_path / "o"))
    for mod, (A, B) in mats.items():
        d, W = base[mod + ".weight"]
        want = st.round_to("BF16", applied(st.to_f32(d, W), A, B, 2.0))
        assert got[mod + ".weight"][1].tobytes() == want.tobytes(), mod


def test_weights_scale_transposed_and_embeddings(tmp_path, rng):
    base = base_model(tmp_path, rng)
    m1 = adapter(tmp_path / "a1", rng, {"model.layers.0.self_attn.q_proj": (HID, HID),
                                        "model.embed_tokens": (HID, VOCAB)}, emb=True)
    m2 = adapter(tmp_path / "a2", rng, {"model.layers.0.self_attn.q_proj": (HID, HID)}, r=2,
                 alpha=1.0)
    ladle("lora", "apply", tmp_path / "base", tmp_path / "a1", tmp_path / "a2", "--weights",
          "0.5,2", "--scale", "3", "-o", tmp_path / "o.safetensors", "-q")
    got, _ = st.load(str(tmp_path / "o.safetensors"))
    q = "model.layers.0.self_attn.q_proj"
    want = applied(base[q + ".weight"][1], *m1[q], np.float32(3 * 0.5 * 8 / 4))
    want = applied(want, *m2[q], np.float32(3 * 2 * 1.0 / 2))  # in the order given
    assert got[q + ".weight"][1].tobytes() == want.tobytes()
    e = "model.embed_tokens"  # embedding: A [r, vocab], B [hidden, r], W [vocab, hidden]
    want = applied(base[e + ".weight"][1], *m1[e], np.float32(3 * 0.5 * 2), transposed=True)
    assert got[e + ".weight"][1].tobytes() == want.tobytes()
    # fan_in_fan_out: GPT-2's Conv1D stores W as [in, out]
    t = [("h.0.attn.c_attn.weight", "F32", rng.standard_normal((HID, 3 * HID)).astype(F32))]
    st.write(tmp_path / "gpt2.safetensors", t)
    m3 = adapter(tmp_path / "a3", rng, {"h.0.attn.c_attn": (3 * HID, HID)},
                 cfg={"fan_in_fan_out": True})
    ladle("lora", "apply", tmp_path / "gpt2.safetensors", tmp_path / "a3", "-o",
          tmp_path / "g.safetensors", "-q")
    got, _ = st.load(str(tmp_path / "g.safetensors"))
    want = applied(t[0][2], *m3["h.0.attn.c_attn"], np.float32(2.0), transposed=True)
    assert got["h.0.attn.c_attn.weight"][1].tobytes() == want.tobytes()


def test_model_plus_lora_references(tmp_path, rng):
    """BASE+ADAPTER wherever a model is taken: the CLI and a recipe (paths
    relative to the recipe), the same bytes as applying first."""
    base_model(tmp_path, rng)
    other = st.llama(rng, "F32", layers=2, hidden=HID, inter=INTER, vocab=VOCAB)
    st.write_hf(tmp_path / "other", other, st.config(layers=2, hidden=HID, vocab=VOCAB))
    adapter(tmp_path / "ad", rng, MODS)
    ladle("lora", "apply", tmp_path / "base", tmp_path / "ad", "-o", tmp_path / "applied", "-q")
    ladle("lerp", tmp_path / "applied", tmp_path / "other", "--alpha", "0.3", "-o",
          tmp_path / "ref.safetensors", "-q")
    ladle("lerp", f"{tmp_path / 'base'}+{tmp_path / 'ad'}", tmp_path / "other", "--alpha", "0.3",
          "-o", tmp_path / "cli.safetensors", "-q")
    (tmp_path / "r.yml").write_text(
        "merge_method: linear\nmodels:\n  - model: base+ad\n    parameters: {weight: 0.7}\n"
        "  - model: other\n    parameters: {weight: 0.3}\n")
    ladle("merge", tmp_path / "r.yml", "-o", tmp_path / "rec.safetensors", "-q")
    ref, _ = st.load(str(tmp_path / "ref.safetensors"))
    for out in ("cli", "rec"):
        got, _ = st.load(str(tmp_path / f"{out}.safetensors"))
        for k in ref:
            assert got[k][1].tobytes() == ref[k][1].tobytes(), (out, k)


def test_refused(tmp_path, rng):
    base_model(tmp_path, rng)
    cases = {
        "dora": ({"use_dora": True}, (), MODS, "DoRA"),
        "saved": ({}, [("base_model.model.lm_head.weight", "F32",
                        np.zeros((VOCAB, HID // 2), F32))], MODS, "another shape"),
        "magnitude": ({}, [("base_model.model.model.layers.0.self_attn.q_proj."
                            "lora_magnitude_vector", "F32", np.ones(HID, F32))], MODS,
                      "not a LoRA matrix"),
        "missing": ({}, (), {"model.layers.7.self_attn.q_proj": (HID, HID)},
                    "no tensor 'model.layers.7.self_attn.q_proj.weight'"),
        "shape": ({}, (), {"model.layers.0.self_attn.q_proj": (HID, HID // 2)},
                  "is [16, 8] but 'model.layers.0.self_attn.q_proj.weight' is [16, 16]"),
        "prefix": ({"peft_type": "IA3"}, (), MODS, "peft_type IA3"),
    }
    for name, (cfg, extra, mods, words) in cases.items():
        adapter(tmp_path / name, rng, mods, cfg=cfg, extra=extra)
        r = ladle("lora", "apply", tmp_path / "base", tmp_path / name, "-o",
                  tmp_path / "never", check=False)
        assert r.code == 1 and words in r.err, (name, r.err)
        assert not (tmp_path / "never").exists()
    os.remove(tmp_path / "dora" / "adapter_config.json")
    r = ladle("lora", "apply", tmp_path / "base", tmp_path / "dora", "-o", tmp_path / "never",
              check=False)
    assert r.code == 1 and "no adapter_config.json" in r.err


def test_modules_to_save_copy_replaces(tmp_path, rng):
    """A full copy (PEFT's modules_to_save) replaces the base's tensor; the
    LoRA deltas still apply to the others."""
    base = base_model(tmp_path, rng)
    head = rng.standard_normal((VOCAB, HID)).astype(F32)
    mats = adapter(tmp_path / "ad", rng, MODS,
                   extra=[("base_model.model.lm_head.weight", "F32", head)])
    ladle("lora", "apply", tmp_path / "base", tmp_path / "ad", "-o", tmp_path / "o", "-q")
    got, _ = st.load(str(tmp_path / "o"))
    assert got["lm_head.weight"][1].tobytes() == head.tobytes()  # F32 base
    ladle("lora", "apply", tmp_path / "base", tmp_path / "ad", "--weights", "2", "-o",
          tmp_path / "x", check=False)
    assert not (tmp_path / "x").exists()
