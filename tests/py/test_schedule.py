"""Per-layer schedules and --set overrides, against a Python reference of
mergekit's evaluate_setting and its layer depth t."""
import json
import re

import numpy as np
import pytest

import st
from conftest import ladle

F32 = np.float32
LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)(?:\.|$)")


def depth(name, nlayers):
    m = LAYER.search(name)
    if m:
        return int(m.group(1)) / (nlayers - 1) if nlayers > 1 else 1.0
    return 0.0 if any(p in name for p in ("embed", "wte", "wpe", "tok_embeddings")) else 1.0


def gradient(values, t):
    if len(values) == 1:
        return values[0]
    scaled = t * (len(values) - 1)
    i0 = int(scaled)
    i1 = min(len(values) - 1, i0 + 1)
    frac = scaled - i0
    return (1 - frac) * values[i0] + frac * values[i1]


def resolve(name, nlayers, default, sets):
    """sets: [(patterns, values)], first match wins, as mergekit's filters."""
    for patterns, values in sets:
        if any(p == "*" or p in name for p in patterns.split("|")):
            return gradient(values, depth(name, nlayers))
    return gradient(default, depth(name, nlayers))


def family(tmp_path, rng, layers, dtype="F32", config=True):
    base = st.llama(rng, dtype, layers=layers)
    paths = []
    for i, m in enumerate([base, st.llama(rng, dtype, base=base, layers=layers, noise=0.05)]):
        if config:
            d = tmp_path / f"m{i}"
            st.write_hf(d, m, st.config(layers=layers, dtype="float32"))
        else:
            d = tmp_path / f"m{i}.safetensors"
            st.write(d, m)
        paths.append(d)
    return paths


@pytest.mark.parametrize("config", [True, False])
def test_lerp_alpha_gradient(tmp_path, rng, config):
    layers = 5
    a, b = family(tmp_path, rng, layers, config=config)
    out = tmp_path / "o.safetensors"
    ladle("lerp", a, b, "--alpha", "0,0.5,0.3,0.7,1", "-o", out, "-q")
    A, B, got = st.load(str(a))[0], st.load(str(b))[0], st.load(out)[0]
    seen = set()
    for name, (d, arr) in A.items():
        if d != "F32":
            continue
        alpha = resolve(name, layers, [0, 0.5, 0.3, 0.7, 1], [])
        seen.add(round(alpha, 6))
        want = F32(1 - alpha) * arr + F32(alpha) * B[name][1]
        assert np.array_equal(got[name][1], want), (name, alpha)
    assert {0.0, 0.5, 0.3, 0.7, 1.0} <= seen  # every point of the gradient was used
    recipe = json.loads(st.read(out)[1]["ladle_recipe"])
    assert recipe["parameters"]["alpha"] == [0, 0.5, 0.3, 0.7, 1]


def test_slerp_with_filters(tmp_path, rng):
    """The classic mergekit slerp recipe: self_attn and mlp on opposite
    gradients, the rest at 0.5, embeddings and head pinned."""
    from test_slerp import slerp_coeffs
    layers = 4
    a, b = family(tmp_path, rng, layers)
    sets = [("self_attn", [0, 0.5, 0.3, 0.7, 1]), ("mlp", [1, 0.5, 0.7, 0.3, 0]),
            ("embed_tokens|lm_head", [0])]
    out = tmp_path / "o.safetensors"
    ladle("slerp", a, b, "--t", "0.5", *sum([["--set", f"{p}:t={','.join(map(str, v))}"]
                                             for p, v in sets], []), "-o", out, "-q")
    A, B, got = st.load(str(a))[0], st.load(str(b))[0], st.load(out)[0]
    for name, (d, arr) in A.items():
        if d != "F32":
            continue
        t = resolve(name, layers, [0.5], sets)
        s0, s1 = slerp_coeffs(t, arr, B[name][1])
        assert np.array_equal(got[name][1], F32(s0) * arr + F32(s1) * B[name][1]), (name, t)


def base_and_two(tmp_path, rng, layers):
    base = st.llama(rng, "F32", layers=layers)
    paths = []
    for i, m in enumerate([base] + [st.llama(rng, "F32", base=base, layers=layers)
                                    for _ in range(2)]):
        p = tmp_path / f"m{i}.safetensors"
        st.write(p, m)
        paths.append(p)
    return paths


def test_task_lambda_and_weight_gradients(tmp_path, rng):
    layers = 3
    paths = base_and_two(tmp_path, rng, layers)
    out = tmp_path / "o.safetensors"
    ladle("task", "--base", paths[0], "--add", f"0.2,1:{paths[1]}", "--add", f"-0.5:{paths[2]}",
          "--lambda", "1,0.5", "--set", "mlp:weight2=0", "-o", out, "-q")
    B, X1, X2, got = (st.load(str(p))[0] for p in (*paths, out))
    for name, (d, b) in B.items():
        if d != "F32":
            continue
        t = depth(name, layers)
        lam, w1 = gradient([1, 0.5], t), gradient([0.2, 1], t)
        w2 = 0 if "mlp" in name else -0.5
        want = b + F32(lam) * (F32(w1) * (X1[name][1] - b) + F32(w2) * (X2[name][1] - b))
        assert np.array_equal(got[name][1], want), name


def test_ties_density_gradient(tmp_path, rng):
    from test_gta import gta_ref
    layers = 3
    paths = base_and_two(tmp_path, rng, layers)
    out = tmp_path / "o.safetensors"
    ladle("ties", "--base", paths[0], "--add", f"1:{paths[1]}", "--add", f"1:{paths[2]}",
          "--density", "0.2,0.9", "--set", "lm_head:density=1", "-o", out, "-q")
    B, X1, X2, got = (st.load(str(p))[0] for p in (*paths, out))
    for name, (d, b) in B.items():
        if d != "F32":
            continue
        density = 1.0 if "lm_head" in name else gradient([0.2, 0.9], depth(name, layers))
        want = gta_ref(name, b, [X1[name][1], X2[name][1]], [1, 1], kind="magnitude",
                       density=density, consensus="sum", normalize=True)
        assert np.array_equal(got[name][1], want), (name, density)


def test_set_errors(tmp_path, rng):
    a, b = family(tmp_path, rng, 2)
    out = tmp_path / "o.safetensors"
    r = ladle("lerp", a, b, "--alpha", "0.5", "--set", "mlp:beta=1", "-o", out, check=False)
    assert r.code == 2 and "no parameter 'beta'" in r.err and "alpha" in r.err
    r = ladle("lerp", a, b, "--alpha", "0.5", "--set", "mlp=1", "-o", out, check=False)
    assert r.code == 2 and "PATTERN:NAME=VALUE" in r.err
    r = ladle("soup", a, b, "--set", "mlp:alpha=1", "-o", out, check=False)
    assert r.code == 2 and "no per-tensor parameters" in r.err
    r = ladle("lerp", a, b, "--alpha", "0.5", "--set", "mlp:alpha=2", "-o", out, check=False)
    assert r.code == 1 and "mlp" in r.err and "outside [0, 1]" in r.err and not out.exists()
