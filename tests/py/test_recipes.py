"""ladle merge: mergekit YAML recipes give the same tensors as the equivalent
ladle subcommands, resolve parameters as an independent re-implementation
of mergekit's ConfigReader does, and report errors with line and column."""
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import yaml

import st
from conftest import ladle
from test_schedule import depth, gradient

HERE = os.path.dirname(os.path.abspath(__file__))
RECIPES = os.path.join(HERE, "..", "..", "examples", "recipes")
MAKE_FAMILY = os.path.join(HERE, "..", "..", "examples", "make_family.py")
LAYERS = None


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The recipes beside a generated model family (they name models/...)."""
    global LAYERS
    d = tmp_path_factory.mktemp("recipes")
    subprocess.run(["/usr/bin/python3", MAKE_FAMILY, str(d / "models"), "--size", "6MB",
                    "--fine-tunes", "3"], check=True, capture_output=True)
    for f in os.listdir(RECIPES):
        if f.endswith(".yml"):
            shutil.copy(os.path.join(RECIPES, f), d / f)
    import json
    LAYERS = json.load(open(d / "models" / "base" / "config.json"))["num_hidden_layers"]
    return d


def same_tensors(a, b):
    ta, _ = st.load(str(a))
    tb, _ = st.load(str(b))
    assert set(ta) == set(tb)
    for k in ta:
        assert ta[k][0] == tb[k][0], k
        assert ta[k][1].tobytes() == tb[k][1].tobytes(), k


M = "models"
EQUIVALENT = {
    "linear": ["soup", f"{M}/ft1", f"{M}/ft2", f"{M}/ft3", "--weights", "0.5,0.3,0.2",
               "--dtype", "bf16"],
    "slerp": ["slerp", f"{M}/ft1", f"{M}/ft2", "--t", "0.5", "--set",
              "self_attn:t=0,0.5,0.3,0.7,1", "--set", "mlp:t=1,0.5,0.7,0.3,0", "--dtype", "bf16"],
    "task_arithmetic": ["task", "--base", f"{M}/base", "--add", f"0.7:{M}/ft1", "--add",
                        f"0.5:{M}/ft2", "--add", f"-0.3:{M}/ft3", "--lambda", "0.9",
                        "--dtype", "bf16"],
    "ties": ["ties", "--base", f"{M}/base", "--add", f"0.5:{M}/ft1", "--add", f"0.3:{M}/ft2",
             "--density", "0.5", "--dtype", "bf16"],
    "dare_ties": ["dare", "--base", f"{M}/base", "--add", f"0.4:{M}/ft1", "--add",
                  f"0.3:{M}/ft2", "--density", "0.53", "--sign-consensus", "--dtype", "bf16"],
    "dare_linear": ["dare", "--base", f"{M}/base", "--add", f"0.6:{M}/ft1", "--add",
                    f"0.4:{M}/ft2", "--density", "0.4", "--dtype", "bf16"],
    "breadcrumbs": ["breadcrumbs", "--base", f"{M}/base", "--add", f"1:{M}/ft1", "--add",
                    f"0.5:{M}/ft2", "--density", "0.8", "--gamma", "0.02", "--dtype", "bf16"],
    "breadcrumbs_ties": ["breadcrumbs", "--base", f"{M}/base", "--add", f"1:{M}/ft1", "--add",
                         f"0.5:{M}/ft2", "--density", "0.8", "--gamma", "0.02", "--ties",
                         "--dtype", "bf16"],
    "della": ["della", "--base", f"{M}/base", "--add", f"1:{M}/ft1", "--add", f"1:{M}/ft2",
              "--density", "0.5", "--epsilon", "0.1", "--dtype", "bf16"],
    "model_stock": ["stock", "--base", f"{M}/base", f"{M}/ft1", f"{M}/ft2", f"{M}/ft3",
                    "--dtype", "bf16"],
    "nuslerp": ["nuslerp", f"{M}/ft1", f"{M}/ft2", "--t", "0.6", "--base", f"{M}/base",
                "--per-row", "--dtype", "bf16"],
    "nearswap": ["nearswap", f"{M}/base", f"{M}/ft1", "--t", "0.0001", "--dtype", "bf16"],
    "consensus_ties": ["consensus-ties", "--base", f"{M}/base", "--add", f"1:{M}/ft1", "--add",
                       f"1:{M}/ft2", "--add", f"1:{M}/ft3", "--density", "0.2",
                       "--no-normalize", "--dtype", "bf16"],
    "wudi": ["wudi", "--base", f"{M}/base", f"{M}/ft1", f"{M}/ft2", f"{M}/ft3", "--dtype",
             "bf16"],
}


@pytest.mark.parametrize("recipe", sorted(EQUIVALENT))
def test_recipe_matches_subcommand(workdir, recipe):
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        ladle("merge", f"{recipe}.yml", "-o", "from-recipe.safetensors", "-q", "--force")
        ladle(*EQUIVALENT[recipe], "-o", "from-command.safetensors", "-q", "--force")
        same_tensors("from-recipe.safetensors", "from-command.safetensors")
    finally:
        os.chdir(cwd)


def test_passthrough_copies(workdir):
    out = workdir / "pass.safetensors"
    ladle("merge", workdir / "passthrough.yml", "-o", out, "-q")
    got, _ = st.load(str(out))
    src, _ = st.load(str(workdir / "models" / "ft1"))
    for k, (d, a) in src.items():
        assert got[k][0] == "F32" and np.array_equal(got[k][1], st.to_f32(d, a)), k


# ---------------------------------------------------------------- resolution

def evaluate_setting(tensor, setting, t):
    """mergekit's evaluate_setting, written from its definition."""
    if isinstance(setting, bool):
        return float(setting)
    if isinstance(setting, (int, float)):
        return float(setting)
    if isinstance(setting, dict):
        setting = [setting]
    if all(isinstance(e, (int, float)) for e in setting):
        return gradient([float(e) for e in setting], t)
    for cond in setting:
        f = cond.get("filter")
        if f is None or f == "*" or f in tensor:
            return evaluate_setting(tensor, cond["value"], t)
    return None


