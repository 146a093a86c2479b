"""Greedy soups and sweeps with an in-process evaluate_fn: the library's
policy (the one `ladle soup --greedy` runs) against the seed's greedy soup,
against the CLI with an evaluator command scoring the same function, and
the failure modes of a user's evaluate_fn."""
import json
import math
import os
import sys

import numpy as np
import pytest
import torch

import ladle
import seed
import st
from models import as_kind, f32, file_tensors, raw
from util import ROOT
from util import ladle as cli

EVALUATOR = os.path.join(ROOT, "tests", "py", "evaluator.py")


def ingredients(tmp_path, rng, dtype="F32", n=6):
    """A target and n noisy copies of it, some close and one far, written as
    files and kept as torch state dicts."""
    target = st.llama(rng, dtype, layers=1)
    st.write(tmp_path / "target.safetensors", target)
    paths, sds = [], []
    for i in range(n):
        noise = 0.5 if i == 2 else 0.02 * (1 + i % 3)
        m = st.llama(rng, dtype, layers=1, base=target, noise=noise)
        p = tmp_path / f"ft{i}.safetensors"
        st.write(p, m)
        paths.append(str(p))
        sds.append(as_kind(m, "torch"))
    return as_kind(target, "torch"), paths, sds


def neg_distance(target):
    """evaluator.py's score (minus the mean squared distance to the target,
    fp64), on a state dict in memory."""
    def score(sd):
        total, n = 0.0, 0
        for k, t in target.items():
            if not t.is_floating_point():
                continue
            d = f32(sd[k]).astype(np.float64) - t.double().numpy()
            total += float(np.sum(d * d))
            n += d.size
        return -total / n
    return score


@pytest.mark.parametrize("with_scores", [False, True])
def test_greedy_soup_matches_the_seed(tmp_path, rng, with_scores):
    target, _, sds = ingredients(tmp_path, rng)
    fn = neg_distance(target)
    accs = [fn(sd) for sd in sds] if with_scores else None
    r = ladle.greedy_soup(sds, accs, fn, verbose=False)
    soup, best = r
    ref_soup, ref_best, ref_kept = seed.greedy_soup(sds, accs or [fn(sd) for sd in sds], fn)
    assert r.accepted_indices == ref_kept and 2 not in ref_kept  # the far one is dropped
    assert math.isclose(best, ref_best, rel_tol=1e-6)
    assert [r.scores[i] for i in range(len(sds))] == pytest.approx(
        [fn(sd) for sd in sds], rel=1e-12)
    for k, v in ref_soup.items():
        if v.is_floating_point():
            np.testing.assert_allclose(f32(soup[k]), v.numpy(), rtol=1e-6, atol=1e-8)
    assert all(isinstance(v, torch.Tensor) for v in soup.values())
    assert r.accepted == [sds[i] for i in r.accepted_indices]


@pytest.mark.parametrize("dtype", ["F32", "BF16"])
def test_greedy_soup_same_as_the_cli(tmp_path, rng, dtype):
    """The same policy, the same candidates: the CLI scoring files with an
    evaluator command and the package scoring memory with evaluate_fn pick
    the same soup, and write the same bytes."""
    target, paths, sds = ingredients(tmp_path, rng, dtype)
    out = tmp_path / "cli.safetensors"
    r = cli("soup", "--greedy", "--eval",
            f"{sys.executable} {EVALUATOR} {{model}} {tmp_path / 'target.safetensors'}",
            *paths, "--dtype", "f16", "-o", out, "--json", "-q")
    doc = json.loads(r.out)
    py = ladle.greedy_soup(paths, evaluate_fn=neg_distance(target), dtype="f16",
                           out=tmp_path / "py.safetensors", verbose=False)
    assert [paths[i] for i in py.accepted_indices] == doc["soup"]
    assert [row["accepted"] for row in doc["ingredients"]] == py.decisions
    assert py.score == pytest.approx(doc["score"], rel=1e-9)
    want = file_tensors(out)
    for k, v in file_tensors(tmp_path / "py.safetensors").items():
        assert v.tobytes() == want[k].tobytes(), k
    # and in memory, from state dicts: the same bits as the file
    mem = ladle.greedy_soup(sds, evaluate_fn=neg_distance(target), dtype="f16",
                            verbose=False)
    assert mem.accepted_indices == py.accepted_indices
    for k, v in mem.soup.items():
        assert raw(v) == want[k].tobytes(), k


def test_greedy_soup_candidates_are_sum_first_soups(tmp_path, rng):
    """Every candidate, made from the running fp32 sum kept in memory, is
    the fp32 sum of its ingredients in rank order divided once and rounded
    once to the output dtype (numpy), bit for bit."""
    target, _, sds = ingredients(tmp_path, rng, "BF16", n=6)
    fn = neg_distance(target)
    seen = []

    def record(sd):
        seen.append({k: raw(v) for k, v in sd.items()})
        return fn(sd)

    accs = [fn(sd) for sd in sds]
    r = ladle.greedy_soup(sds, accs, record, verbose=False)
    members, soup, checked = [], [r.ranking[0]], 0
    for i, ok in zip(r.ranking[1:], r.decisions[1:]):
        members.append(soup + [i])
        if ok:
            soup.append(i)
    assert len(seen) == len(members) and max(map(len, members)) >= 3
    for cand, idx in zip(seen, members):
        for k, v in sds[0].items():
            if not v.is_floating_point():
                continue
            acc = f32(sds[idx[0]][k]).copy()
            for j in idx[1:]:
                acc = acc + f32(sds[j][k])
            want = st.round_to("BF16", acc / np.float32(len(idx)))
            assert cand[k] == want.tobytes(), (idx, k)
            checked += 1
    assert checked > 0 and r.accepted_indices == soup


