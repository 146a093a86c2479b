"""Every merge function against the CLI (bit for bit: both parse the same
arguments in the library) and against the seed lesson's reference
definitions (tests/python/seed.py), for paths and in-memory torch and
numpy state dicts, in bf16, f16 and f32."""
import os

import numpy as np
import pytest
import torch

import ladle
import seed
import st
from models import as_kind, f32, family, file_tensors, inputs, raw, torch_of
from util import ladle as cli

DTYPES = ["BF16", "F16", "F32"]
KINDS = ["paths", "torch", "numpy"]


def same_as_cli(result, cli_out):
    want = file_tensors(cli_out)
    assert set(result) == set(want)
    for name, arr in want.items():
        assert raw(result[name]) == arr.tobytes(), name


def cli_args(args, paths):
    """Replace state-dict placeholders {0}, {1} ... by the files."""
    return [a.format(*paths) if isinstance(a, str) else a for a in args]


# (python call, the CLI arguments) for every merge; {i} is model i (0 = base)
CASES = {
    "lerp": (lambda m: ladle.linear_interpolate(m[1], m[2], 0.3),
             ["lerp", "{1}", "{2}", "--alpha", "0.3"]),
    "lerp_gradient": (lambda m: ladle.linear_interpolate(m[1], m[2], [0, 0.4, 1]),
                      ["lerp", "{1}", "{2}", "--alpha", "0,0.4,1"]),
    "soup": (lambda m: ladle.uniform_soup(m[1:]), ["soup", "{1}", "{2}", "{3}"]),
    "soup_weights": (lambda m: ladle.uniform_soup(m[1:], weights=[2, 1, 1]),
                     ["soup", "{1}", "{2}", "{3}", "--weights", "2,1,1"]),
    "slerp": (lambda m: ladle.slerp(m[1], m[2], t=0.4), ["slerp", "{1}", "{2}", "--t", "0.4"]),
    "task": (lambda m: (0.6 * ladle.TaskVector(m[0], m[1]) - 0.4 * ladle.TaskVector(m[0], m[2]))
             .apply_to(m[0], scaling=0.8),
             ["task", "--base", "{0}", "--add", "0.6:{1}", "--add", "-0.4:{2}", "--lambda", "0.8"]),
    "analogy": (lambda m: (ladle.TaskVector(m[0], m[1]) - ladle.TaskVector(m[0], m[2]))
                .apply_to(m[3]),
                ["task", "--base", "{0}", "--add", "1.0:{1}", "--add", "-1.0:{2}", "--onto",
                 "{3}"]),
    "ties": (lambda m: ladle.ties(m[0], m[1:], density=0.3),
             ["ties", "--base", "{0}", "--add", "1:{1}", "--add", "1:{2}", "--add", "1:{3}",
              "--density", "0.3"]),
    "dare": (lambda m: ladle.dare(m[0], m[1:3], weights=[0.7, 0.5], density=0.4,
                                  sign_consensus=True, seed=7),
             ["dare", "--base", "{0}", "--add", "0.7:{1}", "--add", "0.5:{2}", "--density",
              "0.4", "--sign-consensus", "--seed", "7"]),
    "della": (lambda m: ladle.della(m[0], m[1:3], density=0.5, epsilon=0.1),
              ["della", "--base", "{0}", "--add", "1:{1}", "--add", "1:{2}", "--density", "0.5",
               "--epsilon", "0.1"]),
    "breadcrumbs": (lambda m: ladle.breadcrumbs(m[0], m[1:3], density=0.8, gamma=0.05,
                                                ties=True),
                    ["breadcrumbs", "--base", "{0}", "--add", "1:{1}", "--add", "1:{2}",
                     "--density", "0.8", "--gamma", "0.05", "--ties"]),
    "stock": (lambda m: ladle.model_stock(m[0], m[1:]), ["stock", "--base", "{0}", "{1}", "{2}",
                                                          "{3}"]),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_same_bits_as_the_cli(tmp_path, rng, case, dtype, kind):
    paths, models = family(tmp_path, rng, dtype)
    call, args = CASES[case]
    out = tmp_path / "cli.safetensors"
    cli(*cli_args(args, paths), "-o", out, "-q")
    result = call(inputs(paths, models, kind))
    same_as_cli(result, out)
    want = "torch" if kind == "torch" else "numpy"
    for name, (d, _) in st_dtypes(out).items():
        if d == "F32" or want == "torch":
            assert isinstance(result[name], torch.Tensor) == (want == "torch"), name


def st_dtypes(path):
    import st
    return st.load(str(path))[0]


@pytest.mark.parametrize("kind", KINDS)
def test_out_writes_what_the_cli_writes(tmp_path, rng, kind):
    paths, models = family(tmp_path, rng, "BF16")
    m = inputs(paths, models, kind)
    out = tmp_path / "py.safetensors"
    got = ladle.ties(m[0], m[1:], density=0.5, out=out, dtype="f16")
    assert got == str(out)
    cli("ties", "--base", paths[0], *sum((["--add", f"1:{p}"] for p in paths[1:]), []),
        "--density", "0.5", "--dtype", "f16", "-o", tmp_path / "cli.safetensors", "-q")
    assert file_tensors(out).keys() == file_tensors(tmp_path / "cli.safetensors").keys()
    for name, arr in file_tensors(tmp_path / "cli.safetensors").items():
        assert file_tensors(out)[name].tobytes() == arr.tobytes(), name
    # a folder output is a Hugging Face folder, like the CLI's
    folder = tmp_path / "folder"
    ladle.uniform_soup(m[1:], out=folder)
    assert (folder / "model.safetensors").exists()


@pytest.mark.parametrize("dtype", DTYPES)
def test_against_the_seed_definitions(tmp_path, rng, dtype):
    paths, models = family(tmp_path, rng, dtype)
    sds = [as_kind(m, "torch") for m in models]
    base, a, b, c = sds
    # sum / N against sum of x_i / N: a few fp32 ulps apart, then rounded
    # once to the output (one of its ulps); weights are ~0.05 in size
    tol = {"BF16": 2.0**-7, "F16": 2.0**-10, "F32": 2.0**-20}[dtype]
    rounding = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}[dtype]

    def close(got, want):
        for k, v in want.items():
            if v.is_floating_point():
                x, y = f32(got[k]), v.to(rounding).float().numpy()
                assert np.all(np.abs(x - y) <= tol * np.maximum(np.abs(y), 0.05)), k

    def exact(got, want):  # the same fp32 operations in the same order, rounded once
        for k, v in want.items():
            assert raw(got[k]) == raw(v.to(rounding) if v.is_floating_point() else v), k

    close(ladle.uniform_soup([a, b, c]), seed.uniform_soup([a, b, c]))
    exact(ladle.linear_interpolate(a, b, 0.3), seed.linear_interpolate(a, b, 0.3))
    tv = seed.TaskVector(base, a) + seed.TaskVector(base, b)
    exact((ladle.TaskVector(base, a) + ladle.TaskVector(base, b)).apply_to(base, scaling=0.5),
          tv.apply_to(base, 0.5))
    neg = -seed.TaskVector(base, c)
    exact((-ladle.TaskVector(base, c)).apply_to(a), neg.apply_to(a))
    comb = 0.6 * seed.TaskVector(base, a) + (-0.4) * seed.TaskVector(base, b)
    exact((0.6 * ladle.TaskVector(base, a) - 0.4 * ladle.TaskVector(base, b)).apply_to(base),
          comb.apply_to(base))
    # vector= : a task vector given directly, applied to the base
    vec = {k: v for k, v in seed.TaskVector(base, a).vector.items()}
    exact(ladle.TaskVector(vector=vec).apply_to(base, scaling=0.7),
          seed.TaskVector(vector=vec).apply_to(base, 0.7))


