"""Quantised checkpoints through the package: in memory they come back
dequantised (bf16, or dtype=); every E2M1 code and a range of E8M0 scales
decode as transformers' convert_moe_packed_tensors defines them; load and
save keep the stored tensors as they are."""
import numpy as np
import pytest
import torch

import ladle
import st

F32 = np.float32


def mxfp4_file(path):
    """Every byte value once per row, with scales 2^(s - 127) for s in a range."""
    blocks = np.tile(np.arange(256, dtype=np.uint8).reshape(1, 16, 16), (4, 1, 1))
    blocks = blocks.reshape(4, 16, 1, 16)  # [E, rows, G=1, 16 bytes]
    scales = (np.arange(64, dtype=np.uint8).reshape(4, 16, 1) + 100)  # 2^-27 .. 2^36
    st.write(path, [("experts.w_blocks", "U8", blocks), ("experts.w_scales", "U8", scales)])
    return blocks, scales


def test_every_e2m1_code_and_scale(tmp_path):
    blocks, scales = mxfp4_file(tmp_path / "m.safetensors")
    out = ladle.uniform_soup([tmp_path / "m.safetensors"], dtype="f32")
    lut = np.array([0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6], F32)
    vals = np.stack([lut[blocks & 0xF], lut[blocks >> 4]], axis=-1).reshape(4, 16, 32)
    want = (vals * np.ldexp(F32(1), scales.astype(np.int32) - 127)).astype(F32)
    want = np.ascontiguousarray(np.swapaxes(want, 1, 2))  # transformers' layout
    got = out["experts.w"]
    assert got.shape == (4, 32, 16) and got.tobytes() == want.tobytes()
    # in memory without dtype: bf16, which holds every one of them exactly
    bf = ladle.uniform_soup([tmp_path / "m.safetensors"])["experts.w"]
    assert bf.dtype == torch.bfloat16 and np.array_equal(bf.float().numpy(), want)


def test_fp8_in_memory_and_load_save(tmp_path, rng):
    codes = rng.integers(0, 0x7E, (130, 70), dtype=np.uint8)
    scale = rng.random((2, 1)).astype(F32) + F32(0.5)
    st.write(tmp_path / "q.safetensors", [("w", "F8_E4M3", codes), ("w_scale_inv", "F32", scale)])
    deq = ladle.uniform_soup([tmp_path / "q.safetensors"], dtype="f32")["w"]
    cli = tmp_path / "cli.safetensors"
    from util import ladle as run_cli
    run_cli("soup", tmp_path / "q.safetensors", "--dtype", "f32", "-o", cli, "-q")
    assert deq.tobytes() == st.read(cli)[0]["w"][1].tobytes()
    m = ladle.load(tmp_path / "q.safetensors")  # as stored: codes and scales
    assert sorted(m) == ["w", "w_scale_inv"] and m.dtype("w") == "F8_E4M3"
    assert np.asarray(m["w"]).view(np.uint8).tobytes() == codes.tobytes()
    ladle.save(m, tmp_path / "copy.safetensors")
    assert (tmp_path / "copy.safetensors").read_bytes()[-codes.nbytes - scale.nbytes:] == \
        (tmp_path / "q.safetensors").read_bytes()[-codes.nbytes - scale.nbytes:]

