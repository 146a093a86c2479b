"""Hugging Face conventions of a folder output: the model card's front matter
(the Hub's model tree), config.json's dtype field as transformers v4 and v5
write it, vocabularies of different sizes, and tensors that cannot be
merged but differ between the inputs."""
import json
import os

import numpy as np
import pytest
import yaml

import st
from conftest import ladle

F32 = np.float32


def front_matter(card):
    assert card.startswith("---\n")
    end = card.index("\n---\n", 4)
    return yaml.safe_load(card[4:end]), card[end + 5:]


def model(path, rng, cfg_extra=None, vocab=32, extra_files=True):
    t = st.llama(rng, "BF16", layers=1, hidden=16, inter=16, vocab=vocab)
    cfg = st.config(layers=1, hidden=16, vocab=vocab)
    cfg.update(cfg_extra or {})
    st.write_hf(path, t, cfg, extra_files=extra_files)
    return t


def test_card_front_matter(tmp_path, rng):
    model(tmp_path / "base", rng, {"_name_or_path": "meta-llama/Llama-3.1-8B"})
    model(tmp_path / "ft", rng, {"_name_or_path": "/home/me/runs/ft-7"})  # a local path: left out
    os.makedirs(tmp_path / "org")
    model(tmp_path / "org" / "math-ft", rng, {"_name_or_path": "./outputs"})
    out = tmp_path / "merged"
    ladle("ties", "--base", tmp_path / "base", "--add", f"1:{tmp_path / 'ft'}", "--add",
          "1:org/math-ft/", "--density", "0.5", "-o", out, "-q", cwd=tmp_path)
    meta, body = front_matter((out / "README.md").read_text())
    assert meta == {"base_model": ["meta-llama/Llama-3.1-8B", "org/math-ft"],
                    "base_model_relation": "merge", "library_name": "transformers",
                    "tags": ["merge", "ladle", "ties"]}
    assert body.startswith("# Merged model") and "## Reproduce" in body and "ties" in body


def test_card_libraries(tmp_path, rng):
    model(tmp_path / "a", rng)
    (tmp_path / "a" / "model_index.json").write_text("{}")  # a diffusers pipeline folder
    ladle("soup", tmp_path / "a", tmp_path / "a", "-o", tmp_path / "o", "-q")
    meta, _ = front_matter((tmp_path / "o" / "README.md").read_text())
    assert meta["library_name"] == "diffusers" and "base_model" not in meta
    t = st.llama(rng, "F32", layers=1, hidden=8, inter=8, vocab=8)
    st.write_hf(tmp_path / "b", t, None, extra_files=False)  # no config: no library claimed
    ladle("soup", tmp_path / "b", tmp_path / "b", "-o", tmp_path / "p", "-q")
    meta, _ = front_matter((tmp_path / "p" / "README.md").read_text())
    assert "library_name" not in meta and meta["tags"] == ["merge", "ladle", "soup"]


@pytest.mark.parametrize("fields", [("torch_dtype",), ("dtype",), ("dtype", "torch_dtype"), ()])
@pytest.mark.parametrize("out", ["f32", "f16", "bf16", None])
def test_config_dtype_v4_and_v5(tmp_path, rng, fields, out):
    t = st.llama(rng, "BF16", layers=1, hidden=8, inter=8, vocab=8)
    cfg = st.config(layers=1, hidden=8, vocab=8)
    del cfg["torch_dtype"]
    for f in fields:
        cfg[f] = "bfloat16"
    st.write_hf(tmp_path / "a", t, cfg)
    args = ["--dtype", out] if out else []
    ladle("soup", tmp_path / "a", tmp_path / "a", *args, "-o", tmp_path / "o", "-q")
    got = json.load(open(tmp_path / "o" / "config.json"))
    want = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", None: "bfloat16"}[out]
    for f in fields or ("torch_dtype",):  # the template's own field(s), or v4's
        assert got[f] == want, (f, got)
    assert ("dtype" in got) == ("dtype" in fields)
    assert ("torch_dtype" in got) == ("torch_dtype" in fields or not fields)


def test_unmergeable_tensors_that_differ(tmp_path, rng):
    base = st.llama(rng, "F32", layers=1, hidden=8, inter=8, vocab=8)
    ft = st.llama(rng, "F32", layers=1, hidden=8, inter=8, vocab=8, base=base)
    mask = [("model.attn_mask", "BOOL", np.array([1, 0, 1, 1], np.bool_))]
    other = [("model.attn_mask", "BOOL", np.array([1, 1, 1, 1], np.bool_))]
    st.write(tmp_path / "a.safetensors", base + mask)
    st.write(tmp_path / "b.safetensors", ft + mask)
    st.write(tmp_path / "c.safetensors", ft + other)
    out = tmp_path / "o.safetensors"
    ladle("lerp", tmp_path / "a.safetensors", tmp_path / "b.safetensors", "--alpha", "0.5",
          "-o", out, "-q")  # the same bytes: passed through
    assert st.read(out)[0]["model.attn_mask"][1].tolist() == [1, 0, 1, 1]
    r = ladle("lerp", tmp_path / "a.safetensors", tmp_path / "c.safetensors", "--alpha", "0.5",
              "-o", out, "--force", check=False)
    lines = r.err.strip().splitlines()
    assert r.code == 1 and len(lines) == 1 and "'model.attn_mask' is BOOL" in lines[0], r.err
    assert "a.safetensors" in lines[0] and "c.safetensors" in lines[0]
    assert "--take-unmergeable" in lines[0]
    ladle("lerp", tmp_path / "a.safetensors", tmp_path / "c.safetensors", "--alpha", "0.5",
          "--take-unmergeable", tmp_path / "c.safetensors", "-o", out, "-q", "--force")
    assert st.read(out)[0]["model.attn_mask"][1].tolist() == [1, 1, 1, 1]
    ladle("lerp", tmp_path / "a.safetensors", tmp_path / "c.safetensors", "--alpha", "0.5",
          "--take-unmergeable", "first", "-o", out, "-q", "--force")
    assert st.read(out)[0]["model.attn_mask"][1].tolist() == [1, 0, 1, 1]
    r = ladle("lerp", tmp_path / "a.safetensors", tmp_path / "c.safetensors", "--alpha", "0.5",
              "--take-unmergeable", "nope", "-o", out, "--force", check=False)
    assert r.code == 2 and "not one of the inputs" in r.err