def test_checkpoint_soup(tmp_path, rng):
    run = tmp_path / "run"
    run.mkdir()
    _, models = family(tmp_path, rng, "F32", n=5)
    by_step = {}
    for step, m in zip([5, 10, 200, 1000, 30], models):  # 1000 is the newest, not 5
        import st
        st.write(run / f"checkpoint-{step}.safetensors", m)
        by_step[step] = as_kind(m, "torch")
    got = ladle.checkpoint_soup(run, last_n=3)
    want = seed.checkpoint_soup(by_step, 3)
    for k, v in want.items():
        np.testing.assert_allclose(f32(got[k]), v.numpy(), rtol=1e-6, atol=1e-7)
    cli("ckpt", run, "--last", "3", "-o", tmp_path / "c.safetensors", "-q")
    same_as_cli({k: np.asarray(v) if not isinstance(v, torch.Tensor) else v
                 for k, v in got.items()}, tmp_path / "c.safetensors")


def test_merge_recipe_path_and_dict(tmp_path, rng):
    paths, models = family(tmp_path, rng, "BF16")
    recipe = {"merge_method": "ties", "base_model": paths[0],
              "models": [{"model": p, "parameters": {"weight": 1, "density": 0.5}}
                         for p in paths[1:]],
              "parameters": {"lambda": 0.9}}
    import json
    yml = tmp_path / "r.yml"
    yml.write_text(json.dumps(recipe))
    cli("merge", yml, "-o", tmp_path / "cli.safetensors", "-q")
    same_as_cli(ladle.merge_recipe(recipe), tmp_path / "cli.safetensors")
    same_as_cli(ladle.merge_recipe(yml), tmp_path / "cli.safetensors")


