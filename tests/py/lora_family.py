"""PEFT LoRA adapters and a base for the LoRA tests (CLI and package),
laid out as PEFT saves them, and the delta written from PEFT's definition
(LoraLayer.get_delta_weight: B @ A * scaling)."""
import json
import os

import numpy as np

import st

F32 = np.float32
HID, INTER, VOCAB = 16, 24, 40


def delta(L, R):
    """sum_k L[:, k] R[k, :] in fp32, k ascending: ladle's order, so the
    result is bit-exact (the sum then rounds once into the output)."""
    acc = np.zeros((L.shape[0], R.shape[1]), F32)
    for k in range(L.shape[1]):
        acc = (acc + np.outer(L[:, k], R[k, :]).astype(F32)).astype(F32)
    return acc


def adapter(path, rng, modules, r=4, alpha=8.0, cfg=None, emb=False, ffio_shapes=None,
            dtype="F32", extra=()):
    """A PEFT adapter folder; modules: {module: (out, in)} of its targets."""
    os.makedirs(path, exist_ok=True)
    tensors, mats = [], {}
    for mod, (out, inp) in modules.items():
        ranks = (cfg or {}).get("rank_pattern", {})
        rr = next((v for k, v in ranks.items() if mod.endswith(k)), r)
        A = (rng.standard_normal((rr, inp)) * 0.1).astype(F32)
        B = (rng.standard_normal((out, rr)) * 0.1).astype(F32)
        A, B = st.to_f32(dtype, st.round_to(dtype, A)), st.to_f32(dtype, st.round_to(dtype, B))
        if emb and mod.endswith("embed_tokens"):
            names = (f"base_model.model.{mod}.lora_embedding_A",
                     f"base_model.model.{mod}.lora_embedding_B")
        else:
            names = (f"base_model.model.{mod}.lora_A.weight",
                     f"base_model.model.{mod}.lora_B.weight")
        tensors += [(names[0], dtype, st.round_to(dtype, A)), (names[1], dtype,
                                                                 st.round_to(dtype, B))]
        mats[mod] = (A, B)
    tensors += list(extra)
    st.write(os.path.join(path, "adapter_model.safetensors"), tensors)
    conf = {"peft_type": "LORA", "r": r, "lora_alpha": alpha,
            "target_modules": sorted({m.rsplit(".", 1)[1] for m in modules}),
            "fan_in_fan_out": False, "use_rslora": False, "bias": "none",
            "base_model_name_or_path": "base"}
    conf.update(cfg or {})
    with open(os.path.join(path, "adapter_config.json"), "w") as f:
        json.dump(conf, f)
    return mats


def applied(W, A, B, scale, transposed=False):
    """W + scale * delta, all fp32, in the stored layout."""
    if transposed:  # W is stored [in, out]: delta^T
        d = delta(A.T.copy(), B.T.copy())
    else:
        d = delta(B, A)
    return (W + (F32(scale) * d).astype(F32)).astype(F32)


def base_model(tmp_path, rng, dtype="F32"):
    t = st.llama(rng, dtype, layers=2, hidden=HID, inter=INTER, vocab=VOCAB)
    st.write_hf(tmp_path / "base", t, st.config(layers=2, hidden=HID, vocab=VOCAB))
    return {n: (d, a) for n, d, a in t}


MODS = {"model.layers.0.self_attn.q_proj": (HID, HID), "model.layers.1.mlp.up_proj": (INTER, HID),
        "model.layers.1.self_attn.v_proj": (HID // 2, HID)}
