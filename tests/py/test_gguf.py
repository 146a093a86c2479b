"""GGUF in and out (src/formats/gguf.c, ggml.c) against an independent
reader/writer written from the spec (gguf.py) and numpy references of the
merges. The block formats themselves are held to ggml's own vectors by
tests/unit/test_ggml.c; here K-quant blocks come from those vectors too."""
import os
import struct

import numpy as np
import pytest

import gguf
import st
from conftest import ladle

H = 64
VECTORS = os.path.join(os.path.dirname(__file__), "..", "unit", "ggml_vectors.bin")


def names(layers=4):
    out = ["token_embd.weight"]
    for i in range(layers):
        out += [f"blk.{i}.attn_norm.weight", f"blk.{i}.attn_q.weight", f"blk.{i}.ffn_up.weight"]
    return out + ["output_norm.weight", "output.weight"]


def shape_of(name):
    return (H,) if name.endswith("norm.weight") else (2 * H, H) if "ffn_up" in name else (H, H)


KVS = [("general.architecture", gguf.STRING, "llama"),
       ("general.name", gguf.STRING, "tiny"),
       ("llama.block_count", gguf.U32, 4),
       ("llama.rope.freq_base", gguf.F32, 10000.0),
       ("tokenizer.ggml.tokens", gguf.ARRAY, (gguf.STRING, ["<s>", "</s>", "hello", "ünï"])),
       ("tokenizer.ggml.scores", gguf.ARRAY, (gguf.F32, [0.0, -1.5, 2.25, 3.0])),
       ("tokenizer.chat_template", gguf.STRING, "{{ messages }}")]


def family(tmp_path, rng, qtype="Q8_0", n=2, kvs=KVS, alignment=32, values=None):
    """n GGUF models: matrices in qtype, norms F32. -> paths, {name: [values per model]}"""
    paths, vals = [], {k: [] for k in names()}
    for m in range(n):
        ts = []
        for name in names():
            shape = shape_of(name)
            x = (values[m] if values is not None else
                 rng.standard_normal(shape).astype(np.float32) * 0.02 + m * 0.01)
            x = np.broadcast_to(np.float32(x), shape) if np.ndim(x) == 0 else x
            if len(shape) == 1 or qtype in gguf.PLAIN:
                t = "F32" if len(shape) == 1 else qtype
                raw = np.ascontiguousarray(x).astype(gguf.PLAIN[t]).tobytes()
                v = gguf.values(t, shape, raw).astype(np.float32) if t != "BF16" else \
                    st.to_f32("BF16", gguf.values(t, shape, raw))
            else:
                t, raw = qtype, gguf.quant(qtype, x)
                v = gguf.dequant(t, shape, raw)
            ts.append((name, t, shape, raw))
            vals[name].append(v)
        p = tmp_path / f"m{m}.gguf"
        gguf.write(p, kvs, ts, alignment=alignment)
        paths.append(p)
    return paths, vals


def lerp(a, b, t):
    return (np.float32(1 - t) * a + np.float32(t) * b).astype(np.float32)


def test_q8_0_merge_requantised_as_ggml(tmp_path, rng):
    (a, b), v = family(tmp_path, rng)
    out = tmp_path / "out.gguf"
    ladle("lerp", a, b, "--alpha", "0.3", "-o", out)
    kvs, ts, order = gguf.read(out)
    assert order == names()
    for name in names():
        want = lerp(v[name][0], v[name][1], 0.3)
        tname, shape, raw = ts[name]
        assert shape == shape_of(name)
        if len(shape) == 1:
            assert tname == "F32"
            assert np.array_equal(gguf.values("F32", shape, raw), want), name
        else:
            assert tname == "Q8_0"
            assert raw == gguf.quant("Q8_0", want), name
    kv = {k: (t, x) for k, t, x in kvs}
    for key, t, x in KVS:
        if key != "general.name":
            assert kv[key] == (t, x), key
    assert kv["general.name"] == (gguf.STRING, "out")
    assert '"method":"lerp"' in kv["ladle.recipe"][1]


