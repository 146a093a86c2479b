"""Layer-wise merging on every architecture: the stacks of blocks ladle
finds from the names, each tensor's depth t, layer groups, --layers, and
the refusals. The reference is a Python implementation of the README's
rules; each scheme is checked by interpolating two constant models (all 0,
all 1) with --alpha 0,1, whose output is t itself."""
import json
import re

import numpy as np
import pytest

import st
from conftest import ladle

F32 = np.float32

BEFORE = ["embed", "embd", "wte", "wpe", "patch", "pos_", "position", "cls_token",
          "class_embedding", "register_tokens", "mask_token", "ln_pre", "pre_layrnorm",
          "conv_in", "img_in", "txt_in", "time_in", "vector_in", "guidance_in", "label_emb",
          "visual.conv1", "shared."]
SEQUENCES = [("input_blocks", "middle_block", "output_blocks"),
             ("down_blocks", "mid_block", "up_blocks"),
             ("double_blocks", None, "single_blocks")]


def reference(names, regexes=()):
    """{name: (stack key or None, pos, len, t)} by the README's rules."""
    stacks = {}  # key -> (len, place function)
    if regexes:
        for k, rx in enumerate(regexes):
            rx = re.compile(rx)
            idx = [int(m.group(1)) for n in names if (m := rx.search(n))
                   and not any(re.search(r, n) for r in regexes[:k])]
            stacks[k] = max(idx) + 1

        def place(n):
            for k, rx in enumerate(regexes):
                m = re.search(rx, n)
                if m:
                    return k, int(m.group(1)), stacks[k]
            return None
    else:
        groups = {}
        for n in names:
            comps = n.split(".")
            for i, c in enumerate(comps):
                if re.fullmatch(r"[0-9]+", c):
                    if 0 < i < len(comps) - 1:
                        groups.setdefault(".".join(comps[:i]), {}).setdefault(int(c), set()) \
                            .add(".".join(comps[i + 1:]))
                    break
        valid = {}
        for prefix, blocks in groups.items():
            rests = [r for b in blocks.values() for r in b]
            shared = max(sum(r in b for b in blocks.values()) for r in rests)
            if all("." in r for r in rests) and (len(blocks) == 1 or shared >= 2):
                valid[prefix] = max(blocks) + 1
        parts = {}  # prefix -> (stack key, offset, single)
        for prefix, n in list(valid.items()):
            parent, _, comp = prefix.rpartition(".")
            parent = parent + "." if parent else ""
            for first, mid, last in SEQUENCES:
                if comp == first and parent + last in valid:
                    pos = n
                    parts[prefix] = (prefix, 0, False)
                    if mid:
                        parts[parent + mid] = (prefix, pos, True)
                        pos += 1
                    parts[parent + last] = (prefix, pos, False)
                    stacks[prefix] = pos + valid[parent + last]
        for prefix, n in valid.items():
            if prefix not in parts and not any(prefix.startswith(p + ".") for p, v in parts.items()
                                               if v[2]):
                parts[prefix] = (prefix, 0, False)
                stacks[prefix] = n

        def place(n):
            for prefix, (key, off, single) in parts.items():
                if n.startswith(prefix + "."):
                    rest = n[len(prefix) + 1:].split(".")[0]
                    if single:
                        return key, off, stacks[key]
                    if rest.isdigit():
                        return key, off + int(rest), stacks[key]
            return None
    out = {}
    for n in names:
        p = place(n)
        if p:
            key, pos, length = p
            out[n] = (key, pos, length, pos / (length - 1) if length > 1 else 1.0)
        else:
            out[n] = (None, 0, 0, 0.0 if any(w in n for w in BEFORE) else 1.0)
    return out


def blocks(prefix, n, rests):
    return [f"{prefix}.{i}.{r}" for i in range(n) for r in rests]


