"""FP8 and MXFP4 checkpoints: decoding every code, dequantising each scale
layout, re-quantising with the stated rules, merges of quantised inputs,
mixed inputs, --dtype, and the refusals. The references are numpy,
written from the format definitions (OCP 8-bit floats; E2M1) and the
stated rules (DeepSeek's amax / 448 block scales; OCP MX as triton_kernels'
downcast_to_mxfp rounds: scale up to a power of two, E2M1 ties away from
zero)."""
import json
import math

import numpy as np
import pytest

import st
from conftest import ladle

F32 = np.float32


# ------------------------------------------------------------ the formats

def fp8_table(kind):
    """All 256 codes of E4M3 (float8_e4m3fn) or E5M2, from the definition."""
    eb, mb = (4, 3) if kind == "F8_E4M3" else (5, 2)
    bias = 2 ** (eb - 1) - 1
    out = []
    for c in range(256):
        sign = -1.0 if c & 0x80 else 1.0
        e, m = (c >> mb) & ((1 << eb) - 1), c & ((1 << mb) - 1)
        if kind == "F8_E4M3" and c & 0x7F == 0x7F:
            v = math.nan
        elif kind == "F8_E5M2" and e == 31:
            v = math.inf if m == 0 else math.nan
        elif e == 0:
            v = m * 2.0 ** (1 - bias - mb)
        else:
            v = (1 + m / 2 ** mb) * 2.0 ** (e - bias)
        out.append(sign * v)
    return np.array(out, F32)


MAX_CODE = {"F8_E4M3": 0x7E, "F8_E5M2": 0x7B}


def fp8_encode(kind, x):
    """Nearest code, ties to the even code, saturated at the largest finite."""
    table = fp8_table(kind)
    pos = table[:MAX_CODE[kind] + 1]
    x = np.asarray(x, F32)
    a = np.abs(x)
    i = np.clip(np.searchsorted(pos, a), 1, len(pos) - 1)
    lo, hi = pos[i - 1], pos[i]
    pick_hi = (a - lo > hi - a) | ((a - lo == hi - a) & (i % 2 == 0))
    code = np.where(pick_hi, i, i - 1)
    code = np.where(a >= pos[-1], MAX_CODE[kind], code).astype(np.uint8)
    code = np.where(np.signbit(x), code | 0x80, code)
    return np.where(np.isnan(x), 0x7F, code).astype(np.uint8)


E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], F32)


def e2m1_decode(nib):
    return np.where(nib & 8, -1, 1).astype(F32) * E2M1[nib & 7]


def e2m1_encode_away(x):
    """Nearest E2M1 value, ties away from zero, saturated at 6."""
    a = np.abs(np.asarray(x, F32))
    i = np.clip(np.searchsorted(E2M1, a), 1, 7)
    lo, hi = E2M1[i - 1], E2M1[i]
    code = np.where(a - lo >= hi - a, i, i - 1)
    code = np.where(a >= 6, 7, code)
    return (code | np.where(np.signbit(x), 8, 0)).astype(np.uint8)


# ------------------------------------------------------------ references

def dequant_fp8(kind, codes, scale, scheme, block=(128, 128)):
    v = fp8_table(kind)[codes]
    R, C = codes.shape
    if scheme == "tensor":
        s = np.full((R, C), F32(scale.reshape(-1)[0]))
    elif scheme == "channel":
        s = np.repeat(scale.reshape(R, 1), C, axis=1)
    else:
        s = np.repeat(np.repeat(scale, block[0], axis=0), block[1], axis=1)[:R, :C]
    return (v * s.astype(F32)).astype(F32)


def scale_cast(x, dtype):
    """x as a scale tensor of dtype stores it (a scalar)."""
    return F32(st.to_f32(dtype, st.round_to(dtype, np.array([x], F32)))[0])