def parameter(cfg, name, model, tensor, t, default):
    """ConfigReader.parameter: the model's own, then the top level."""
    if model is not None:
        for m in cfg["models"]:
            if m["model"] == model and name in (m.get("parameters") or {}):
                v = evaluate_setting(tensor, m["parameters"][name], t)
                if v is not None:
                    return v
    if name in (cfg.get("parameters") or {}):
        v = evaluate_setting(tensor, cfg["parameters"][name], t)
        if v is not None:
            return v
    return default


def dry_run(workdir, recipe):
    out = ladle("merge", workdir / recipe, "-o", workdir / "dry", "--dry-run").out
    rows = {}
    for line in out.splitlines():
        m = re.match(r"  (\S+) (\S+) \[.*?\] (\S+) (.*)$", line)
        if m:
            rows[m.group(1)] = dict(kv.split("=") for kv in m.group(4).split())
    assert not (workdir / "dry").exists()
    return out, rows


def test_resolution_matches_mergekit(workdir):
    from test_gta import gta_ref
    cfg = yaml.safe_load(open(workdir / "gradients_filters.yml"))
    out, rows = dry_run(workdir, "gradients_filters.yml")
    assert "would read" in out and "nothing written" in out
    models = ["models/ft1", "models/ft2"]
    base, _ = st.load(str(workdir / "models" / "base"))
    fts = [st.load(str(workdir / m))[0] for m in models]
    ladle("merge", workdir / "gradients_filters.yml", "-o", workdir / "gf.safetensors", "-q")
    got, _ = st.load(str(workdir / "gf.safetensors"))
    checked = 0
    for name, (d, b) in base.items():
        if d not in ("BF16", "F16", "F32"):
            continue
        t = depth(name, LAYERS)
        want = {"lambda": parameter(cfg, "lambda", None, name, t, 1.0)}
        for i, m in enumerate(models, start=1):
            want[f"weight[{i}]"] = parameter(cfg, "weight", m, name, t, None)
            want[f"density[{i}]"] = parameter(cfg, "density", m, name, t, 1.0)
        for k, v in want.items():
            assert np.isclose(float(rows[name][k]), v, rtol=1e-5), (name, k, rows[name][k], v)
        ref = gta_ref(name, st.to_f32(d, b), [st.to_f32(f[name][0], f[name][1]) for f in fts],
                      [want["weight[1]"], want["weight[2]"]], kind="magnitude",
                      density=[want["density[1]"], want["density[2]"]], consensus="sum",
                      normalize=True, lam=want["lambda"])
        assert np.array_equal(got[name][1], ref), name  # out dtype float32
        checked += 1
    assert checked > 10


# ---------------------------------------------------------------- slices

