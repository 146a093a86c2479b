"""ladle.load (lazy, memory-mapped, read-only) and ladle.save (atomic,
what the writer of every ladle output does), against the independent
safetensors I/O of tests/py/st.py."""
import json
import os

import numpy as np
import pytest
import torch

import ladle
import st
from models import as_kind, family, raw


def test_load_is_lazy_zero_copy_and_read_only(tmp_path, rng):
    paths, models = family(tmp_path, rng, "BF16", n=1)
    folder = tmp_path / "hf"
    st.write_hf(folder, models[1] + [("extra.f16", "F16", np.arange(6, dtype=np.float16)
                                       .reshape(2, 3))], st.config(), shards=2)
    m = ladle.load(folder)
    want = {n: (d, a) for n, d, a in models[1]}
    assert list(m) == st.load(str(folder))[1]  # shard, then offset order
    assert len(m) == len(want) + 1 and m.config["model_type"] == "llama"
    for name, (d, a) in want.items():
        v = m[name]
        assert m.dtype(name) == d
        if d == "BF16":
            assert isinstance(v, torch.Tensor) and v.dtype == torch.bfloat16
            assert v.view(torch.int16).numpy().view(np.uint16).tobytes() == a.tobytes()
        else:
            assert isinstance(v, np.ndarray) and not v.flags.writeable and not v.flags.owndata
            assert v.tobytes() == a.tobytes()
    e = m["extra.f16"]
    assert e.dtype == np.float16 and e.shape == (2, 3) and not e.flags.writeable
    with pytest.raises(ValueError):
        e[0, 0] = 1  # read-only: the file is never modified
    with pytest.raises(ladle.LadleError, match="no such file"):
        ladle.load(tmp_path / "nope")


def test_bf16_helpers_match_torch(rng):
    x = rng.standard_normal(10000).astype(np.float32) * 100
    x[:4] = [np.inf, -np.inf, np.nan, 1e-40]
    bits = ladle.f32_to_bf16(x)
    want = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    nan = np.isnan(x)  # NaN stays NaN (payloads differ between torch versions)
    assert np.array_equal(bits[~nan], want[~nan]) and np.all(bits[nan] & 0x7f80 == 0x7f80)
    back = ladle.bf16_to_f32(bits)
    ref = torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16).float().numpy()
    assert np.array_equal(back[~np.isnan(back)], ref[~np.isnan(ref)])


@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_save_round_trip(tmp_path, rng, kind):
    _, models = family(tmp_path, rng, "BF16", n=1)
    sd = as_kind(models[1], kind)
    out = tmp_path / "s.safetensors"
    assert ladle.save(sd, out, metadata={"note": "hi"}) == str(out)
    got, meta, order = st.read(out)
    assert meta == {"note": "hi", "format": "pt"}
    assert order == [n for n, _, _ in models[1]]
    for n, d, a in models[1]:
        assert got[n][0] == d and got[n][1].tobytes() == a.tobytes()
    # loading it back and saving again copies the bytes
    ladle.save(ladle.load(out), tmp_path / "again.safetensors")
    assert st.read(tmp_path / "again.safetensors")[0].keys() == got.keys()
    # nothing is replaced without force; a folder output is a HF folder
    with pytest.raises(ladle.LadleError, match="exists"):
        ladle.save(sd, out)
    ladle.save(sd, out, force=True)
    ladle.save(sd, tmp_path / "folder", shard_size="100KB")
    assert os.path.exists(tmp_path / "folder" / "model.safetensors.index.json")
    assert not os.path.exists(tmp_path / "folder" / "README.md")  # a save is not a merge


def test_save_refuses_what_it_cannot_hold(tmp_path):
    out = tmp_path / "x.safetensors"
    with pytest.raises(ladle.LadleError, match="not a torch tensor"):
        ladle.save({"a": [1.0]}, out)
    with pytest.raises(ladle.LadleError, match="metadata"):
        ladle.save({"a": np.ones(2, np.float32)}, out, metadata={"n": 1})
    with pytest.raises(ladle.LadleError, match="numpy dtype"):
        ladle.save({"a": np.ones(2, np.float128)}, out)
    assert not out.exists() and os.listdir(tmp_path) == []


def test_noncontiguous_and_gpu_shaped_inputs(tmp_path):
    a = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    out = ladle.uniform_soup([{"w": a.t()}, {"w": a.t().contiguous()}], tensors="numpy")
    assert np.array_equal(out["w"], a.t().numpy())
    assert json.dumps(ladle.__all__)


def test_load_pytorch_checkpoint(tmp_path):
    """A .bin loads lazily as torch.load gives it, with nothing unpickled."""
    g = torch.Generator().manual_seed(0)
    sd = {"w": torch.randn(4, 3, generator=g).to(torch.bfloat16), "ids": torch.arange(5),
          "v": torch.randn(9, generator=g)[3:7]}
    torch.save(sd, tmp_path / "m.bin")
    m = ladle.load(tmp_path / "m.bin")
    assert sorted(m) == sorted(sd)
    for k, v in sd.items():  # numpy arrays, bf16 as torch tensors
        got = m[k] if isinstance(m[k], torch.Tensor) else torch.from_numpy(np.array(m[k]))
        assert torch.equal(got, v), k
    soup = ladle.uniform_soup([tmp_path / "m.bin", tmp_path / "m.bin"], tensors="torch")
    assert torch.equal(soup["w"], sd["w"]) and torch.equal(soup["v"], sd["v"])
