"""The command-line surface: help, version, usage errors, info."""
import json

import numpy as np
import pytest

import st
from conftest import ladle

COMMANDS = ["info", "lerp", "soup", "task", "ckpt", "slerp", "ties", "dare", "breadcrumbs", "stock", "diff", "della", "merge",
            "sweep"]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help(cmd):
    r = ladle(cmd, "--help")
    assert r.out.startswith(f"usage: ladle {cmd}") and r.err == ""


def test_top_level_help_and_version():
    r = ladle("--help")
    assert all(c in r.out for c in COMMANDS)
    assert ladle("--version").out.startswith("ladle ")
    r = ladle(check=False)
    assert r.code == 2 and "usage" in r.err
    r = ladle("frobnicate", check=False)
    assert r.code == 2 and r.err.startswith("ladle: error: unknown command 'frobnicate'")


@pytest.mark.parametrize("args,words", [
    (["lerp", "a", "b", "-o", "x"], "--alpha"),
    (["lerp", "a", "--alpha", "0.5", "-o", "x"], "two models"),
    (["lerp", "a", "b", "--alpha", "zero", "-o", "x"], "takes a number"),
    (["soup", "a", "b", "--weights", "1,2,3", "-o", "x"], "3 weights for 2 models"),
    (["soup", "a", "b", "--weights", "1,-1", "-o", "x"], "sum to 0"),
    (["soup", "a", "--bogus", "-o", "x"], "unknown option '--bogus'"),
    (["soup", "a", "-o"], "needs a value"),
    (["soup", "a", "b", "--dtype", "int8", "-o", "x"], "--dtype"),
    (["soup", "a", "b", "-j", "0", "-o", "x"], "-j"),
    (["soup", "a", "b", "--shard-size", "lots", "-o", "x"], "--shard-size"),
    (["soup", "a", "b"], "no output"),
    (["ckpt", "-o", "x"], "one run folder"),
    (["ckpt", "d", "--last", "0", "-o", "x"], "--last"),
])
def test_usage_errors(args, words):
    r = ladle(*args, check=False)
    assert r.code == 2, r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ladle: error: ") and words in lines[0]


def test_info_text_and_json(tmp_path, rng):
    m = st.llama(rng, "BF16", layers=1)
    d = tmp_path / "m"
    st.write_hf(d, m, st.config(), shards=2)
    info = json.loads(ladle("info", d, "--json").out)
    assert [t["name"] for t in info["tensors"]] == [n for n, _, _ in m]  # shard, then offset order
    want = {n: (dt, list(a.shape), a.nbytes) for n, dt, a in m}
    for t in info["tensors"]:
        assert (t["dtype"], t["shape"], t["bytes"]) == want[t["name"]]
    assert info["parameters"] == sum(int(np.prod(a.shape)) for _, _, a in m)
    assert len(info["files"]) == 2 and info["files"][0]["metadata"] == {"format": "pt"}
    text = ladle("info", d).out
    n_params = sum(int(np.prod(a.shape)) for _, _, a in m)
    assert f"{len(m)} tensors, {n_params} parameters, 2 files" in text
    assert "model.layers.0.mlp.up_proj.weight" in text and "BF16" in text