def test_gguf_to_safetensors_and_same_merge_as_dequantised(tmp_path, rng):
    (base, a, b), v = family(tmp_path, rng, n=3)
    # the same weights, dequantised, as safetensors
    sts = []
    for m in range(3):
        p = tmp_path / f"d{m}.safetensors"
        st.write(p, [(k, "F32", v[k][m]) for k in names()])
        sts.append(p)
    args = ["--density", "0.4", "-o"]
    ladle("ties", "--base", base, "--add", f"1:{a}", "--add", f"0.7:{b}", *args,
          tmp_path / "g.safetensors")
    ladle("ties", "--base", sts[0], "--add", f"1:{sts[1]}", "--add", f"0.7:{sts[2]}", *args,
          tmp_path / "s.safetensors")
    g, _, go = st.read(tmp_path / "g.safetensors")
    s, _, so = st.read(tmp_path / "s.safetensors")
    assert go == so == names()
    for k in names():
        assert g[k][0] == "F32"  # GGUF blocks to safetensors: f32 holds them exactly
        assert np.array_equal(g[k][1], s[k][1]), k
    # and a plain lerp against numpy
    ladle("lerp", a, b, "--alpha", "0.25", "-o", tmp_path / "l.safetensors")
    l, _, _ = st.read(tmp_path / "l.safetensors")
    for k in names():
        assert np.array_equal(l[k][1], lerp(v[k][1], v[k][2], 0.25)), k


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
def test_safetensors_gguf_safetensors_lossless(tmp_path, rng, dtype):
    ts = [(k, dtype, st.round_to(dtype, rng.standard_normal(shape_of(k)).astype(np.float32)))
          for k in names()]
    src = tmp_path / "src.safetensors"
    st.write(src, ts)
    ladle("soup", src, "-o", tmp_path / "x.gguf")
    _, g, _ = gguf.read(tmp_path / "x.gguf")
    for k, d, arr in ts:
        assert g[k][0] == dtype and g[k][1] == arr.shape
        assert np.array_equal(gguf.values(dtype, arr.shape, g[k][2]), arr), k
    ladle("soup", tmp_path / "x.gguf", "-o", tmp_path / "back.safetensors")
    back, _, order = st.read(tmp_path / "back.safetensors")
    assert order == [k for k, _, _ in ts]
    for k, d, arr in ts:
        assert back[k][0] == d and np.array_equal(back[k][1], arr), k


def test_quant_option(tmp_path, rng):
    (a, b), v = family(tmp_path, rng, qtype="F32")
    out = tmp_path / "q4.gguf"
    ladle("lerp", a, b, "--alpha", "0.5", "--quant", "q4_0", "-o", out)
    kvs, ts, _ = gguf.read(out)
    for k in names():
        want = lerp(v[k][0], v[k][1], 0.5)
        tname, shape, raw = ts[k]
        if len(shape) == 1:  # norms stay f32, as llama.cpp's quantize keeps them
            assert tname == "F32" and np.array_equal(gguf.values("F32", shape, raw), want)
        else:
            assert tname == "Q4_0" and raw == gguf.quant("Q4_0", want), k
    assert ("general.file_type", gguf.U32, 2) in kvs
    r = ladle("lerp", a, b, "--alpha", "0.5", "--quant", "q4_0", "-o",
              tmp_path / "x.safetensors", check=False)
    assert r.code == 2 and "--quant is for GGUF outputs" in r.err
    r = ladle("lerp", a, b, "--alpha", "0.5", "--quant", "q4_k", "-o", tmp_path / "y.gguf",
              check=False)
    assert r.code == 2 and "q8_0, q4_0" in r.err


def ggml_records():
    """(type id, values, block bytes, floats ggml dequantised them to) from the vectors."""
    data = open(VECTORS, "rb").read()
    at = len(b"LADLE-GGML-VECTORS 1\n")
    out = []
    while at < len(data):
        kind, t, n, nb = struct.unpack_from("<IIII", data, at)
        at += 16
        if kind == 0:
            out.append((t, n, data[at:at + nb],
                        np.frombuffer(data[at + nb:at + nb + 4 * n], dtype=np.float32)))
        at += nb + 4 * n
    return out


@pytest.mark.parametrize("tname", ["Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
                                   "Q6_K"])
