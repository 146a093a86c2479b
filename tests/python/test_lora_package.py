"""LoRA adapters through the package: lora_apply equals the CLI bit for bit,
BASE+ADAPTER works as any merge input, and ladle.load refuses to map it."""
import numpy as np
import pytest

import ladle
import st
import util
from lora_family import MODS, adapter, base_model


def test_lora_apply_matches_cli(tmp_path, rng):
    base_model(tmp_path, rng)
    adapter(tmp_path / "ad", rng, MODS)
    util.ladle("lora", "apply", tmp_path / "base", tmp_path / "ad", "--scale", "0.5", "-o",
               tmp_path / "cli.safetensors", "-q")
    ref, _ = st.load(str(tmp_path / "cli.safetensors"))
    got = ladle.lora_apply(tmp_path / "base", tmp_path / "ad", scale=0.5, tensors="numpy")
    assert sorted(got) == sorted(ref)
    for k in ref:
        assert np.asarray(got[k]).tobytes() == ref[k][1].tobytes(), k
    soup = ladle.uniform_soup([f"{tmp_path / 'base'}+{tmp_path / 'ad'}"], tensors="numpy")
    full = ladle.lora_apply(tmp_path / "base", [tmp_path / "ad"], tensors="numpy")
    for k in soup:
        assert np.asarray(soup[k]).tobytes() == np.asarray(full[k]).tobytes(), k
    with pytest.raises(ladle.LadleError, match="ladle.lora_apply"):
        ladle.load(f"{tmp_path / 'base'}+{tmp_path / 'ad'}")


def test_lora_extract_matches_cli(tmp_path, rng):
    """lora_extract writes the same adapter as the CLI (one parser), reports
    its figures, and raises LadleError with the library's message."""
    base = st.llama(rng, "F32", layers=2, hidden=16, inter=24, vocab=32)
    ft = st.llama(rng, "F32", layers=2, hidden=16, inter=24, vocab=32, base=base)
    st.write(tmp_path / "b.safetensors", base)
    st.write(tmp_path / "f.safetensors", ft)
    util.ladle("lora", "extract", "--base", tmp_path / "b.safetensors", "--fine-tuned",
               tmp_path / "f.safetensors", "--rank", "4", "--exclude", "mlp", "-o",
               tmp_path / "cli", "-q")
    got = ladle.lora_extract(tmp_path / "b.safetensors", tmp_path / "f.safetensors",
                             tmp_path / "py", rank=4, exclude="mlp")
    assert got["lora"] == 8 and got["left_out"] == 6 and 0 < got["relative_error"] < 1
    a, _ = st.load(str(tmp_path / "cli" / "adapter_model.safetensors"))
    b, _ = st.load(str(tmp_path / "py" / "adapter_model.safetensors"))
    assert sorted(a) == sorted(b) and all(a[k][1].tobytes() == b[k][1].tobytes() for k in a)
    with pytest.raises(ladle.LadleError, match="already exists"):
        ladle.lora_extract(tmp_path / "b.safetensors", tmp_path / "f.safetensors",
                           tmp_path / "py", rank=4)
    with pytest.raises(ladle.LadleError, match="is a path"):
        ladle.lora_extract({"w": np.zeros(2)}, tmp_path / "f.safetensors", tmp_path / "x")
