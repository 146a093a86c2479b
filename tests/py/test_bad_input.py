"""Every reader rule has a crafted file here. Each must give one line
'ladle: error: FILE: ...' naming the problem, a non-zero exit, and no
output; and the input must be left as it was."""
import hashlib
import json
import os
import struct

import numpy as np
import pytest

import st
from conftest import ladle


def raw_file(path, header, data=b"", length=None):
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(text) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + text + data)
    return path


def t(dtype, shape, start, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [start, end]}


GOOD = {"a": t("F32", [2], 0, 8), "b": t("F32", [2], 8, 16)}

CASES = {
    "too_short": (lambda p: p.write_bytes(b"\x10\x00\x00"), "too short"),
    "empty_file": (lambda p: p.write_bytes(b""), "too short"),
    "header_len_zero": (lambda p: raw_file(p, b"", length=0), "header length is 0"),
    "header_len_past_eof": (lambda p: raw_file(p, GOOD, b"\0" * 16, length=10_000),
                            "runs past the end"),
    "header_len_huge": (lambda p: raw_file(p, GOOD, b"\0" * 16, length=2**63 + 5),
                        "exceeds the 100 MB limit"),
    "header_over_100mb": (lambda p: raw_file(p, GOOD, b"\0" * 16, length=100_000_001),
                          "exceeds the 100 MB limit"),
    "invalid_json": (lambda p: raw_file(p, b'{"a": {"dtype": "F32",', b""), "not valid JSON"),
    "invalid_utf8": (lambda p: raw_file(p, b'{"\xff\xfe": {}}', b""), "not valid JSON"),
    "not_an_object": (lambda p: raw_file(p, b"[1, 2, 3]", b""), "not a JSON object"),
    "unknown_dtype": (lambda p: raw_file(p, {"a": t("F12", [2], 0, 8)}, b"\0" * 8),
                      'unknown dtype "F12"'),
    "shape_overflow": (lambda p: raw_file(p, {"a": t("F32", [2**62, 2**62], 0, 8)}, b"\0" * 8),
                       "overflows"),
    "bytes_overflow": (lambda p: raw_file(p, {"a": t("F64", [2**62], 0, 8)}, b"\0" * 8),
                       "overflows"),
    "shape_mismatch": (lambda p: raw_file(p, {"a": t("F32", [3], 0, 8)}, b"\0" * 8),
                       "need 12 bytes"),
    "negative_offset": (lambda p: raw_file(p, {"a": t("F32", [2], -8, 0)}, b"\0" * 8),
                        "not a non-negative integer"),
    "huge_offset": (lambda p: raw_file(p, {"a": t("F32", [2], 2**60, 2**60 + 8)}, b"\0" * 8),
                    "tile"),
    "offsets_beyond_int64": (lambda p: raw_file(p, b'{"a":{"dtype":"F32","shape":[2],'
                                                  b'"data_offsets":[0,99999999999999999999]}}',
                                                b""), "not valid JSON"),
    "end_before_start": (lambda p: raw_file(p, {"a": t("F32", [0], 8, 0)}, b"\0" * 8),
                         "before start"),
    "overlap": (lambda p: raw_file(p, {"a": t("F32", [2], 0, 8), "b": t("F32", [2], 4, 12)},
                                   b"\0" * 12), "overlap"),
    "gap": (lambda p: raw_file(p, {"a": t("F32", [2], 0, 8), "b": t("F32", [2], 12, 20)},
                               b"\0" * 20), "gap"),
    "not_from_zero": (lambda p: raw_file(p, {"a": t("F32", [2], 8, 16)}, b"\0" * 16), "gap"),
    "data_past_eof": (lambda p: raw_file(p, GOOD, b"\0" * 12), "truncated"),
    "trailing_bytes": (lambda p: raw_file(p, GOOD, b"\0" * 20), "trailing bytes"),
    "duplicate_names": (lambda p: raw_file(p, b'{"a":{"dtype":"F32","shape":[2],"data_offsets":'
                                              b'[0,8]},"a":{"dtype":"F32","shape":[2],'
                                              b'"data_offsets":[8,16]}}', b"\0" * 16),
                        "duplicate"),
    "metadata_not_string": (lambda p: raw_file(p, {"__metadata__": {"n": 1}, **GOOD},
                                               b"\0" * 16), "not a string"),
    "metadata_not_object": (lambda p: raw_file(p, {"__metadata__": "x", **GOOD}, b"\0" * 16),
                            "__metadata__"),
    "float_shape": (lambda p: raw_file(p, {"a": {"dtype": "F32", "shape": [2.0],
                                                 "data_offsets": [0, 8]}}, b"\0" * 8),
                    "not a non-negative integer"),
    "missing_offsets": (lambda p: raw_file(p, {"a": {"dtype": "F32", "shape": [2]}}, b"\0" * 8),
                        "data_offsets"),
    "three_offsets": (lambda p: raw_file(p, {"a": {"dtype": "F32", "shape": [2],
                                                   "data_offsets": [0, 8, 9]}}, b"\0" * 8),
                      "data_offsets"),
    "too_many_dims": (lambda p: raw_file(p, {"a": t("F32", [1] * 17 + [2], 0, 8)}, b"\0" * 8),
                      "at most 16"),
    "subbyte_misaligned": (lambda p: raw_file(p, {"a": t("F4", [3], 0, 2)}, b"\0" * 2),
                           "whole bytes"),
}


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_file_is_rejected(tmp_path, rng, case):
    make, words = CASES[case]
    bad = tmp_path / "bad.safetensors"
    make(bad)
    before = sha(bad)
    good = tmp_path / "good.safetensors"
    st.write(good, [("a", "F32", np.ones(2, np.float32)), ("b", "F32", np.ones(2, np.float32))])
    r = ladle("info", bad, check=False)
    lines = r.err.strip().splitlines()
    assert r.code == 1 and len(lines) == 1, r.err
    assert lines[0].startswith(f"ladle: error: {bad}: "), lines[0]
    assert words in lines[0], lines[0]
    out = tmp_path / "out.safetensors"
    r = ladle("lerp", good, bad, "--alpha", "0.5", "-o", out, check=False)
    assert r.code == 1 and str(bad) in r.err
    assert sorted(os.listdir(tmp_path)) == ["bad.safetensors", "good.safetensors"]
    assert sha(bad) == before


