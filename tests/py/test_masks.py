"""ladle masks / masks apply (TALL-mask compression, Wang et al. 2024)
against a numpy reference written from the paper's definitions: masks
m_t = |tau_t| > lambda |tau_MTL - tau_t| in fp32 (tau_MTL summed in task
order, as consensus_ta), packed as numpy.packbits, and task t rebuilt as
base + m_t * tau_MTL."""
import json

import numpy as np
import pytest

import st
from conftest import ladle

F32 = np.float32


def family(tmp_path, rng, dtype, T=3):
    base = st.llama(rng, dtype, layers=2, hidden=16, inter=24, vocab=40)
    base.append(("position_ids", "I64", np.arange(7, dtype=np.int64)))
    fts = []
    for _ in range(T):
        m = st.llama(rng, dtype, layers=2, hidden=16, inter=24, vocab=40, base=base[:-1],
                     noise=0.03)
        # sparse task vectors, so the masks differ
        m = [(n, d, np.where(rng.random(x.shape) < 0.4, x, y).astype(x.dtype))
             for (n, d, x), (_, _, y) in zip(m, base)]
        m.append(base[-1])
        fts.append(m)
    paths = []
    for i, m in enumerate([base] + fts):
        st.write(tmp_path / f"m{i}.safetensors", m)
        paths.append(tmp_path / f"m{i}.safetensors")
    return paths


def reference(paths, tall):
    B = st.load(str(paths[0]))[0]
    X = [st.load(str(p))[0] for p in paths[1:]]
    out = {}
    for n, (d, b) in B.items():
        if d not in ("BF16", "F16", "F32"):
            continue
        b = st.to_f32(d, b)
        taus = [(st.to_f32(d, x[n][1]) - b).astype(F32) for x in X]
        mtl = np.zeros_like(b)
        for t in taus:
            mtl = (mtl + t).astype(F32)
        masks = [np.abs(t) > F32(tall) * np.abs((mtl - t).astype(F32)) for t in taus]
        out[n] = (b, mtl, masks, d)
    return out


@pytest.mark.parametrize("dtype,tall", [("BF16", 0.6), ("F32", 0.3)])
def test_masks_and_apply(tmp_path, rng, dtype, tall):
    paths = family(tmp_path, rng, dtype)
    masks = tmp_path / "masks.safetensors"
    ladle("masks", "--base", paths[0], *paths[1:], "--tall-lambda", str(tall), "-o", masks, "-q")
    got, meta, _ = st.read(masks)
    assert meta["format"] == "ladle-tall-masks" and meta["version"] == "1"
    assert json.loads(meta["tasks"]) == [str(p) for p in paths[1:]]
    assert float(meta["tall_lambda"]) == tall
    ref = reference(paths, tall)
    assert "position_ids" not in got
    some_differ = False
    for n, (b, mtl, ms, d) in ref.items():
        assert got[n][0] == "F32" and got[n][1].tobytes() == mtl.tobytes(), n
        packed = np.stack([np.packbits(m.ravel()) for m in ms])
        assert got["tall_mask." + n][0] == "U8"
        assert np.array_equal(got["tall_mask." + n][1], packed), n
        some_differ |= not np.array_equal(ms[0], ms[1])
    assert some_differ
    B = st.load(str(paths[0]))[0]
    for t in range(3):
        out = tmp_path / f"task{t}.safetensors"
        ladle("masks", "apply", "--base", paths[0], masks, "--task", str(t), "-o", out, "-q")
        model = st.load(str(out))[0]
        assert set(model) == set(B)
        assert np.array_equal(model["position_ids"][1], B["position_ids"][1])
        for n, (b, mtl, ms, d) in ref.items():
            want = st.round_to(d, (b + np.where(ms[t], mtl, F32(0))).astype(F32))
            assert model[n][0] == d and model[n][1].tobytes() == want.tobytes(), (t, n)
    # a task by its label, and another output dtype
    ladle("masks", "apply", "--base", paths[0], masks, "--task", str(paths[2]), "--dtype", "f32",
          "-o", tmp_path / "by_name.safetensors", "-q")
    model = st.load(str(tmp_path / "by_name.safetensors"))[0]
    for n, (b, mtl, ms, d) in ref.items():
        want = (b + np.where(ms[1], mtl, F32(0))).astype(F32)
        assert model[n][0] == "F32" and model[n][1].tobytes() == want.tobytes(), n


def test_masks_refusals(tmp_path, rng):
    paths = family(tmp_path, rng, "F32")
    masks = tmp_path / "masks.safetensors"
    x = tmp_path / "x.safetensors"
    for args, msg in (([paths[1]], "at least two fine-tunes"),
                      ([*paths[1:], "--tall-lambda", "-1"], "--tall-lambda"),
                      ([*paths[1:], "--task", "0"], "masks apply's")):
        r = ladle("masks", "--base", paths[0], *args, "-o", x, check=False)
        assert r.code == 2 and msg in r.err, (args, r.err)
    r = ladle("masks", paths[1], paths[2], "-o", x, check=False)
    assert r.code == 2 and "--base" in r.err
    ladle("masks", "--base", paths[0], *paths[1:], "-o", masks, "-q")
    r = ladle("masks", "apply", "--base", paths[0], masks, "--task", "3", "-o", x, check=False)
    assert r.code == 2 and "tasks 0 to 2" in r.err
    r = ladle("masks", "apply", "--base", paths[0], masks, "--task", "nope", "-o", x, check=False)
    assert r.code == 2 and "not one of the tasks" in r.err
    r = ladle("masks", "apply", "--base", paths[0], paths[1], "--task", "0", "-o", x, check=False)
    assert r.code == 1 and "not a TALL masks file" in r.err
    other = tmp_path / "other.safetensors"
    st.write(other, [("model.norm.weight", "F32", np.ones(5, F32))])
    r = ladle("masks", "apply", "--base", other, masks, "--task", "0", "-o", x, check=False)
    assert r.code == 1 and "another shape" in r.err
    st.write(tmp_path / "nan.safetensors",
             [(n, d, np.full_like(a, np.nan) if d == "F32" else a)
              for n, (d, a) in st.load(str(paths[1]))[0].items()])
    r = ladle("masks", "--base", paths[0], tmp_path / "nan.safetensors", paths[2], "-o", x,
              check=False)
    assert r.code == 1 and "not finite" in r.err
    assert not x.exists()
    # an existing output is kept without --force
    r = ladle("masks", "--base", paths[0], *paths[1:], "-o", masks, check=False)
    assert r.code != 0 and "--force" in r.err