def test_frankenmerge(workdir):
    import json
    out = workdir / "franken"
    ladle("merge", workdir / "frankenmerge.yml", "-o", out, "-q")
    got, order = st.load(str(out))
    a, a_order = st.load(str(workdir / "models" / "ft1"))
    b, b_order = st.load(str(workdir / "models" / "ft2"))
    want = {}  # output name -> (source tensors, source name)
    for name in a_order:
        if not re.search(r"\.layers\.\d+\.", name) and "embed" in name:
            want[name] = (a, name)
    layer = 0
    for src, order_, first, end in ((a, a_order, 0, 4), (b, b_order, 2, 5)):
        for j in range(first, end):
            for name in order_:
                m = re.search(r"\.layers\.(\d+)\.", name)
                if m and int(m.group(1)) == j:
                    want[name.replace(f".layers.{j}.", f".layers.{layer}.")] = (src, name)
            layer += 1
    for name in b_order:
        if not re.search(r"\.layers\.\d+\.", name) and "embed" not in name:
            want[name] = (b, name)
    assert order == list(want)  # embeddings, the layers in slice order, then the rest
    for name, (src, sname) in want.items():
        assert got[name][0] == src[sname][0] and got[name][1].tobytes() == src[sname][1].tobytes(), name
    cfg = json.load(open(out / "config.json"))
    assert cfg["num_hidden_layers"] == 7
    dry = ladle("merge", workdir / "frankenmerge.yml", "-o", workdir / "x", "--dry-run").out
    assert "model.layers.4.mlp.up_proj.weight" in dry and "from model.layers.2.mlp.up_proj.weight" in dry


def test_slices_form_equals_models_form(workdir):
    # both need the family's 10 layers: the recipe names layer_range [0, 10]
    assert LAYERS == 10
    ladle("merge", workdir / "slerp_slices.yml", "-o", workdir / "s1.safetensors", "-q")
    ladle("merge", workdir / "slerp.yml", "-o", workdir / "s2.safetensors", "-q")
    same_tensors(workdir / "s1.safetensors", workdir / "s2.safetensors")


def test_two_slice_slerp_restarts_t_per_slice(workdir):
    from test_slerp import slerp_coeffs
    (workdir / "two.yml").write_text(
        "slices:\n"
        "  - sources:\n      - model: models/ft1\n        layer_range: [0, 4]\n"
        "      - model: models/ft2\n        layer_range: [0, 4]\n"
        "  - sources:\n      - model: models/ft1\n        layer_range: [6, 9]\n"
        "      - model: models/ft2\n        layer_range: [6, 9]\n"
        "merge_method: slerp\nbase_model: models/ft1\n"
        "parameters:\n  t: [0.1, 0.9]\ndtype: float32\n")
    out = workdir / "two.safetensors"
    ladle("merge", workdir / "two.yml", "-o", out, "-q")
    got, order = st.load(str(out))
    a, _ = st.load(str(workdir / "models" / "ft1"))
    b, _ = st.load(str(workdir / "models" / "ft2"))
    plan = [(0, 4), (6, 9)]
    layer, checked = 0, 0
    for first, end in plan:
        for j in range(first, end):
            t = 0.1 + 0.8 * ((j - first) / (end - first - 1))
            for name in a:
                m = re.search(r"\.layers\.(\d+)\.", name)
                if m and int(m.group(1)) == j:
                    x, y = st.to_f32(*a[name]), st.to_f32(*b[name])
                    s0, s1 = slerp_coeffs(t, x, y)
                    want = np.float32(s0) * x + np.float32(s1) * y
                    oname = name.replace(f".layers.{j}.", f".layers.{layer}.")
                    assert np.array_equal(got[oname][1], want), (oname, t)
                    checked += 1
            layer += 1
    assert layer == 7 and checked > 0
    for name in ("model.embed_tokens.weight", "lm_head.weight"):  # t = 0 and t = 1
        t = 0.1 if "embed" in name else 0.9
        x, y = st.to_f32(*a[name]), st.to_f32(*b[name])
        s0, s1 = slerp_coeffs(t, x, y)
        assert np.array_equal(got[name][1], np.float32(s0) * x + np.float32(s1) * y), name


# ---------------------------------------------------------------- errors