SCHEMES = {
    "llama": ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"]
    + blocks("model.layers", 5, ["self_attn.q_proj.weight", "mlp.up_proj.weight"]),
    "gpt2": ["transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight"]
    + blocks("transformer.h", 4, ["attn.c_attn.weight", "ln_1.weight"]),
    "bert": ["bert.embeddings.word_embeddings.weight", "bert.pooler.dense.weight"]
    + blocks("bert.encoder.layer", 3, ["attention.self.query.weight", "output.dense.weight"]),
    "mixtral": ["model.embed_tokens.weight", "lm_head.weight"]
    + [f"model.layers.{i}.block_sparse_moe.experts.{e}.w1.weight" for i in range(4)
       for e in range(3)],
    "hf_clip": ["text_model.embeddings.token_embedding.weight", "vision_model.pre_layrnorm.weight",
                "vision_model.post_layernorm.weight", "visual_projection.weight"]
    + blocks("text_model.encoder.layers", 3, ["mlp.fc1.weight"])
    + blocks("vision_model.encoder.layers", 3, ["mlp.fc1.weight"]),
    "open_clip": ["visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding",
                  "visual.ln_pre.weight", "visual.ln_post.weight", "visual.proj",
                  "token_embedding.weight", "ln_final.weight", "text_projection"]
    + blocks("visual.transformer.resblocks", 4, ["attn.in_proj_weight", "ln_1.weight"])
    + blocks("transformer.resblocks", 3, ["attn.in_proj_weight", "ln_1.weight"]),
    "t5": ["shared.weight", "encoder.final_layer_norm.weight", "decoder.final_layer_norm.weight",
           "lm_head.weight"]
    + [f"encoder.block.{i}.layer.{k}.w.weight" for i in range(4) for k in range(2)]
    + [f"decoder.block.{i}.layer.{k}.w.weight" for i in range(3) for k in range(3)],
    "gguf": ["token_embd.weight", "output_norm.weight", "output.weight"]
    + blocks("blk", 4, ["attn_q.weight", "ffn_up.weight"]),
    "sd_unet": ["model.diffusion_model.time_embed.0.weight", "model.diffusion_model.time_embed.2.weight",
                "model.diffusion_model.out.0.weight", "model.diffusion_model.out.2.weight"]
    + blocks("model.diffusion_model.input_blocks", 4, ["0.in_layers.0.weight", "1.proj_in.weight"])
    + [f"model.diffusion_model.middle_block.{k}.in_layers.0.weight" for k in range(3)]
    + blocks("model.diffusion_model.output_blocks", 4, ["0.in_layers.0.weight"]),
    "diffusers_unet": ["conv_in.weight", "time_embedding.linear_1.weight", "conv_out.weight"]
    + blocks("down_blocks", 3, ["resnets.0.conv1.weight", "resnets.1.conv1.weight"])
    + ["mid_block.resnets.0.conv1.weight", "mid_block.resnets.1.conv1.weight",
       "mid_block.attentions.0.proj_in.weight"]
    + blocks("up_blocks", 3, ["resnets.0.conv1.weight"]),
    "flux": ["img_in.weight", "txt_in.weight", "time_in.in_layer.weight",
             "final_layer.linear.weight"]
    + blocks("double_blocks", 3, ["img_attn.qkv.weight", "txt_mlp.0.weight"])
    + blocks("single_blocks", 5, ["linear1.weight", "norm.key_norm.scale"]),
    "llava": ["language_model.model.embed_tokens.weight", "language_model.lm_head.weight",
              "multi_modal_projector.linear_1.weight",
              "vision_tower.vision_model.embeddings.patch_embedding.weight"]
    + blocks("vision_tower.vision_model.encoder.layers", 4, ["mlp.fc1.weight"])
    + blocks("language_model.model.layers", 6, ["mlp.up_proj.weight"]),
    "two_families": ["embed.weight", "head.weight"]
    + blocks("encoder.layers", 5, ["attn.weight", "mlp.weight"])
    + blocks("adapter.blocks", 2, ["down.weight", "up.weight"]),
    "gap": ["model.embed_tokens.weight", "model.norm.weight"]
    + [f"model.layers.{i}.mlp.up_proj.weight" for i in (0, 1, 3, 4)],
    "single_block": ["model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight",
                     "lm_head.weight"],
    "sequential_head": ["embeddings.weight", "classifier.0.weight", "classifier.3.weight"]
    + blocks("encoder.layer", 3, ["attention.weight"]),
}