def test_errors_are_ladle_errors_with_the_cli_message(tmp_path, rng):
    paths, models = family(tmp_path, rng, "F32")
    other = {n: torch_of(d, a) for n, d, a in models[1]}
    other["model.norm.weight"] = torch.zeros(3)
    with pytest.raises(ladle.LadleError) as e:
        ladle.uniform_soup([paths[0], other])
    assert isinstance(e.value, ValueError)
    assert str(e.value) == ("tensor 'model.norm.weight' has shape [64] in "
                            f"{paths[0]} but [3] in <state dict 1>")
    r = cli("lerp", paths[0], paths[1], "--alpha", "2", "-o", tmp_path / "x.safetensors",
            check=False)
    with pytest.raises(ladle.LadleError) as e:
        ladle.linear_interpolate(paths[0], paths[1], 2)
    assert str(e.value) in r.err
    with pytest.raises(ladle.LadleError, match="not a torch tensor or a numpy array"):
        ladle.uniform_soup([{"a": [1, 2]}, {"a": [1, 2]}])
    with pytest.raises(ladle.LadleError, match="no such file"):
        ladle.uniform_soup([paths[0], tmp_path / "missing"])


def test_inputs_are_not_modified_and_results_are_fresh(tmp_path, rng):
    paths, models = family(tmp_path, rng, "F32")
    a, b = as_kind(models[1], "torch"), as_kind(models[2], "numpy")
    before = {k: raw(v) for k, v in a.items()}
    r1 = ladle.linear_interpolate(a, b, 0.5, tensors="torch")
    r1["model.norm.weight"][:] = 123
    r2 = ladle.linear_interpolate(a, b, 0.5, tensors="torch")
    assert not torch.equal(r1["model.norm.weight"], r2["model.norm.weight"])
    assert {k: raw(v) for k, v in a.items()} == before


def test_progress_and_interrupt(tmp_path, rng):
    paths, _ = family(tmp_path, rng, "F32")
    seen = []
    ladle.uniform_soup(paths, progress=lambda *a: seen.append(a))
    assert seen and seen[-1][3] is True and seen[-1][0] == seen[-1][1]

    def stop(done, total, seconds, final):
        raise KeyboardInterrupt

    out = tmp_path / "never.safetensors"
    with pytest.raises(KeyboardInterrupt):
        ladle.uniform_soup(paths, out=out, progress=stop)
    assert not out.exists() and not [f for f in os.listdir(tmp_path) if "ladle-tmp" in f]


def test_nonfinite_results_warn(tmp_path):
    a = {"w": np.array([70000.0, 1.0], np.float32)}
    b = {"w": np.array([70000.0, 2.0], np.float32)}
    with pytest.warns(RuntimeWarning, match="1 NaN/Inf value"):
        out = ladle.uniform_soup([a, b], dtype="f16")  # 70000 is past f16's 65504
    assert np.isinf(out["w"][0])


def test_layer_groups_and_layers_from_python(tmp_path, rng):
    paths, models = family(tmp_path, rng, "F32", layers=4)
    a, b = as_kind(models[1], "torch"), as_kind(models[2], "torch")
    got = ladle.linear_interpolate(a, b, 0.5, sets={"early": {"alpha": 0.0},
                                                    "embed|head": {"alpha": 1.0}})
    cli("lerp", paths[1], paths[2], "--alpha", "0.5", "--set", "early:alpha=0.0",
        "--set", "embed|head:alpha=1.0", "-o", tmp_path / "c.safetensors", "-q")
    same_as_cli(got, tmp_path / "c.safetensors")
    assert raw(got["model.layers.0.mlp.up_proj.weight"]) == raw(a["model.layers.0.mlp.up_proj.weight"])
    assert raw(got["lm_head.weight"]) == raw(b["lm_head.weight"])
    with pytest.raises(ladle.LadleError, match="matches no tensor"):
        ladle.linear_interpolate(a, b, [0, 1], layers=r"blocks\.(\d+)\.")


