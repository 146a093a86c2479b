"""Fine-tunes with added tokens through the package: the same rows as the
CLI (matched by token), and the plan's warnings as Python warnings."""
import numpy as np
import pytest

import ladle
import util
import st
from vocab_family import VOCAB, family


def test_task_vector_and_soup_with_added_tokens(tmp_path, rng):
    base, ft1, ft2, _ = family(tmp_path, rng, dtype="F32")
    with pytest.warns(UserWarning, match=r"3 rows of model\.embed_tokens\.weight, lm_head"
                                         r"\.weight \('<\|a\|>', '<\|b\|>', '<\|c\|>'\)"):
        got = ladle.TaskVector(base.path, ft1.path).apply_to(base.path, scaling=0.5,
                                                             dtype="f32")
    for n in VOCAB:
        b, f = base.t[n][1], ft1.t[n][1][:32]
        want = (b + np.float32(0.5) * (f - b)).astype(np.float32)
        assert got[n].shape == (32, 16)
        np.testing.assert_array_equal(np.asarray(got[n]), want)
    with pytest.warns(UserWarning, match="another order"):
        soup = ladle.uniform_soup([base.path, ft2.path], dtype="f32")
    with pytest.warns(UserWarning, match="another order") as w:
        ladle.uniform_soup([base.path, ft2.path], out=tmp_path / "o.safetensors")
    assert w[0].filename == __file__  # attributed to the caller's line
    ref, _ = st.load(str(tmp_path / "o.safetensors"))
    for n in VOCAB:
        assert np.asarray(soup[n]).tobytes() == ref[n][1].tobytes()


def test_tokenizer_source(tmp_path, rng):
    base, ft1, ft2, _ = family(tmp_path, rng, dtype="F32")
    with pytest.warns(UserWarning, match="union of the inputs': 36 tokens"):
        got = ladle.uniform_soup([base.path, ft1.path, ft2.path], tokenizer_source="union",
                                 dtype="f32")
    util.ladle("soup", base.path, ft1.path, ft2.path, "--tokenizer-source", "union", "-o",
               tmp_path / "cli.safetensors", "-q")
    ref, _ = st.load(str(tmp_path / "cli.safetensors"))
    for n in VOCAB:
        assert got[n].shape == (36, 16) and np.asarray(got[n]).tobytes() == ref[n][1].tobytes()
    with pytest.warns(UserWarning, match="lacks 3 of the 35 rows"):
        got = ladle.uniform_soup([base.path, ft1.path], tokenizer_source=ft1.path)
    assert got["lm_head.weight"].shape == (35, 16)


def test_chat_template_option(tmp_path, rng):
    base, ft1, _, _ = family(tmp_path, rng, dtype="F32")
    with pytest.warns(UserWarning, match="3 rows"):
        ladle.uniform_soup([base.path, ft1.path], chat_template="chatml", out=tmp_path / "o")
    import json
    cfg = json.load(open(tmp_path / "o" / "tokenizer_config.json"))
    assert cfg["chat_template"].startswith("{% for message in messages %}{{ '<|im_start|>'")