def constant_models(tmp_path, names):
    paths = []
    for v in (0.0, 1.0):
        p = tmp_path / f"m{int(v)}.safetensors"
        st.write(p, [(n, "F32", np.full(2, v, F32)) for n in names])
        paths.append(p)
    return paths


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_every_tensor_at_its_depth(tmp_path, scheme):
    names = SCHEMES[scheme]
    a, b = constant_models(tmp_path, names)
    out = tmp_path / "o.safetensors"
    ladle("lerp", a, b, "--alpha", "0,1", "-o", out, "-q")
    got = st.load(str(out))[0]
    want = reference(names)
    assert any(k for k, *_ in want.values()), "the reference finds no stack"
    for n in names:
        assert got[n][1][0] == F32(want[n][3]), (n, got[n][1][0], want[n])


def test_the_detected_stacks(tmp_path):
    """What the README's table says, for the schemes whose rules are special."""
    cases = {"sd_unet": ("t", "model.diffusion_model.middle_block.1.in_layers.0.weight", 4 / 8),
             "flux": ("t", "single_blocks.0.linear1.weight", 3 / 7),
             "t5": ("t", "decoder.block.1.layer.2.w.weight", 0.5),
             "llava": ("t", "language_model.model.layers.3.mlp.up_proj.weight", 3 / 5),
             "gap": ("t", "model.layers.3.mlp.up_proj.weight", 3 / 4),
             "single_block": ("t", "model.layers.0.mlp.up_proj.weight", 1.0),
             "sequential_head": ("t", "classifier.0.weight", 1.0),
             "diffusers_unet": ("t", "mid_block.attentions.0.proj_in.weight", 3 / 6)}
    for scheme, (_, name, t) in cases.items():
        assert reference(SCHEMES[scheme])[name][3] == pytest.approx(t), scheme
    info = json.loads(ladle("info", constant_models(tmp_path, SCHEMES["sd_unet"])[0],
                            "--json").out)
    stacks = info["structure"]["stacks"]
    assert len(stacks) == 1 and stacks[0]["blocks"] == 9
    assert "middle_block" in stacks[0]["name"] and "output_blocks.N" in stacks[0]["name"]


def test_info_shows_the_structure(tmp_path):
    a, _ = constant_models(tmp_path, SCHEMES["llava"])
    text = ladle("info", a).out
    assert "2 stacks of blocks" in text
    assert "vision_tower.vision_model.encoder.layers.N: 4 blocks" in text
    assert "language_model.model.layers.N: 6 blocks" in text
    info = json.loads(ladle("info", a, "--json").out)
    s = info["structure"]
    assert sorted(x["blocks"] for x in s["stacks"]) == [4, 6]
    assert "language_model.model.embed_tokens.weight" in s["before"]
    assert "multi_modal_projector.linear_1.weight" in s["after"]
    gap, _ = constant_models(tmp_path, SCHEMES["gap"])
    assert "5 blocks (4 present)" in ladle("info", gap).out