def test_types_ladle_reads_from_ggml_blocks(tmp_path, tname):
    # the last two records of each type are rows ggml's own quantiser made
    recs = [r for r in ggml_records() if r[0] == gguf.TYPE[tname]][-2:]
    shape = (4, 256)
    paths = []
    for m, (_, n, raw, _) in enumerate(recs):
        p = tmp_path / f"k{m}.gguf"
        gguf.write(p, KVS[:1], [("blk.0.ffn_up.weight", tname, shape, raw)])
        paths.append(p)
    ladle("lerp", *paths, "--alpha", "0.5", "-o", tmp_path / "o.safetensors")
    o, _, _ = st.read(tmp_path / "o.safetensors")
    want = lerp(recs[0][3].reshape(shape), recs[1][3].reshape(shape), 0.5)
    assert np.array_equal(o["blk.0.ffn_up.weight"][1], want)
    # a GGUF output: a type ladle cannot write becomes Q8_0, and says so
    r = ladle("lerp", *paths, "--alpha", "0.5", "-o", tmp_path / "o.gguf")
    assert f"are {tname}, which ladle cannot write" in r.err
    _, g, _ = gguf.read(tmp_path / "o.gguf")
    assert g["blk.0.ffn_up.weight"][0] == "Q8_0"
    assert g["blk.0.ffn_up.weight"][2] == gguf.quant("Q8_0", want)


def test_unreadable_types_copied_only_when_identical(tmp_path, rng):
    blocks = rng.integers(0, 256, 2 * 66, dtype=np.uint8).tobytes()
    other = rng.integers(0, 256, 2 * 66, dtype=np.uint8).tobytes()
    x = rng.standard_normal((H, H)).astype(np.float32)

    def model(name, iq):
        p = tmp_path / name
        gguf.write(p, KVS[:1], [("blk.0.attn_q.weight", "F32", (H, H), x.tobytes()),
                                ("blk.0.attn_k.weight", "IQ2_XXS", (2, 256), iq)])
        return p
    a, b, c = model("a.gguf", blocks), model("b.gguf", blocks), model("c.gguf", other)
    ladle("lerp", a, b, "--alpha", "0.5", "-o", tmp_path / "ab.gguf")
    _, g, _ = gguf.read(tmp_path / "ab.gguf")
    assert g["blk.0.attn_k.weight"] == ("IQ2_XXS", (2, 256), blocks)
    r = ladle("lerp", a, c, "--alpha", "0.5", "-o", tmp_path / "ac.gguf", check=False)
    assert r.code == 1 and r.err.count("\n") == 1
    assert "'blk.0.attn_k.weight' is IQ2_XXS, which ladle cannot read" in r.err
    assert not (tmp_path / "ac.gguf").exists()
    r = ladle("lerp", a, b, "--alpha", "0.5", "-o", tmp_path / "ab.safetensors", check=False)
    assert r.code == 1 and "IQ2_XXS, a GGUF type ladle cannot read, which only a .gguf" in r.err
    assert not (tmp_path / "ab.safetensors").exists()


def test_alignment_kept(tmp_path, rng):
    kvs = KVS + [("general.alignment", gguf.U32, 64)]
    (a, b), v = family(tmp_path, rng, kvs=kvs, alignment=64)
    ladle("lerp", a, b, "--alpha", "0.5", "-o", tmp_path / "o.gguf")
    kvs2, ts, _ = gguf.read(tmp_path / "o.gguf")  # the reader checks each offset % 64
    assert ("general.alignment", gguf.U32, 64) in kvs2
    data = open(tmp_path / "o.gguf", "rb").read()
    assert len(data) % 64 == 0


def test_layer_gradient_on_blk_names(tmp_path, rng):
    (a, b), _ = family(tmp_path, rng, qtype="F32", values=[0.0, 1.0])
    ladle("lerp", a, b, "--alpha", "0,1", "-o", tmp_path / "o.gguf")
    _, ts, _ = gguf.read(tmp_path / "o.gguf")
    got = {k: gguf.values(*ts[k])[(0,) * len(ts[k][1])] for k in names()}
    assert got["token_embd.weight"] == 0 and got["output.weight"] == 1
    for i in range(4):
        assert got[f"blk.{i}.attn_q.weight"] == np.float32(np.float32(i / 3)), i


def test_info_and_diff(tmp_path, rng):
    (a, b), _ = family(tmp_path, rng)
    r = ladle("info", a)
    assert "Q8_0" in r.out and "llama.block_count: 4" in r.out
    assert "tokenizer.ggml.tokens: [4 STRING values]" in r.out
    r = ladle("info", a, "--json")
    assert '"dtype": "Q8_0"' in r.out
    r = ladle("diff", a, b)
    assert "cosine" in r.out.lower()