def quant_fp8(kind, x, scheme, sdtype="F32", block=(128, 128)):
    """(codes, stored scales) by amax / max, scale 1 for an all-zero region."""
    x = np.asarray(x, F32)
    R, C = x.shape
    mx = F32(448 if kind == "F8_E4M3" else 57344)

    def scale_of(region):
        s = F32(np.max(np.abs(region))) / mx if region.size else F32(0)
        s = F32(1) if s == 0 else s
        return scale_cast(s, sdtype)

    if scheme == "tensor":
        s = scale_of(x).reshape(1)
        div = np.full_like(x, s[0])
    elif scheme == "channel":
        s = np.array([scale_of(x[r]) for r in range(R)], F32).reshape(R, 1)
        div = np.repeat(s, C, axis=1)
    else:
        b0, b1 = block
        sr, sc = -(-R // b0), -(-C // b1)
        s = np.array([[scale_of(x[i * b0:(i + 1) * b0, j * b1:(j + 1) * b1]) for j in range(sc)]
                      for i in range(sr)], F32)
        div = np.repeat(np.repeat(s, b0, axis=0), b1, axis=1)[:R, :C]
    return fp8_encode(kind, x / div), s


def quant_mxfp4(x):
    """(blocks [..., G, 16], scales [..., G]) of x [..., G*32]."""
    x = np.asarray(x, F32)
    g = x.reshape(*x.shape[:-1], -1, 32)
    amax = np.max(np.abs(g), axis=-1)
    ds = (amax / F32(6)).astype(F32)
    bits = ((ds.view(np.uint32).astype(np.uint64) + 0x7FFFFF) & 0x7F800000).astype(np.uint32)
    scale = bits.view(F32)
    inv = np.where(scale == 0, F32(0), F32(1) / np.where(scale == 0, F32(1), scale)).astype(F32)
    codes = e2m1_encode_away((g * inv[..., None]).astype(F32))
    packed = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
    return packed, (bits >> 23).astype(np.uint8)


def dequant_mxfp4(blocks, scales):
    lo, hi = blocks & 0xF, blocks >> 4
    vals = np.stack([e2m1_decode(lo), e2m1_decode(hi)], axis=-1).reshape(*blocks.shape[:-1], 32)
    mult = np.ldexp(F32(1), scales.astype(np.int32) - 127).astype(F32)
    return (vals * mult[..., None]).reshape(*blocks.shape[:-2], -1).astype(F32)


# ------------------------------------------------------------ models

def fp8_model(path, rng, kind="F8_E4M3", scheme="block", shape=(200, 300), sdtype="F32",
              config=True, extra=(), base=None, noise=1.0):
    """A small checkpoint with one quantised weight (and its scales) and a norm."""
    R, C = shape
    x = rng.standard_normal(shape).astype(F32) * noise
    if base is not None:
        x = base + rng.standard_normal(shape).astype(F32) * F32(0.1)
    codes, s = quant_fp8(kind, x, scheme, sdtype)
    name = "model.layers.0.mlp.down_proj.weight"
    sname = name + ("_scale_inv" if scheme == "block" else "_scale")
    if scheme == "tensor":
        s = s.reshape(())
    tensors = [(name, kind, codes), (sname, sdtype, st.round_to(sdtype, s)),
               ("model.norm.weight", "F32", rng.standard_normal(C).astype(F32))] + list(extra)
    cfg = st.config(layers=1)
    if config and scheme == "block":
        cfg["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3",
                                      "weight_block_size": [128, 128]}
    elif config:
        cfg["quantization_config"] = {"quant_method": "fbgemm_fp8"}
    st.write_hf(path, tensors, cfg)
    return {n: (d, a) for n, d, a in tensors}, x


def out_tensors(path):
    return st.load(str(path))[0]


# ------------------------------------------------------------ tests

@pytest.mark.parametrize("kind", ["F8_E4M3", "F8_E5M2"])
def test_every_fp8_code_decodes(tmp_path, kind):
    codes = np.arange(256, dtype=np.uint8).reshape(16, 16)
    st.write(tmp_path / "m.safetensors", [("w", kind, codes),
                                          ("w_scale", "F32", np.ones((), F32))])
    ladle("soup", tmp_path / "m.safetensors", "--dtype", "f32", "-o", tmp_path / "o.safetensors",
          "-q")
    got = out_tensors(tmp_path / "o.safetensors")["w"][1].reshape(-1)
    want = fp8_table(kind)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    assert np.array_equal(got[ok], want[ok])  # every finite code, and +-Inf for E5M2
    assert got[ok].tobytes() == want[ok].tobytes()  # -0 included
    assert "w_scale" not in out_tensors(tmp_path / "o.safetensors")


@pytest.mark.parametrize("scheme,sdtype", [("block", "F32"), ("block", "BF16"),
                                           ("channel", "F32"), ("tensor", "F32")])
def test_dequantise(tmp_path, rng, scheme, sdtype):
    m, _ = fp8_model(tmp_path / "m", rng, scheme=scheme, sdtype=sdtype)
    ladle("soup", tmp_path / "m", "--dtype", "f32", "-o", tmp_path / "o", "-q")
    got = out_tensors(tmp_path / "o")
    name = "model.layers.0.mlp.down_proj.weight"
    scale = [v for n, v in m.items() if n.startswith(name + "_")][0]
    want = dequant_fp8("F8_E4M3", m[name][1], st.to_f32(sdtype, scale[1]), scheme)
    assert got[name][1].tobytes() == want.tobytes()
    assert set(got) == {name, "model.norm.weight"}  # the scales are gone
    cfg = json.load(open(tmp_path / "o" / "config.json"))
    assert "quantization_config" not in cfg and cfg["torch_dtype"] == "float32"


@pytest.mark.parametrize("kind", ["F8_E4M3", "F8_E5M2"])
@pytest.mark.parametrize("scheme,sdtype", [("block", "F32"), ("block", "BF16"),
                                           ("channel", "F32"), ("tensor", "F32")])
def test_requantise(tmp_path, rng, kind, scheme, sdtype):
    """A one-model soup re-quantises the dequantised values by the rule."""
    m, _ = fp8_model(tmp_path / "m", rng, kind, scheme, sdtype=sdtype)
    ladle("soup", tmp_path / "m", "-o", tmp_path / "o", "-q")
    got = out_tensors(tmp_path / "o")
    name = "model.layers.0.mlp.down_proj.weight"
    sname = [n for n in m if n.startswith(name + "_")][0]
    x = dequant_fp8(kind, m[name][1], st.to_f32(sdtype, m[sname][1]), scheme)
    codes, s = quant_fp8(kind, x, scheme, sdtype)
    assert got[name][0] == kind and got[sname][0] == sdtype
    assert got[name][1].tobytes() == codes.tobytes()
    assert st.to_f32(sdtype, got[sname][1]).reshape(-1).tobytes() == s.reshape(-1).tobytes()
    cfg = json.load(open(tmp_path / "o" / "config.json"))
    assert "quantization_config" in cfg  # still quantised


def test_requantise_edge_blocks(tmp_path, rng):
    """Saturation, an all-zero block, values that land on FP8 subnormals."""
    base = rng.standard_normal((256, 256)).astype(F32)
    for kind, tiny in (("F8_E4M3", 1e-3), ("F8_E5M2", 1e-9)):
        x = base.copy()
        x[:128, :128] = 0  # all zero: scale 1, codes 0
        x[:128, 128:] *= F32(tiny)
        x[0, 128] = F32(3.0)  # one large value: the rest fall to subnormal codes
        x[128:, :128] *= F32(2)
        x[128:, 128:] = F32(448.5)  # ties and the top of the range
        codes, s = quant_fp8(kind, x, "block")
        name = "w"
        st.write(tmp_path / f"{kind}.safetensors",
                 [(name, kind, codes), (name + "_scale_inv", "F32", s)])
        ladle("soup", tmp_path / f"{kind}.safetensors", "-o", tmp_path / f"o{kind}.safetensors",
              "-q")
        got = out_tensors(tmp_path / f"o{kind}.safetensors")
        xd = dequant_fp8(kind, codes, s, "block")
        want_codes, want_s = quant_fp8(kind, xd, "block")
        assert got[name][1].tobytes() == want_codes.tobytes()
        assert got[name + "_scale_inv"][1].tobytes() == want_s.tobytes()
        assert want_s[0, 0] == 1 and not want_codes[:128, :128].any()
        sub = want_codes[:128, 128:] & 0x7F
        assert ((sub > 0) & (sub < (8 if kind == "F8_E4M3" else 4))).any()  # subnormal codes


def test_merge_equals_merge_of_dequantised(tmp_path, rng):
    """lerp and ties of FP8 models: the merge of their dequantised values
    (ladle's own, checked elsewhere), re-quantised by the rule."""
    a, xa = fp8_model(tmp_path / "a", rng, scheme="block")
    b, _ = fp8_model(tmp_path / "b", rng, scheme="block", base=xa)
    c, _ = fp8_model(tmp_path / "c", rng, scheme="block", base=xa)
    for d in "abc":
        ladle("soup", tmp_path / d, "--dtype", "f32", "-o", tmp_path / f"{d}32", "-q")
    name = "model.layers.0.mlp.down_proj.weight"
    for args in (["lerp", "{b}", "{c}", "--alpha", "0.3"],
                 ["ties", "--base", "{a}", "--add", "1:{b}", "--add", "1:{c}", "--density",
                  "0.5"],
                 ["task", "--base", "{a}", "--add", "0.5:{b}", "--add", "-0.25:{c}"]):
        q = [x.format(a=tmp_path / "a", b=tmp_path / "b", c=tmp_path / "c") for x in args]
        f = [x.format(a=tmp_path / "a32", b=tmp_path / "b32", c=tmp_path / "c32") for x in args]
        ladle(*q, "-o", tmp_path / "q", "-q", "--force")
        ladle(*f, "-o", tmp_path / "f", "-q", "--force")
        got, ref = out_tensors(tmp_path / "q"), out_tensors(tmp_path / "f")
        codes, s = quant_fp8("F8_E4M3", ref[name][1], "block")
        assert got[name][1].tobytes() == codes.tobytes(), args[0]
        assert got[name + "_scale_inv"][1].tobytes() == s.tobytes(), args[0]
        assert got["model.norm.weight"][1].tobytes() == ref["model.norm.weight"][1].tobytes()


def test_mixed_fp8_and_bf16_inputs(tmp_path, rng):
    q, xq = fp8_model(tmp_path / "q", rng, scheme="block")
    name = "model.layers.0.mlp.down_proj.weight"
    plain = [(name, "BF16", st.round_to("BF16", xq + F32(0.01))),
             ("model.norm.weight", "F32", rng.standard_normal(300).astype(F32))]
    st.write_hf(tmp_path / "p", plain, st.config(layers=1))
    xd = dequant_fp8("F8_E4M3", q[name][1], q[name + "_scale_inv"][1], "block")
    xp = st.to_f32("BF16", plain[0][2])
    merged = (F32(0.5) * xd + F32(0.5) * xp).astype(F32)
    # the template (first) is FP8: the output is re-quantised
    ladle("soup", tmp_path / "q", tmp_path / "p", "-o", tmp_path / "o1", "-q")
    got = out_tensors(tmp_path / "o1")
    codes, s = quant_fp8("F8_E4M3", merged, "block")
    assert got[name][1].tobytes() == codes.tobytes()
    # the template is bf16: the output is bf16
    ladle("soup", tmp_path / "p", tmp_path / "q", "-o", tmp_path / "o2", "-q")
    got = out_tensors(tmp_path / "o2")
    merged2 = (F32(0.5) * xp + F32(0.5) * xd).astype(F32)
    assert got[name][0] == "BF16" and set(got) == {name, "model.norm.weight"}
    assert got[name][1].tobytes() == st.round_to("BF16", merged2).tobytes()


def mxfp4_model(path, rng, base=None):
    E, rows, G = 2, 6, 3
    x = rng.standard_normal((E, rows, G * 32)).astype(F32) * F32(0.05)
    if base is not None:
        x = base + rng.standard_normal(x.shape).astype(F32) * F32(0.01)
    x[0, 0, :32] = 0  # an all-zero group
    blocks, scales = quant_mxfp4(x)
    name = "model.layers.0.mlp.experts.down_proj"
    tensors = [(name + "_blocks", "U8", blocks), (name + "_scales", "U8", scales),
               ("model.norm.weight", "F32", rng.standard_normal(8).astype(F32))]
    cfg = st.config(layers=1)
    cfg["quantization_config"] = {"quant_method": "mxfp4"}
    st.write_hf(path, tensors, cfg)
    return {n: a for n, _, a in tensors}, x


def test_mxfp4_merge(tmp_path, rng):
    a, xa = mxfp4_model(tmp_path / "a", rng)
    b, _ = mxfp4_model(tmp_path / "b", rng, base=xa)
    name = "model.layers.0.mlp.experts.down_proj"
    ladle("lerp", tmp_path / "a", tmp_path / "b", "--alpha", "0.25", "-o", tmp_path / "o", "-q")
    got = out_tensors(tmp_path / "o")
    da = dequant_mxfp4(a[name + "_blocks"], a[name + "_scales"])
    db = dequant_mxfp4(b[name + "_blocks"], b[name + "_scales"])
    blocks, scales = quant_mxfp4((F32(0.75) * da + F32(0.25) * db).astype(F32))
    assert got[name + "_blocks"][0] == "U8" and got[name + "_blocks"][1].shape == (2, 6, 3, 16)
    assert got[name + "_blocks"][1].tobytes() == blocks.tobytes()
    assert got[name + "_scales"][1].tobytes() == scales.tobytes()
    # a one-model soup re-quantises the dequantised values (not always the same
    # blocks: a group whose largest code is below 6 gets a smaller scale)
    ladle("soup", tmp_path / "a", "-o", tmp_path / "same", "-q")
    blocks, scales = quant_mxfp4(da)
    assert out_tensors(tmp_path / "same")[name + "_blocks"][1].tobytes() == blocks.tobytes()
    assert out_tensors(tmp_path / "same")[name + "_scales"][1].tobytes() == scales.tobytes()
    # dequantised: transformers' layout, as convert_moe_packed_tensors gives it
    ladle("lerp", tmp_path / "a", tmp_path / "b", "--alpha", "0.25", "--dtype", "bf16", "-o",
          tmp_path / "d", "-q")
    got = out_tensors(tmp_path / "d")
    want = np.swapaxes((F32(0.75) * da + F32(0.25) * db).astype(F32), 1, 2)
    assert set(got) == {name, "model.norm.weight"} and got[name][1].shape == (2, 96, 6)
    assert got[name][1].tobytes() == st.round_to("BF16", want).tobytes()
    cfg = json.load(open(tmp_path / "d" / "config.json"))
    assert "quantization_config" not in cfg and cfg["torch_dtype"] == "bfloat16"
    # beside a model that stores them so (a bf16 fine-tune of gpt-oss): merged
    # through the same values, whichever comes first
    dd = st.to_f32("BF16", got[name][1])  # [E, C, R], transformers' layout
    ladle("lerp", tmp_path / "a", tmp_path / "d", "--alpha", "0.5", "-o", tmp_path / "m1", "-q")
    m1 = out_tensors(tmp_path / "m1")  # MXFP4 first: its scheme, re-quantised
    blocks, scales = quant_mxfp4((F32(0.5) * da + F32(0.5) * np.swapaxes(dd, 1, 2)).astype(F32))
    assert m1[name + "_blocks"][1].tobytes() == blocks.tobytes()
    assert m1[name + "_scales"][1].tobytes() == scales.tobytes()
    ladle("lerp", tmp_path / "d", tmp_path / "a", "--alpha", "0.5", "-o", tmp_path / "m2", "-q")
    m2 = out_tensors(tmp_path / "m2")  # bf16 first: its layout and dtype
    want = (F32(0.5) * dd + F32(0.5) * np.swapaxes(da, 1, 2)).astype(F32)
    assert m2[name][1].shape == (2, 96, 6)
    assert m2[name][1].tobytes() == st.round_to("BF16", want).tobytes()


def test_mxfp4_square_experts_beside_dequantised(tmp_path, rng):
    """gpt-oss's down_proj is square ([E, 2880, 2880]): the shapes agree, and
    the dequantised one must still be read transposed."""
    E, R = 2, 64
    x = (rng.standard_normal((E, R, R)) * 0.05).astype(F32)
    blocks, scales = quant_mxfp4(x)
    name = "model.layers.0.mlp.experts.down_proj"
    cfg = st.config(layers=1)
    cfg["quantization_config"] = {"quant_method": "mxfp4"}
    st.write_hf(tmp_path / "q", [(name + "_blocks", "U8", blocks),
                                 (name + "_scales", "U8", scales)], cfg)
    y = (rng.standard_normal((E, R, R)) * 0.05).astype(F32)  # stored [E, in, out]
    st.write_hf(tmp_path / "b", [(name, "F32", y)], st.config(layers=1))
    ladle("lerp", tmp_path / "b", tmp_path / "q", "--alpha", "0.5", "-o", tmp_path / "o", "-q")
    got = out_tensors(tmp_path / "o")
    dq = dequant_mxfp4(blocks, scales)
    want = (F32(0.5) * y + F32(0.5) * np.swapaxes(dq, 1, 2)).astype(F32)
    assert got[name][1].tobytes() == want.tobytes()


def test_info_shows_the_schemes(tmp_path, rng):
    fp8_model(tmp_path / "m", rng, scheme="block")
    text = ladle("info", tmp_path / "m").out
    assert "fp8 block 128x128, scales model.layers.0.mlp.down_proj.weight_scale_inv" in text
    assert "scales of model.layers.0.mlp.down_proj.weight" in text
    info = json.loads(ladle("info", tmp_path / "m", "--json").out)
    q = [t for t in info["tensors"] if "quant" in t][0]["quant"]
    assert q["scheme"] == "fp8 block" and q["block"] == [128, 128]
    mxfp4_model(tmp_path / "x", rng)
    info = json.loads(ladle("info", tmp_path / "x", "--json").out)
    row = [t for t in info["tensors"] if "quant" in t][0]
    assert row["name"].endswith("down_proj_blocks") and row["dtype"] == "U8"
    assert row["quant"]["tensor"].endswith("experts.down_proj")


@pytest.mark.parametrize("case,words", [
    ("no_scale", "has no scales"),
    ("bad_scale_shape", "fits no scheme"),
    ("gptq", "quant_method 'gptq'"),
    ("int4_compressed", "non-FP8 weights"),
])
def test_refusals(tmp_path, rng, case, words):
    name = "model.layers.0.mlp.down_proj.weight"
    codes = rng.integers(0, 120, (200, 300), dtype=np.uint8)
    cfg = st.config(layers=1)
    tensors = [("model.norm.weight", "F32", np.ones(300, F32))]
    if case == "no_scale":
        tensors.append((name, "F8_E4M3", codes))
    elif case == "bad_scale_shape":
        tensors += [(name, "F8_E4M3", codes), (name + "_scale_inv", "F32", np.ones((3, 3), F32))]
        cfg["quantization_config"] = {"quant_method": "fp8", "weight_block_size": [128, 128]}
    elif case == "gptq":
        tensors.append(("model.layers.0.mlp.down_proj.qweight", "I32",
                        np.zeros((25, 300), np.int32)))
        cfg["quantization_config"] = {"quant_method": "gptq", "bits": 4}
    else:
        tensors.append((name + "_packed", "I32", np.zeros((200, 38), np.int32)))
        cfg["quantization_config"] = {
            "quant_method": "compressed-tensors",
            "config_groups": {"g": {"weights": {"num_bits": 4, "type": "int"}}}}
    st.write_hf(tmp_path / "m", tensors, cfg)
    out = tmp_path / "o"
    r = ladle("soup", tmp_path / "m", tmp_path / "m", "-o", out, check=False)
    lines = r.err.strip().splitlines()
    assert r.code == 1 and len(lines) == 1 and words in lines[0], r.err
    assert lines[0].startswith("ladle: error: ") and not out.exists()
    ladle("info", tmp_path / "m")  # reading it is fine


def test_requantise_exact_ties(tmp_path, rng):
    """Values exactly between two codes: FP8 rounds to the even code, E2M1 (as
    triton rounds it) away from zero. A soup weighted 0, 1 of a quantised
    template and a plain model re-quantises the plain model's values."""
    fp8_vals = fp8_table("F8_E4M3")[:0x7F]
    mids = ((fp8_vals[1:] + fp8_vals[:-1]) / 2).astype(F32)  # every midpoint below 448
    x = np.zeros((128, 128), F32)
    x.reshape(-1)[:mids.size] = mids
    x.reshape(-1)[mids.size:2 * mids.size] = -mids
    x[127, 127] = 448  # amax 448: scale 1, so x / scale is x itself
    codes, s = quant_fp8("F8_E4M3", np.ones((128, 128), F32), "block")
    st.write(tmp_path / "q.safetensors", [("w", "F8_E4M3", codes), ("w_scale_inv", "F32", s)])
    st.write(tmp_path / "p.safetensors", [("w", "F32", x)])
    ladle("soup", tmp_path / "q.safetensors", tmp_path / "p.safetensors", "--weights", "0,1",
          "-o", tmp_path / "o.safetensors", "-q")
    got = out_tensors(tmp_path / "o.safetensors")
    want, ws = quant_fp8("F8_E4M3", x, "block")
    assert ws[0, 0] == 1 and got["w"][1].tobytes() == want.tobytes()
    assert (got["w"][1].reshape(-1)[:mids.size] & 1 == 0).all()  # ties went to even codes

    grid = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], F32)
    ties = np.concatenate([(grid[1:] + grid[:-1]) / 2, [6]]).astype(F32)
    x = np.zeros((1, 1, 64), F32)
    x[0, 0, :8] = ties
    x[0, 0, 8:16] = -ties
    x[0, 0, 31] = 6  # amax 6: scale 1
    x[0, 0, 32:] = ties[3] * F32(2.0 ** -40)  # a group far below 1
    blocks, scales = quant_mxfp4(np.ones((1, 1, 64), F32))
    st.write(tmp_path / "mq.safetensors", [("e_blocks", "U8", blocks), ("e_scales", "U8", scales)])
    st.write(tmp_path / "mp.safetensors", [("e", "F32", x)])
    ladle("soup", tmp_path / "mq.safetensors", tmp_path / "mp.safetensors", "--weights", "0,1",
          "-o", tmp_path / "mo.safetensors", "-q")
    got = out_tensors(tmp_path / "mo.safetensors")
    wb, wsc = quant_mxfp4(x)
    assert got["e_blocks"][1].tobytes() == wb.tobytes()
    assert got["e_scales"][1].tobytes() == wsc.tobytes() and wsc[0, 0, 0] == 127
    lo = got["e_blocks"][1].reshape(-1)[:8]
    nibbles = np.stack([lo & 0xF, lo >> 4], axis=-1).reshape(-1)
    assert list(nibbles[:8]) == [1, 2, 3, 4, 5, 6, 7, 7]  # 0.25 -> 0.5, ..., 5 -> 6, 6


def test_diff_reads_dequantised_values(tmp_path, rng):
    a, xa = fp8_model(tmp_path / "a", rng, scheme="channel")
    b, _ = fp8_model(tmp_path / "b", rng, scheme="channel", base=xa)
    info = json.loads(ladle("diff", tmp_path / "a", tmp_path / "b", "--json").out)
    name = "model.layers.0.mlp.down_proj.weight"
    row = [t for t in info["tensors"] if t["name"] == name][0]
    x = dequant_fp8("F8_E4M3", a[name][1], a[name + "_scale"][1], "channel").astype(np.float64)
    y = dequant_fp8("F8_E4M3", b[name][1], b[name + "_scale"][1], "channel").astype(np.float64)
    assert row["norm_a"] == pytest.approx(np.sqrt((x * x).sum()), rel=1e-9)
    assert row["cosine"] == pytest.approx((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()),
                                          rel=1e-9)
    assert not any(t["name"].endswith("_scale") for t in info["tensors"])