def test_layers_regex_names_what_detection_cannot(tmp_path):
    names = ["stem.weight"] + [f"net.stage.unit_{i}.w" for i in range(4)] + ["top.weight"]
    a, b = constant_models(tmp_path, names)
    out = tmp_path / "o.safetensors"
    r = ladle("lerp", a, b, "--alpha", "0,1", "-o", out, check=False)
    assert r.code == 1 and "--layers" in r.err and not out.exists(), r.err
    ladle("lerp", a, b, "--alpha", "0,1", "--layers", r"unit_(\d+)\.", "-o", out, "-q")
    got, want = st.load(str(out))[0], reference(names, [r"unit_([0-9]+)\."])
    for n in names:
        assert got[n][1][0] == F32(want[n][3]), n
    assert got["net.stage.unit_2.w"][1][0] == F32(2 / 3)
    # --layers also replaces a detection that would work
    llama = SCHEMES["llama"]
    a, b = constant_models(tmp_path, llama)
    ladle("lerp", a, b, "--alpha", "0,1", "--layers", r"layers\.(\d+)\.mlp", "-o", out, "-q",
          "--force")
    got, want = st.load(str(out))[0], reference(llama, [r"layers\.([0-9]+)\.mlp"])
    for n in llama:
        assert got[n][1][0] == F32(want[n][3]), n
    assert got["model.layers.4.self_attn.q_proj.weight"][1][0] == F32(1)  # not matched: after


@pytest.mark.parametrize("args,code,words", [
    (["--alpha", "0,1"], 1, "no stacks of numbered blocks"),
    (["--alpha", "0.5", "--set", "early:alpha=1"], 1, "no stacks of numbered blocks"),
    (["--alpha", "0,1", "--layers", "fc"], 2, "exactly one capture group"),
    (["--alpha", "0,1", "--layers", "(x)(y)"], 2, "exactly one capture group"),
    (["--alpha", "0,1", "--layers", r"nothing\.(\d+)"], 1, "matches no tensor"),
    (["--alpha", "0,1", "--layers", "fc([0-9]+"], 2, "not a regular expression"),
    (["--alpha", "0,1", "--layers", r"fc(\d+)+"], 2, "too intricate"),
])
def test_flat_models_and_bad_layers_are_refused(tmp_path, args, code, words):
    a, b = constant_models(tmp_path, ["fc1.weight", "fc2.weight", "head.weight"])
    out = tmp_path / "o.safetensors"
    r = ladle("lerp", a, b, *args, "-o", out, check=False)
    lines = r.err.strip().splitlines()
    assert r.code == code and len(lines) == 1 and words in lines[0], r.err
    assert lines[0].startswith("ladle: error: ") and not out.exists()
    ladle("lerp", a, b, "--alpha", "0.5", "-o", out, "-q")  # a single value always works


