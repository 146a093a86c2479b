"""Every method gives the same bits for any thread count: tensors larger
than one work item are split across threads (-j 1, 2, 5), and statistics
passes, tie counts and random draws must not depend on how."""
import numpy as np
import pytest

import st
from conftest import ladle


def family(tmp_path, rng, dtype):
    # MLP matrices of 320 x 960 = 307,200 elements: several work items each
    base = st.llama(rng, dtype, layers=1, hidden=320, inter=960, vocab=64)
    paths = []
    for i, m in enumerate([base] + [st.llama(rng, dtype, layers=1, hidden=320, inter=960,
                                             vocab=64, base=base, noise=0.02 * (i + 1))
                                    for i in range(3)]):
        p = tmp_path / f"m{i}.safetensors"
        st.write(p, m)
        paths.append(p)
    return paths


def methods(b, f1, f2, f3):
    adds = ["--base", b, "--add", f"1:{f1}", "--add", f"0.7:{f2}"]
    based = ["--base", b, f1, f2]
    return {
        "lerp": ["lerp", f1, f2, "--alpha", "0.3"],
        "slerp": ["slerp", f1, f2, "--t", "0.3"],
        "nuslerp": ["nuslerp", f1, f2, "--t", "0.3"],
        "nearswap": ["nearswap", f1, f2, "--t", "0.001"],
        "soup": ["soup", f1, f2, f3],
        "soup --sum-first": ["soup", "--sum-first", f1, f2, f3],
        "multislerp": ["multislerp", f1, f2, f3],
        "karcher": ["karcher", f1, f2, f3],
        "task": ["task", *adds],
        "ties": ["ties", *adds, "--density", "0.2"],
        "ties model scope": ["ties", *adds, "--density", "0.3", "--trim-scope", "model"],
        "dare": ["dare", *adds, "--density", "0.5", "--sign-consensus"],
        "breadcrumbs": ["breadcrumbs", *adds, "--density", "0.8"],
        "della": ["della", *adds, "--density", "0.5"],
        "consensus-ties": ["consensus-ties", *adds, "--density", "0.2"],
        "consensus-ta": ["consensus-ta", *based],
        "stock": ["stock", *based],
        "sce": ["sce", *based],
        "ram": ["ram", *based],
        "ram --plus": ["ram", *based, "--plus"],
        "arcee-fusion": ["arcee-fusion", "--base", b, f1],
        "iso-c": ["iso-c", *based],
        "tsv": ["tsv", *based],
    }


@pytest.mark.parametrize("dtype", ["BF16", "F16", "F32"])
def test_every_method_same_bits_for_any_thread_count(tmp_path, rng, dtype):
    paths = family(tmp_path, rng, dtype)
    for name, args in methods(*paths).items():
        got = []
        for j in (1, 2, 5):
            out = tmp_path / f"out-{j}.safetensors"
            ladle(*args, "-j", j, "-o", out, "-q", "--force")
            got.append({k: (d, a.tobytes()) for k, (d, a) in st.read(out)[0].items()})
        assert got[0] == got[1] == got[2], name
        changed = any(not np.array_equal(a, st.read(paths[1])[0][k][1])
                      for k, (_, a) in st.read(out)[0].items() if k.endswith("proj.weight"))
        assert changed, name  # the merge did something


def test_deferred_writes_same_bytes(tmp_path):
    """A worker that finds another writing the same file keeps its bytes
    for later and merges the next item meanwhile (engine.c, put_at): with
    8 workers on 24 MB tensors that happens some 10-20 times per merge here.
    The output is the same as one worker's, byte for byte, through
    statistics passes (TIES) and with the last deferred write flushed at
    each phase's end."""
    from test_output_safety import big_models
    a, b, c = big_models(tmp_path, 3, 24)
    for args in (["soup", a, b], ["ties", "--base", a, "--add", f"1:{b}", "--add", f"1:{c}",
                                  "--density", "0.3"]):
        files = []
        for j in (1, 8):
            out = tmp_path / f"o{j}.safetensors"
            ladle(*args, "-j", j, "-o", out, "-q", "--force")
            files.append({k: (d, x.tobytes()) for k, (d, x) in st.read(out)[0].items()})
        assert files[0] == files[1], args[0]