def test_every_safetensors_dtype_is_accepted(tmp_path):
    dtypes = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2,
              "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8,
              "U64": 8, "C64": 8}
    header, off = {}, 0
    for name, size in dtypes.items():
        header[name] = t(name, [4], off, off + 4 * size)
        off += 4 * size
    header["F4"] = t("F4", [4], off, off + 2)
    header["F6_E2M3"] = t("F6_E2M3", [4], off + 2, off + 5)
    header["F6_E3M2"] = t("F6_E3M2", [4], off + 5, off + 8)
    f = raw_file(tmp_path / "all.safetensors", header, bytes(range(256))[: off + 8])
    r = ladle("info", f, "--json")
    info = json.loads(r.out)
    assert sorted(x["dtype"] for x in info["tensors"]) == sorted(header)
    # merging refuses the low-bit floats (quantised weights or their scales)
    out = tmp_path / "o.safetensors"
    r = ladle("soup", f, f, "-o", out, check=False)
    assert r.code == 1 and "quantised" in r.err and not out.exists(), r.err
    # and copies the integer and bool ones unchanged from the first model
    header, off = {}, 0
    for name in ("BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64", "F32"):
        header[name] = t(name, [4], off, off + 4 * dtypes[name])
        off += 4 * dtypes[name]
    f = raw_file(tmp_path / "ints.safetensors", header, bytes(range(256))[:off])
    ladle("soup", f, f, "-o", out)
    src = f.read_bytes()
    n = struct.unpack("<Q", src[:8])[0]
    outb = out.read_bytes()
    on = struct.unpack("<Q", outb[:8])[0]
    ohdr = json.loads(outb[8:8 + on])
    for name in header:
        s, e = header[name]["data_offsets"]
        os_, oe = ohdr[name]["data_offsets"]
        assert outb[8 + on + os_:8 + on + oe] == src[8 + n + s:8 + n + e], name


def test_zero_length_tensors(tmp_path):
    f = raw_file(tmp_path / "z.safetensors",
                 {"empty": t("F32", [0, 4], 0, 0), "a": t("BF16", [2], 0, 4)}, b"\0\x3f\0\x40")
    ladle("info", f)
    out = tmp_path / "o.safetensors"
    ladle("soup", f, f, "-o", out, "-q")
    got, _, _ = st.read(out)
    assert got["empty"][1].shape == (0, 4)


def index_model(tmp_path, rng):
    m = st.llama(rng, "F32", layers=1)
    d = tmp_path / "sharded"
    st.write_hf(d, m, st.config(dtype="float32"), shards=2)
    return d


def edit_index(d, fn):
    p = d / "model.safetensors.index.json"
    idx = json.loads(p.read_text())
    fn(idx)
    p.write_text(json.dumps(idx))


@pytest.mark.parametrize("case,words", [
    ("missing_shard", "does not exist"),
    ("missing_tensor", "does not hold it"),
    ("maps_elsewhere", "maps to"),
    ("unlisted_tensor", "does not list"),
    ("path_traversal", "not a file name"),
    ("no_weight_map", "weight_map"),
    ("bad_json", "not valid JSON"),
])
def test_bad_index(tmp_path, rng, case, words):
    d = index_model(tmp_path, rng)
    shards = sorted(x for x in os.listdir(d) if x.endswith(".safetensors"))
    if case == "missing_shard":
        os.remove(d / shards[1])
    elif case == "missing_tensor":
        edit_index(d, lambda i: i["weight_map"].__setitem__("model.ghost.weight", shards[0]))
    elif case == "maps_elsewhere":
        def move(i):
            name = next(k for k, v in i["weight_map"].items() if v == shards[0])
            i["weight_map"][name] = shards[1]
        edit_index(d, move)
    elif case == "unlisted_tensor":
        edit_index(d, lambda i: i["weight_map"].pop("model.norm.weight"))
    elif case == "path_traversal":
        edit_index(d, lambda i: i["weight_map"].__setitem__("model.norm.weight", "../x.safetensors"))
    elif case == "no_weight_map":
        edit_index(d, lambda i: i.pop("weight_map"))
    elif case == "bad_json":
        (d / "model.safetensors.index.json").write_text("{nope")
    r = ladle("info", d, check=False)
    assert r.code == 1 and len(r.err.strip().splitlines()) == 1 and words in r.err, r.err
    assert r.err.startswith("ladle: error: ")


