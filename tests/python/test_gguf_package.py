"""GGUF files through the Python package: the same merges as the CLI, raw
blocks from ladle.load (tests/py/gguf.py is the independent reader)."""
import numpy as np

import gguf
import ladle
from conftest import rng  # noqa: F401


def test_gguf_paths_merge_like_the_cli(tmp_path, rng):  # noqa: F811
    x = [rng.standard_normal((64, 64)).astype(np.float32) for _ in range(2)]
    paths = []
    for i, a in enumerate(x):
        p = tmp_path / f"m{i}.gguf"
        gguf.write(p, [("general.architecture", gguf.STRING, "llama")],
                   [("blk.0.attn_q.weight", "Q8_0", (64, 64), gguf.quant("Q8_0", a)),
                    ("blk.0.attn_norm.weight", "F32", (64,), a[0].tobytes())])
        paths.append(p)
    deq = [gguf.dequant("Q8_0", (64, 64), gguf.quant("Q8_0", a)) for a in x]
    m = ladle.load(paths[0])
    assert m["blk.0.attn_q.weight"].dtype == np.uint8  # ggml blocks: raw bytes
    assert m["blk.0.attn_q.weight"].tobytes() == gguf.quant("Q8_0", x[0])
    sd = ladle.linear_interpolate(*paths, alpha=0.25)
    want = (np.float32(0.75) * deq[0] + np.float32(0.25) * deq[1]).astype(np.float32)
    assert sd["blk.0.attn_q.weight"].dtype == np.float32
    assert np.array_equal(sd["blk.0.attn_q.weight"], want)
    out = ladle.linear_interpolate(*paths, alpha=0.25, out=tmp_path / "o.gguf")
    _, ts, _ = gguf.read(out)
    assert ts["blk.0.attn_q.weight"][0] == "Q8_0"
    assert ts["blk.0.attn_q.weight"][2] == gguf.quant("Q8_0", want)


def test_save_of_a_gguf_model(tmp_path, rng):  # noqa: F811
    """ladle.save copies a GGUF model's blocks as stored into GGUF, and
    refuses a safetensors file, which cannot hold them."""
    x = rng.standard_normal((4, 64)).astype(np.float32)
    src = tmp_path / "m.gguf"
    gguf.write(src, [("general.architecture", gguf.STRING, "llama")],
               [("blk.0.w", "Q4_0", (4, 64), gguf.quant("Q4_0", x)),
                ("blk.0.n", "F32", (64,), x[0].tobytes())])
    out = ladle.save(ladle.load(src), tmp_path / "copy.gguf") or tmp_path / "copy.gguf"
    kvs, ts, _ = gguf.read(out)
    assert ts == gguf.read(src)[1]
    assert ("general.architecture", gguf.STRING, "llama") in kvs
    try:
        ladle.save(ladle.load(src), tmp_path / "x.safetensors")
        raise AssertionError("a safetensors copy of GGUF blocks was written")
    except ladle.LadleError as e:
        assert "'blk.0.w' is Q4_0, GGUF blocks, which only a .gguf" in str(e)
    assert not (tmp_path / "x.safetensors").exists()