def test_layer_groups(tmp_path):
    names = SCHEMES["llama"][:3] + blocks("model.layers", 12, ["mlp.up_proj.weight"])
    a, b = constant_models(tmp_path, names)
    out = tmp_path / "o.safetensors"
    sets = [("embed", 0.1), ("head", 0.9), ("layers[8:10]", 0.7), ("early", 0.2),
            ("late", 0.3), ("up_proj", 0.55)]
    args = sum((["--set", f"{p}:alpha={v}"] for p, v in sets), [])
    ladle("lerp", a, b, "--alpha", "0.5", *args, "-o", out, "-q")
    got = st.load(str(out))[0]
    for n in names:
        m = re.search(r"layers\.(\d+)\.", n)
        pos = int(m.group(1)) if m else None
        groups = {"embed": pos is None and "embed" in n, "head": pos is None and "embed" not in n,
                  "layers[8:10]": pos is not None and 8 <= pos < 10,
                  "early": pos is not None and 3 * pos // 12 == 0,
                  "late": pos is not None and 3 * pos // 12 == 2, "up_proj": "up_proj" in n}
        want = next((v for p, v in sets if groups[p]), 0.5)  # the first match wins
        assert got[n][1][0] == F32(want), (n, got[n][1][0], want)
    # the seed's advice as one sweep point: embeddings and middle layers apart
    ladle("lerp", a, b, "--alpha", "0.5", "--set", "middle:alpha=0", "--set", "embed|head:alpha=1",
          "-o", out, "-q", "--force")
    got = st.load(str(out))[0]
    assert got["model.layers.5.mlp.up_proj.weight"][1][0] == 0
    assert got["model.layers.3.mlp.up_proj.weight"][1][0] == F32(0.5)
    assert got["lm_head.weight"][1][0] == 1


@pytest.mark.parametrize("spec,code,words", [
    ("layers[5:5]:alpha=1", 2, "not a layer range"),
    ("layers[a:b]:alpha=1", 2, "not a layer range"),
    ("layers[40:]:alpha=1", 1, "selects no tensor"),
])
def test_bad_layer_groups(tmp_path, spec, code, words):
    a, b = constant_models(tmp_path, SCHEMES["llama"])
    out = tmp_path / "o.safetensors"
    r = ladle("lerp", a, b, "--alpha", "0.5", "--set", spec, "-o", out, check=False)
    assert r.code == code and words in r.err and not out.exists(), r.err
    assert len(r.err.strip().splitlines()) == 1


def test_recipes_take_groups_and_layers(tmp_path):
    names = ["stem.weight"] + [f"net.unit_{i}.w" for i in range(6)]
    a, b = constant_models(tmp_path, names)
    recipe = tmp_path / "r.yml"
    recipe.write_text(f"""merge_method: linear
layers: 'unit_(\\d+)'
models:
  - model: {a}
    parameters:
      weight: [1, 0]
  - model: {b}
    parameters:
      weight:
        - filter: late
          value: 5
        - value: [0, 1]
""")
    out = tmp_path / "o.safetensors"
    ladle("merge", recipe, "-o", out, "-q")
    got = st.load(str(out))[0]
    for i in range(6):
        t = i / 5
        wb = 5 if 3 * i // 6 == 2 else t
        assert got[f"net.unit_{i}.w"][1][0] == F32(wb / ((1 - t) + wb)), i
    dry = ladle("merge", recipe, "-o", out, "--dry-run").out
    assert re.search(r"net\.unit_2\.w F32 \[2\] linear t=0\.4 stack=0 block=2/6 weight\[0\]=0\.6 "
                     r"weight\[1\]=0\.4", dry), dry


def test_dry_run_on_every_command(tmp_path):
    a, b = constant_models(tmp_path, SCHEMES["llama"])
    out = tmp_path / "o.safetensors"
    r = ladle("lerp", a, b, "--alpha", "0,1", "--set", "embed:alpha=0.3", "-o", out, "--dry-run")
    assert not out.exists()
    assert re.search(r"model\.layers\.2\.mlp\.up_proj\.weight F32 \[2\] lerp t=0\.5 stack=0 "
                     r"block=2/5 alpha=0\.5$", r.out, re.M), r.out
    assert re.search(r"model\.embed_tokens\.weight F32 \[2\] lerp t=0 place=before alpha=0\.3$",
                     r.out, re.M), r.out
    assert "nothing written" in r.out


def test_frankenmerge_on_gpt2_names(tmp_path):
    """Slices now take any single numbered stack, not only layers.N."""
    names = SCHEMES["gpt2"]
    a, _ = constant_models(tmp_path, names)
    recipe = tmp_path / "f.yml"
    recipe.write_text(f"""merge_method: passthrough
slices:
  - sources:
      - model: {a}
        layer_range: [0, 3]
  - sources:
      - model: {a}
        layer_range: [1, 4]
""")
    out = tmp_path / "franken.safetensors"
    ladle("merge", recipe, "-o", out, "-q")
    got = st.load(str(out))[0]
    assert sorted(n for n in got if ".h." in n) == sorted(
        f"transformer.h.{i}.{r}" for i in range(6) for r in ("attn.c_attn.weight", "ln_1.weight"))
    (tmp_path / "t5").mkdir()
    t5, _ = constant_models(tmp_path / "t5", SCHEMES["t5"])  # encoder and decoder stacks
    recipe.write_text(recipe.read_text().replace(str(a), str(t5)))
    r = ladle("merge", recipe, "-o", tmp_path / "y.safetensors", check=False)
    assert r.code == 1 and "finds 2 in it" in r.err, r.err