# ------------------------------------------------------------ chat templates

def render(template, **kw):
    """The template as transformers renders it (Jinja2, trim_blocks off)."""
    import jinja2
    env = jinja2.Environment()
    return env.from_string(template).render(**kw)


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": " hi "}]


@pytest.mark.parametrize("name,want", [
    ("chatml", "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n hi <|im_end|>\n"
               "<|im_start|>assistant\n"),
    ("llama3", "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    ("alpaca", "Be brief.\n\n### Instruction:\n hi \n\n### Response:\n"),
])
def test_chat_template_by_name(tmp_path, rng, name, want):
    model(tmp_path / "a", rng)
    (tmp_path / "a" / "chat_template.jinja").write_text("{{ 'old' }}")  # replaced, not copied
    (tmp_path / "a" / "tokenizer_config.json").write_text(json.dumps(
        {"model_max_length": 77, "chat_template": "{{ 'older' }}"}))
    ladle("soup", tmp_path / "a", tmp_path / "a", "--chat-template", name, "-o",
          tmp_path / "o", "-q")
    cfg = json.load(open(tmp_path / "o" / "tokenizer_config.json"))
    assert cfg["model_max_length"] == 77  # the rest of the file kept
    assert render(cfg["chat_template"], messages=MESSAGES, add_generation_prompt=True,
                  bos_token="<s>", eos_token="</s>") == want
    assert not (tmp_path / "o" / "chat_template.jinja").exists()


def test_chat_template_auto_file_inline_and_errors(tmp_path, rng):
    x, y = "{% for m in messages %}{{ m['content'] }}{% endfor %}", "{{ 'Y' }} {{ messages }}"
    for name, how, text in (("a", "config", y), ("b", "jinja", x), ("c", "list", x),
                            ("d", None, None)):
        model(tmp_path / name, rng)
        if how == "config":
            (tmp_path / name / "tokenizer_config.json").write_text(
                json.dumps({"chat_template": text}))
        elif how == "jinja":
            (tmp_path / name / "chat_template.jinja").write_text("\n" + text + "\n  ")
        elif how == "list":
            (tmp_path / name / "tokenizer_config.json").write_text(json.dumps(
                {"chat_template": [{"name": "tool_use", "template": y},
                                   {"name": "default", "template": text}]}))
    models = [tmp_path / n for n in "abcd"]
    ladle("soup", *models, "--chat-template", "auto", "-o", tmp_path / "auto", "-q")
    assert json.load(open(tmp_path / "auto" / "tokenizer_config.json"))["chat_template"] == x
    # a recipe, inline
    r = tmp_path / "r.yml"
    r.write_text("merge_method: linear\nchat_template: \"" + y.replace("'", "'") + "\"\n"
                 "models:\n  - model: a\n    parameters: {weight: 1}\n"
                 "  - model: d\n    parameters: {weight: 1}\n")
    ladle("merge", r, "-o", tmp_path / "rec", "-q")
    assert json.load(open(tmp_path / "rec" / "tokenizer_config.json"))["chat_template"] == y
    # a file
    (tmp_path / "t.jinja").write_text(x)
    ladle("soup", models[3], models[3], "--chat-template", tmp_path / "t.jinja", "-o",
          tmp_path / "file", "-q")
    assert json.load(open(tmp_path / "file" / "tokenizer_config.json"))["chat_template"] == x
    # auto with no template anywhere: a warning, no template
    r = ladle("soup", models[3], models[3], "--chat-template", "auto", "-o", tmp_path / "none")
    assert "none of the inputs has a chat template" in r.err
    assert not (tmp_path / "none" / "tokenizer_config.json").exists()
    r = ladle("soup", models[3], models[3], "--chat-template", "vicuna", "-o",
              tmp_path / "bad", check=False)
    assert r.code == 1 and "chat_template 'vicuna' is neither" in r.err
    assert not (tmp_path / "bad").exists()
    r = ladle("soup", models[3], models[3], "--chat-template", "chatml", "-o",
              tmp_path / "one.safetensors")
    assert "without tokenizer files to hold a chat template" in r.err