def bad_files(tmp_path):
    """(name, bytes, what the error says)"""
    def s(x):
        return struct.pack("<Q", len(x)) + x
    kv = s(b"general.architecture") + struct.pack("<I", 8) + s(b"llama")
    ti = s(b"w") + struct.pack("<IQQIQ", 2, 32, 2, 0, 0)
    good = b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + kv + ti
    good += b"\0" * ((-len(good)) % 32) + b"\0" * 256

    def with_tensor(ti2, n=1, data=256):
        h = b"GGUF" + struct.pack("<IQQ", 3, n, 1) + kv + ti2
        return h + b"\0" * ((-len(h)) % 32) + b"\0" * data
    return [
        ("version1", b"GGUF" + struct.pack("<IQQ", 1, 0, 0), "version 1"),
        ("version4", b"GGUF" + struct.pack("<IQQ", 4, 0, 0), "version 4"),
        ("truncated", good[:40], "ends inside"),
        ("huge_counts", b"GGUF" + struct.pack("<IQQ", 3, 1 << 40, 1 << 40), "claims"),
        ("huge_string", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 62),
         "bytes long"),
        ("bad_value_type", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + s(b"k") +
         struct.pack("<I", 13), "value type 13"),
        ("nested_array", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + s(b"k") +
         struct.pack("<IIQ", 9, 9, 1), "nested"),
        ("array_past_end", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + s(b"k") +
         struct.pack("<IIQ", 9, 4, 1 << 40), "ends inside"),
        ("dup_key", b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + kv + kv, "appears twice"),
        ("bad_alignment", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + s(b"general.alignment") +
         struct.pack("<II", 4, 48), "power of two"),
        ("too_many_dims", with_tensor(s(b"w") + struct.pack("<I", 5) + b"\1\0\0\0\0\0\0\0" * 5 +
                                      struct.pack("<IQ", 0, 0)), "5 dimensions"),
        ("unknown_type", with_tensor(s(b"w") + struct.pack("<IQQIQ", 2, 32, 2, 4, 0)),
         "ggml type 4"),
        ("partial_block", with_tensor(s(b"w") + struct.pack("<IQQIQ", 2, 16, 2, 8, 0)),
         "not whole blocks"),
        ("misaligned", with_tensor(s(b"w") + struct.pack("<IQQIQ", 2, 32, 2, 0, 8)),
         "offset 8"),
        ("past_end", with_tensor(s(b"w") + struct.pack("<IQQIQ", 2, 32, 2, 0, 0), data=100),
         "past the end"),
        ("dup_tensor", with_tensor(s(b"w") + struct.pack("<IQQIQ", 2, 32, 2, 0, 0) + s(b"w") +
                                   struct.pack("<IQQIQ", 2, 32, 2, 0, 256), n=2, data=512),
         "appears twice"),
        ("long_name", with_tensor(s(b"x" * 64) + struct.pack("<IQQIQ", 2, 32, 2, 0, 0)),
         "bytes long"),
    ]


@pytest.mark.parametrize("case", range(17))
def test_bad_gguf_refused(tmp_path, case):
    name, data, says = bad_files(tmp_path)[case]
    p = tmp_path / f"{name}.gguf"
    p.write_bytes(data)
    before = p.read_bytes()
    for args in (["info", p], ["lerp", p, p, "--alpha", "0.5", "-o", tmp_path / "o.gguf"]):
        r = ladle(*args, check=False)
        assert r.code == 1, (name, r.err)
        assert r.err.startswith("ladle: error: ") and r.err.count("\n") == 1, r.err
        assert str(p) in r.err and says in r.err, (name, r.err)
    assert not (tmp_path / "o.gguf").exists()
    assert p.read_bytes() == before


NODE_DIR = os.path.join(os.path.dirname(__file__), "..", "node")


