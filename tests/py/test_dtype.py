"""dtype conversions through the real tool, against numpy and PyTorch.

A soup of one model multiplies by exactly 1.0, so `ladle soup X --dtype T`
is a pure conversion: every f16 and bf16 value is widened exhaustively, and
fp32 values (all rounding edge cases plus millions of random bit patterns)
are rounded to f16/bf16 and compared with .half() / .bfloat16()."""
import numpy as np
import pytest

import st
from conftest import ladle

torch = pytest.importorskip("torch")


def convert(tmp_path, dtype, arr, to):
    src = tmp_path / f"in-{dtype}.safetensors"
    st.write(src, [("x", dtype, arr)])
    out = tmp_path / f"out-{dtype}-{to}.safetensors"
    ladle("soup", src, "--dtype", to, "-o", out, "-q", "--force")
    d, got = st.read(out)[0]["x"]
    assert d == to.upper()
    return got


def same_bits_or_both_nan(got_f, want_f):
    nan = np.isnan(want_f)
    assert np.array_equal(np.isnan(got_f), nan)
    u = f"u{got_f.itemsize}"
    mism = np.flatnonzero(got_f[~nan].view(u) != want_f[~nan].view(u))
    assert mism.size == 0, f"{mism.size} differ, first at {got_f[~nan][mism[0]]!r} vs {want_f[~nan][mism[0]]!r}"


def test_all_f16_to_f32(tmp_path):
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    got = convert(tmp_path, "F16", bits.view(np.float16), "f32")
    same_bits_or_both_nan(got, bits.view(np.float16).astype(np.float32))


def test_all_bf16_to_f32(tmp_path):
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    got = convert(tmp_path, "BF16", bits, "f32")
    want = torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16).float().numpy()
    same_bits_or_both_nan(got, want)


def test_all_f16_to_bf16_and_bf16_to_f16(tmp_path):
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    got = convert(tmp_path, "F16", bits.view(np.float16), "bf16")
    want = torch.from_numpy(bits.view(np.float16).copy()).float().bfloat16().view(torch.int16)
    same_bits_or_both_nan(st.to_f32("BF16", got), st.to_f32("BF16", want.numpy().view(np.uint16)))
    got = convert(tmp_path, "BF16", bits, "f16")
    want = torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16).float().half().numpy()
    same_bits_or_both_nan(got, want)


def edge_f32():
    """Halfway points, neighbours of halfway points, subnormal and overflow
    boundaries for both 16-bit formats, specials."""
    vals = []
    for target_mant in (7, 10):  # bf16, f16
        shift = 23 - target_mant
        for e in list(range(0, 255)):
            for m in (0, 1, 2, 3, 0x55, 0x7F, 0x3FF, 0x7FFFFF >> shift):
                m &= (1 << target_mant) - 1
                base = (e << 23) | (m << shift)
                half = 1 << (shift - 1)
                for d in (0, half - 1, half, half + 1, (1 << shift) - 1):
                    vals.append(base | d if d < (1 << shift) else base)
    specials = [0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001, 0xFFC00001,
                0x7F7FFFFF, 0x00000001, 0x807FFFFF, 0x477FE000, 0x477FEFFF, 0x477FF000,
                0x477FF001, 0x33000000, 0x33000001, 0x32FFFFFF, 0x38800000, 0x387FFFFF,
                0x7F7F8000, 0x7F7F7FFF]
    vals += specials
    u = np.array(vals, dtype=np.uint64).astype(np.uint32)
    return np.concatenate([u, u | 0x80000000]).view(np.float32)


@pytest.fixture(scope="module")
def f32_values():
    rng = np.random.default_rng(99)
    rand = rng.integers(0, 2**32, size=4_000_000, dtype=np.uint64).astype(np.uint32)
    return np.concatenate([edge_f32(), rand.view(np.float32)])


def test_f32_to_bf16_matches_torch(tmp_path, f32_values):
    got = convert(tmp_path, "F32", f32_values, "bf16")
    want = torch.from_numpy(f32_values.copy()).bfloat16().view(torch.int16).numpy().view(np.uint16)
    same_bits_or_both_nan(st.to_f32("BF16", got), st.to_f32("BF16", want))


def test_f32_to_f16_matches_numpy_and_torch(tmp_path, f32_values):
    got = convert(tmp_path, "F32", f32_values, "f16")
    with np.errstate(over="ignore"):
        same_bits_or_both_nan(got, f32_values.astype(np.float16))
    same_bits_or_both_nan(got, torch.from_numpy(f32_values.copy()).half().numpy())


def test_specials_survive_a_merge(tmp_path):
    """NaN stays NaN, Inf stays Inf, subnormals are kept (not flushed)."""
    x = np.array([np.nan, np.inf, -np.inf, 1e-40, -1e-39, 0.0, -0.0, 5.9604645e-08],
                 dtype=np.float32)
    for dtype in ("f32", "bf16", "f16"):
        got = st.to_f32(dtype.upper(), convert(tmp_path, "F32", x, dtype)) \
            if dtype != "f16" else convert(tmp_path, "F32", x, dtype).astype(np.float32)
        assert np.isnan(got[0]) and got[1] == np.inf and got[2] == -np.inf
        assert np.signbit(got[6]) and not np.signbit(got[5])
        if dtype != "f16":
            assert got[3] != 0 and got[4] != 0  # fp32/bf16 subnormals kept
        else:
            assert got[7] == np.float32(np.float16(5.9604645e-08)) != 0  # f16 subnormal