def test_evaluate_fn_sees_fresh_candidates_in_the_output_dtype(tmp_path, rng):
    target, _, sds = ingredients(tmp_path, rng, n=4)
    fn = neg_distance(target)
    seen = []

    def mutating(sd):
        seen.append({k: v.dtype for k, v in sd.items()})
        score = fn(sd)
        for v in sd.values():  # a careless evaluator that modifies what it is given
            if v.is_floating_point():
                v.add_(1.0)
        return score

    r = ladle.greedy_soup(sds, evaluate_fn=mutating, dtype="bf16", verbose=False)
    clean = ladle.greedy_soup(sds, evaluate_fn=lambda sd: fn(sd), dtype="bf16", verbose=False)
    assert r.accepted_indices == clean.accepted_indices and r.score == clean.score
    assert all(d["model.norm.weight"] == torch.bfloat16 for d in seen)
    assert len(seen) == 4 + 3  # each ingredient alone, then one soup per step


def test_evaluate_fn_failures(tmp_path, rng):
    target, paths, sds = ingredients(tmp_path, rng, n=3)

    class Boom(RuntimeError):
        pass

    calls = []

    def boom(sd):
        calls.append(1)
        if len(calls) == 4:
            raise Boom("GPU fell over")
        return neg_distance(target)(sd)

    out = tmp_path / "soup.safetensors"
    with pytest.raises(Boom, match="GPU fell over"):
        ladle.greedy_soup(paths, evaluate_fn=boom, out=out, verbose=False)
    assert not out.exists()
    with pytest.raises(ladle.LadleError, match="finite"):
        ladle.greedy_soup(sds, evaluate_fn=lambda sd: float("nan"), verbose=False)
    with pytest.raises(ladle.LadleError, match="must be a number"):
        ladle.greedy_soup(sds, evaluate_fn=lambda sd: "good", verbose=False)
    with pytest.raises(ladle.LadleError, match="needs evaluate_fn"):
        ladle.greedy_soup(sds, [1, 2, 3])
    with pytest.raises(ladle.LadleError, match="2 accuracies for 3"):
        ladle.greedy_soup(sds, [1, 2], neg_distance(target))
    assert not out.exists()


def test_greedy_soup_strict_and_minimize(tmp_path, rng):
    target, _, sds = ingredients(tmp_path, rng, n=3)
    twin = [sds[0], {k: v.clone() for k, v in sds[0].items()}]
    fn = neg_distance(target)
    assert ladle.greedy_soup(twin, evaluate_fn=fn, verbose=False).accepted_indices == [0, 1]
    assert ladle.greedy_soup(twin, evaluate_fn=fn, strict=True,
                             verbose=False).accepted_indices == [0]
    loss = ladle.greedy_soup(sds, evaluate_fn=lambda sd: -fn(sd), minimize=True, verbose=False)
    assert loss.accepted_indices == ladle.greedy_soup(sds, evaluate_fn=fn,
                                                      verbose=False).accepted_indices


def test_sweeps(tmp_path, rng):
    target, paths, sds = ingredients(tmp_path, rng, n=2)
    fn = neg_distance(target)
    a, b = sds[0], sds[1]
    got = ladle.alpha_sweep(a, b, fn, n_steps=11)
    assert [v for v, _ in got] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    for alpha, score in got:
        assert score == pytest.approx(fn(seed.linear_interpolate(a, b, alpha)), rel=1e-9)
    # the CLI's sweep over the same grid gives the same scores
    r = cli("sweep", "-g", "alpha=0:1:11", "--eval",
            f"{sys.executable} {EVALUATOR} {{model}} {tmp_path / 'target.safetensors'}",
            "--json", "-q", "--", "lerp", *paths, "--alpha", "{alpha}")
    cli_scores = [p["score"] for p in json.loads(r.out)["points"]]
    assert [s for _, s in ladle.alpha_sweep(*paths, fn)] == pytest.approx(cli_scores, rel=1e-12)
    base = sds[0]
    tv = ladle.TaskVector(base, b)
    lam = ladle.lambda_sweep(base, tv, fn)
    assert [v for v, _ in lam] == pytest.approx(np.linspace(0, 1, 21).round(12).tolist())
    ref = seed.TaskVector(base, b)
    for v, s in lam:
        assert s == pytest.approx(fn(ref.apply_to(base, v)), rel=1e-6)
    assert [v for v, _ in ladle.lambda_sweep(base, tv, fn, lambdas=[0.3, 1.5])] == [0.3, 1.5]