def test_missing_model_and_hub_names(tmp_path):
    r = ladle("info", tmp_path / "nope.safetensors", check=False)
    assert r.code == 1 and "no such file" in r.err
    r = ladle("info", "meta-llama/Llama-3.1-8B", check=False)
    assert r.code == 1 and "download it first" in r.err
    (tmp_path / "empty").mkdir()
    r = ladle("info", tmp_path / "empty", check=False)
    assert r.code == 1 and "no model.safetensors" in r.err


def test_bad_config_json(tmp_path, rng):
    d = tmp_path / "m"
    st.write_hf(d, st.llama(rng, "F32", layers=1), st.config())
    (d / "config.json").write_text("{broken")
    r = ladle("info", d, check=False)
    assert r.code == 1 and "config.json" in r.err


def test_mismatched_models(tmp_path, rng):
    a = st.llama(rng, "F32", hidden=64)
    b = st.llama(rng, "F32", hidden=32)
    st.write(tmp_path / "a.safetensors", a)
    st.write(tmp_path / "b.safetensors", b)
    out = tmp_path / "o.safetensors"
    r = ladle("lerp", tmp_path / "a.safetensors", tmp_path / "b.safetensors", "--alpha", "0.5",
              "-o", out, check=False)
    assert r.code == 1 and "model.embed_tokens.weight" in r.err and "has shape" in r.err
    assert "a.safetensors" in r.err and "b.safetensors" in r.err and not out.exists()
    # a tensor only one model has
    st.write(tmp_path / "c.safetensors", a + [("extra.weight", "F32", np.ones(3, np.float32))])
    for x, y in (("a", "c"), ("c", "a")):
        r = ladle("soup", tmp_path / f"{x}.safetensors", tmp_path / f"{y}.safetensors", "-o", out,
                  check=False)
        assert r.code == 1 and "extra.weight" in r.err and not out.exists()
    # float in one model, integer in the other
    st.write(tmp_path / "d.safetensors", [(n, "I32" if n == "model.norm.weight" else d,
                                           arr.astype(np.int32) if n == "model.norm.weight" else arr)
                                          for n, d, arr in a])
    r = ladle("soup", tmp_path / "a.safetensors", tmp_path / "d.safetensors", "-o", out,
              check=False)
    assert r.code == 1 and "model.norm.weight" in r.err and "I32" in r.err


def test_nan_and_inf_weights_warn_but_merge(tmp_path, rng):
    """NaN/Inf in an input is not a format error: the merge runs, the output
    holds what the math gives (NaN stays NaN), and a warning counts them."""
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    x = rng.standard_normal((4, 8)).astype(np.float32)
    y = x.copy()
    y[0, :3] = [np.nan, np.inf, -np.inf]
    st.write(a, [("w", "F32", x), ("clean", "F32", x)])
    st.write(b, [("w", "F32", y), ("clean", "F32", x)])
    out = tmp_path / "o.safetensors"
    r = ladle("lerp", a, b, "--alpha", "0.5", "-o", out, "-q")
    warn = [line for line in r.err.splitlines() if "warning" in line]
    assert len(warn) == 1 and "3 NaN/Inf values in 1 tensor (first: w)" in warn[0], r.err
    got = st.read(out)[0]["w"][1]
    assert np.isnan(got[0, 0]) and got[0, 1] == np.inf and got[0, 2] == -np.inf
    assert np.all(np.isfinite(got[1:]))
    r = ladle("lerp", a, a, "--alpha", "0.5", "-o", tmp_path / "clean.safetensors", "-q")
    assert r.err == ""
    # Finite inputs that overflow f16 when rounded: counted too.
    big = tmp_path / "big.safetensors"
    st.write(big, [("w", "F32", np.array([1e5, -7e4, 6e4, 1.0], np.float32))])
    r = ladle("soup", big, big, "--dtype", "f16", "-o", tmp_path / "h.safetensors", "-q")
    assert "2 NaN/Inf values in 1 tensor" in r.err and "65504" in r.err, r.err


def test_tensors_listed_out_of_offset_order_are_accepted(tmp_path):
    """The header's order is not the data's: as the reference crate does,
    tensors are sorted by offset before the tiling check."""
    p = raw_file(tmp_path / "swapped.safetensors",
                 {"b": t("F32", [2], 8, 16), "a": t("F32", [2], 0, 8)},
                 np.arange(4, dtype=np.float32).tobytes())
    out = tmp_path / "o.safetensors"
    ladle("soup", p, p, "-o", out, "-q")
    got = st.read(out)[0]
    assert list(got["a"][1]) == [0, 1] and list(got["b"][1]) == [2, 3]