def test_newer_mergekit_methods_match_the_cli(tmp_path, rng):
    paths, _ = family(tmp_path, rng, "BF16")
    base, a, b = paths[0], paths[1], paths[2]
    for fn, kw, args in (
            (ladle.nuslerp, dict(a=a, b=b, t=0.3, base=base, per_row=True),
             ["nuslerp", a, b, "--t", "0.3", "--base", base, "--per-row"]),
            (ladle.nuslerp, dict(a=a, b=b, t=0.7, per_column=True),
             ["nuslerp", a, b, "--t", "0.7", "--per-column"]),
            (ladle.nearswap, dict(base=base, model=b, t=0.001),
             ["nearswap", base, b, "--t", "0.001"]),
            (ladle.multislerp, dict(models=[a, b], weights=[0.3, 0.9], base=base),
             ["multislerp", a, b, "--weights", "0.3,0.9", "--base", base]),
            (ladle.karcher, dict(models=[base, a, b], max_iter=4),
             ["karcher", base, a, b, "--max-iter", "4"]),
            (ladle.sce, dict(base=base, models=[a, b], select_topk=0.4),
             ["sce", "--base", base, a, b, "--select-topk", "0.4"]),
            (ladle.ram, dict(base=base, models=[a, b], plus=True, alpha=0.5),
             ["ram", "--base", base, a, b, "--plus", "--alpha", "0.5"]),
            (ladle.arcee_fusion, dict(base=base, model=b),
             ["arcee-fusion", "--base", base, b]),
            (ladle.iso_c, dict(base=base, models=[a, b], lambda_=0.6, exclude="mlp"),
             ["iso-c", "--base", base, a, b, "--lambda", "0.6", "--exclude", "mlp"]),
            (ladle.tsv, dict(base=base, models=[a, b], weights=[1, 0.5]),
             ["tsv", "--base", base, a, b, "--weights", "1,0.5"]),
            (ladle.consensus_ta, dict(base=base, models=[a, b], k=1, tall_lambda=0.3),
             ["consensus-ta", "--base", base, a, b, "--k", "1", "--tall-lambda", "0.3"]),
            (ladle.wudi, dict(base=base, models=[a, b], iter_num=20, lr=1e-4),
             ["wudi", "--base", base, a, b, "--iter-num", "20", "--lr", "0.0001"]),
            (ladle.consensus_ties, dict(base=base, models=[a, b], k=1, density=0.5,
                                        trim_scope="model", normalize=False),
             ["consensus-ties", "--base", base, "--add", f"1:{a}", "--add", f"1:{b}", "--k",
              "1", "--density", "0.5", "--trim-scope", "model", "--no-normalize"]),
            (ladle.iso_cts, dict(base=base, models=[a, b], common_space_fraction=0.5),
             ["iso-cts", "--base", base, a, b, "--common-space-fraction", "0.5"]),
            (ladle.model_stock, dict(base=base, models=[a, b], filter_wise=True),
             ["stock", "--base", base, a, b, "--filter-wise"]),
            (ladle.ties, dict(base=base, models=[a, b], density=0.3, rescale="l1"),
             ["ties", "--base", base, "--add", f"1:{a}", "--add", f"1:{b}", "--density", "0.3",
              "--rescale", "l1"]),
            (ladle.dare, dict(base=base, models=[a, b], density=0.3, rescale="l1"),
             ["dare", "--base", base, "--add", f"1:{a}", "--add", f"1:{b}", "--density", "0.3",
              "--rescale", "l1"])):
        cli(*args, "-o", tmp_path / "cli.safetensors", "-q", "--force")
        ref, _ = st.load(str(tmp_path / "cli.safetensors"))
        got = fn(**kw, tensors="numpy")
        for k in ref:
            assert raw(got[k]) == ref[k][1].tobytes(), (fn.__name__, k)


def test_pad_to_multiple_of_from_python(tmp_path, rng):
    paths, _ = family(tmp_path, rng, "F32")
    cli("lerp", paths[1], paths[2], "--alpha", "0.5", "--pad-to-multiple-of", "48", "-o",
        tmp_path / "c.safetensors", "-q")
    with pytest.warns(UserWarning, match="padded to 144"):
        got = ladle.linear_interpolate(paths[1], paths[2], 0.5, pad_to_multiple_of=48,
                                       tensors="numpy")
    same_as_cli(got, tmp_path / "c.safetensors")