BAD = [
    ("merge_method: ties\nbase_model: models/base\nmodels:\n  - model: models/ft1\n"
     "    parameters:\n      weight: heavy\n", "6:15", "weight must be a number"),
    ("merge_method: ties\nbase_model: models/base\nmodelz:\n  - model: models/ft1\n",
     "3:1", "unknown key 'modelz'"),
    ("merge_method: slerp\nbase_model: models/base\nmodels:\n  - model: org/Some-Model-7B\n"
     "parameters:\n  t: 0.5\n", "4:12", "download it first"),
    ("merge_method: ties\nbase_model: models/base\nmodels:\n  - model: models/ft1\n"
     "    parameters:\n      weight: 1\n      t: 0.3\n", "7:7", "unknown parameter 't'"),
    ("merge_method: linear\nmodels:\n  - model: models/ft1\n    parameters: {weight: 1}\n"
     "tokenizer_source: models/ft2\n", "5:19", "not base, union or one of the recipe's models"),
    ("merge_method: linear\nmodels:\n  - model: models/ft1\n    parameters: {weight: 1}\n"
     "tokenizer:\n  source: union\n  pad_to_multiple_of: 0\n", "7:23", "a whole number"),
    ("merge_method: linear\nmodels:\n  - model: models/ft1\n    parameters: {weight: 1}\n"
     "tokenizer:\n  sauce: union\n", "6:3", "unknown key 'sauce'"),
    ("merge_method: linear\nmodels:\n  - model: models/ft1\n    parameters: {weight: 1}\n"
     "tokenizer: {source: union}\ntokenizer_source: base\n", "5:12", "not both"),
    ("merge_method: [ties\n", "2:1", "not valid YAML"),
    ("merge_method: frankenstein\nmodels:\n  - model: models/ft1\n", "1:15",
     "not supported (ladle has:"),
    ("merge_method: ties\nmodels:\n  - model: models/ft1\n", "1:1", "needs a base_model"),
    ("merge_method: ties\nbase_model: models/base\nmodels:\n  - model: models/ft1\n"
     "    parameters:\n      weight: [1, {filter: mlp, value: 2}]\n", "6:19", "not both"),
    ("merge_method: ties\nbase_model: models/base\nmodels:\n  - model: models/ft1\n"
     "    parameters:\n      weight: 1\n      lambda: 2\n", "7:7", "top-level parameters"),
    ("merge_method: ties\nslices:\n  - sources:\n      - model: models/ft1\n"
     "        layer_range: [0, 2]\n", "1:1", "ties needs a base_model"),
    ("merge_method: ties\nbase_model: models/base\nslices:\n  - sources:\n"
     "      - model: models/ft1\n        layer_range: [0, 2]\n", "4:5",
     "no source from the base_model"),
    ("merge_method: passthrough\nslices:\n  - sources:\n      - model: models/ft1\n"
     "        layer_range: [2, 2]\n", "5:22", "is empty"),
    ("merge_method: passthrough\nslices:\n  - sources:\n      - model: models/ft1\n"
     "        layer_range: [0, 99]\n", "5:22", "models/ft1 has 10 layers"),
    ("merge_method: passthrough\nslices:\n  - sources:\n      - model: models/ft1\n"
     "        layer_range: [0, 1.5]\n", "5:26", "whole layer numbers"),
    # found by fuzzing: 63 models plus a separate base wrote past the op's parameters
    ("merge_method: ties\nbase_model: models/base\nmodels:\n"
     + "  - model: models/ft1\n" * 63, "4:3", "at most 61 models besides the base"),
    # found by fuzzing: converting 6.7e29 to a layer index was undefined
    ("merge_method: passthrough\nslices:\n  - sources:\n      - model: models/ft1\n"
     "        layer_range: [0, 666666666666666666666666666610]\n", "5:26",
     "whole layer numbers from 0 to 1000000"),
    ("merge_method: passthrough\nslices:\n  - sources:\n      - model: models/ft1\n"
     "        layers: [0, 2]\n", "5:9", "unknown key 'layers'"),
    ("merge_method: passthrough\nmodels:\n  - model: models/ft1\nslices:\n  - sources:\n"
     "      - model: models/ft1\n        layer_range: [0, 2]\n", "3:3", "not both"),
]


@pytest.mark.parametrize("text,where,words", BAD)
def test_recipe_errors(workdir, text, where, words):
    p = workdir / "bad.yml"
    p.write_text(text)
    r = ladle("merge", p, "-o", workdir / "never", check=False)
    lines = r.err.strip().splitlines()
    assert r.code == 1 and len(lines) == 1, r.err
    assert lines[0].startswith(f"ladle: error: {p}:{where}: "), lines[0]
    assert words in lines[0], lines[0]
    assert not (workdir / "never").exists()


def test_missing_weight_names_the_model(workdir):
    p = workdir / "noweight.yml"
    p.write_text("merge_method: linear\nmodels:\n  - model: models/ft1\n"
                 "    parameters: {weight: 1}\n  - model: models/ft2\n")
    r = ladle("merge", p, "-o", workdir / "never", check=False)
    assert r.code == 1 and ":5:5: linear needs 'weight' for model" in r.err