def test_independent_reader_sees_the_same_file(tmp_path, rng):
    """Hugging Face's @huggingface/gguf (tests/node, installed by
    tools/install-deps.sh) reads ladle's output: the same tensors, shapes,
    types, offsets and metadata as the spec-written reader."""
    import json
    import shutil
    import subprocess
    if not shutil.which("node") or not os.path.isdir(os.path.join(NODE_DIR, "node_modules")):
        pytest.skip("tests/node is not installed (npm ci --prefix tests/node)")
    (a, b), _ = family(tmp_path, rng)
    out = tmp_path / "o.gguf"
    ladle("lerp", a, b, "--alpha", "0.5", "--quant", "q4_0", "-o", out)
    js = json.loads(subprocess.run(["node", os.path.join(NODE_DIR, "read_gguf.mjs"), str(out)],
                                   capture_output=True, text=True, check=True).stdout)
    kvs, ts, order = gguf.read(out)
    assert [t["name"] for t in js["tensorInfos"]] == order
    for t in js["tensorInfos"]:
        tname, shape, _ = ts[t["name"]]
        assert gguf.GGML[t["dtype"]][0] == tname
        assert tuple(int(d) for d in reversed(t["shape"])) == shape
    meta = js["metadata"]
    assert meta["version"] == 3 and int(meta["tensor_count"]) == len(order)
    for key, vtype, v in kvs:
        if vtype == gguf.ARRAY:
            assert meta[key] == v[1], key
        elif vtype == gguf.F32:
            assert meta[key] == pytest.approx(v), key
        elif vtype in (gguf.U64, gguf.I64):
            assert int(meta[key]) == v, key
        else:
            assert meta[key] == v, key


def test_greedy_soup_and_sweep_candidates_are_gguf(tmp_path, rng):
    """A search over GGUF models hands the evaluator GGUF candidates (what
    llama.cpp loads), and the result equals the plain merge."""
    (a, b), _ = family(tmp_path, rng)
    ev = tmp_path / "ev.sh"
    # anything but a GGUF file fails the evaluation, and so the search
    ev.write_text('#!/bin/sh\ncase "$1" in *.gguf) head -c 4 "$1" | grep -q GGUF || exit 3; '
                  'echo 1;; *) exit 3;; esac\n')
    ev.chmod(0o755)
    ladle("sweep", "--grid", "t=0.25,0.75", "--eval", f"{ev} {{model}}", "-o", tmp_path / "s.gguf",
          "--", "lerp", a, b, "--alpha", "{t}")
    ladle("lerp", a, b, "--alpha", "0.25", "-o", tmp_path / "l.gguf")
    _, s, _ = gguf.read(tmp_path / "s.gguf")
    _, l, _ = gguf.read(tmp_path / "l.gguf")
    assert s == l  # every score ties at 1: the first point is the best
    ladle("soup", "--greedy", "--eval", f"{ev} {{model}}", a, b, "--scores", "1,1", "-o",
              tmp_path / "g.gguf")
    assert os.path.exists(tmp_path / "g.gguf")


def test_recipes_on_gguf(tmp_path, rng):
    """mergekit recipes take GGUF models: a slerp recipe equals the slerp
    command, and a frankenmerge renumbers blk.N and sets ARCH.block_count."""
    (a, b), v = family(tmp_path, rng, qtype="F32")
    (tmp_path / "s.yml").write_text(f"models:\n  - model: {a}\n  - model: {b}\nmerge_method: slerp\n"
                                    f"base_model: {a}\nparameters:\n  t: 0.3\n")
    ladle("merge", tmp_path / "s.yml", "-o", tmp_path / "r.gguf")
    ladle("slerp", a, b, "--t", "0.3", "-o", tmp_path / "c.gguf")
    assert gguf.read(tmp_path / "r.gguf")[1] == gguf.read(tmp_path / "c.gguf")[1]
    (tmp_path / "f.yml").write_text(
        f"slices:\n  - sources:\n      - model: {a}\n        layer_range: [0, 3]\n"
        f"  - sources:\n      - model: {b}\n        layer_range: [1, 4]\nmerge_method: passthrough\n")
    ladle("merge", tmp_path / "f.yml", "-o", tmp_path / "f.gguf")
    kvs, ts, _ = gguf.read(tmp_path / "f.gguf")
    assert ("llama.block_count", gguf.U32, 6) in kvs
    for out, (m, i) in enumerate([(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (1, 3)]):
        got = gguf.values(*ts[f"blk.{out}.attn_q.weight"])
        assert np.array_equal(got, v[f"blk.{i}.attn_q.weight"][m]), out
    assert np.array_equal(gguf.values(*ts["output.weight"]), v["output.weight"][1])
