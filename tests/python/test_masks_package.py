"""TALL masks through the package: tall_masks and tall_masks_apply write
what `ladle masks` and `ladle masks apply` write (one parser), and report
errors as LadleError with the CLI's text."""
import numpy as np
import pytest

import ladle
import st
import util

F32 = np.float32


def family(tmp_path, rng):
    base = {"w": rng.standard_normal((16, 12)).astype(F32), "b": rng.standard_normal(12).astype(F32)}
    paths = [tmp_path / "base.safetensors"]
    st.write(paths[0], [(k, "F32", v) for k, v in base.items()])
    for t in range(3):
        p = tmp_path / f"ft{t}.safetensors"
        st.write(p, [(k, "F32", (v + np.where(rng.random(v.shape) < 0.5,
                                              rng.standard_normal(v.shape) * 0.05, 0)).astype(F32))
                     for k, v in base.items()])
        paths.append(p)
    return paths


def test_masks_match_cli(tmp_path, rng):
    paths = family(tmp_path, rng)
    util.ladle("masks", "--base", paths[0], *paths[1:], "--tall-lambda", "0.5", "-o",
               tmp_path / "cli.safetensors", "-q")
    got = ladle.tall_masks(paths[0], paths[1:], tmp_path / "py.safetensors", tall_lambda=0.5)
    assert got["path"] == str(tmp_path / "py.safetensors") and got["tensors"] == 2
    assert 0 < got["kept_fraction"] < 1
    assert (tmp_path / "py.safetensors").read_bytes() == (tmp_path / "cli.safetensors").read_bytes()
    util.ladle("masks", "apply", "--base", paths[0], tmp_path / "cli.safetensors", "--task", "1",
               "-o", tmp_path / "t1cli.safetensors", "-q")
    ladle.tall_masks_apply(paths[0], tmp_path / "py.safetensors", 1, tmp_path / "t1.safetensors")
    a, b = st.load(str(tmp_path / "t1cli.safetensors"))[0], st.load(str(tmp_path / "t1.safetensors"))[0]
    assert all(a[k][1].tobytes() == b[k][1].tobytes() for k in a)
    with pytest.raises(ladle.LadleError, match="tasks 0 to 2"):
        ladle.tall_masks_apply(paths[0], tmp_path / "py.safetensors", 7, tmp_path / "x.safetensors")
    with pytest.raises(ladle.LadleError, match="at least two fine-tunes"):
        ladle.tall_masks(paths[0], paths[1:2], tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()
