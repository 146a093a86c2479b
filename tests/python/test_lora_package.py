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
