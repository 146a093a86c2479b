"""Greedy soup and sweeps, against a Python implementation of the same
algorithms over the same files; the evaluator protocol's failures, the log
and --resume, and --jobs."""
import hashlib
import itertools
import json
import os
import shlex
import signal
import subprocess
import time

import numpy as np
import pytest

import st
from conftest import LADLE, ladle
from evaluator import score as ref_score

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"
F32 = np.float32


def evaluator(target, *extra):
    return " ".join([PY, os.path.join(HERE, "evaluator.py"), "{model}", str(target),
                     *map(str, extra)])


def ingredients(tmp_path, rng, dtype="F32", n=5, layers=1, scales=None):
    """A target model and n ingredients around it, at growing distances, so
    that the greedy soup accepts some and rejects others."""
    target = st.llama(rng, "F32", layers=layers, hidden=16, inter=24, vocab=32)
    tp = tmp_path / "target.safetensors"
    st.write(tp, target)
    paths = []
    if scales is None:
        scales = [0.5, 0.55, 0.6, 1.5, 2.5][:n] if n <= 5 else [0.5 + 0.1 * i for i in range(n)]
    for i, scale in enumerate(scales):
        m = [(name, dtype, st.round_to(dtype, arr + F32(scale) * rng.standard_normal(
              arr.shape).astype(F32)) if arr.dtype == F32 else arr) for name, _, arr in target]
        p = tmp_path / f"ft{i}.safetensors"
        st.write(p, m)
        paths.append(p)
    # Shuffle the order given, so ranking matters.
    order = [2, 0, 4, 1, 3][:n] if n == 5 else list(range(n))
    return tp, [paths[i] for i in order]


def f32_tensors(path):
    t, _ = st.load(str(path))
    return {k: st.to_f32(d, a) for k, (d, a) in t.items() if d in ("F32", "F16", "BF16")}


def write_soup(path, members, dtype):
    """The reference candidate: the fp32 sum of its ingredients in rank
    order, divided once by their count (fp32), rounded once to dtype."""
    M = [f32_tensors(p) for p in members]
    out = []
    for k in M[0]:
        acc = M[0][k].copy()
        for m in M[1:]:
            acc = acc + m[k]
        out.append((k, dtype, st.round_to(dtype, acc / F32(len(M)))))
    st.write(path, out)
    return path


def greedy_reference(tmp_path, models, target, dtype=None, scores=None, strict=False,
                     minimize=False):
    """Wortsman et al.'s greedy soup, written from the paper's recipe."""
    def evaluate(members, name):
        if dtype is None and len(members) == 1:
            return ref_score(str(members[0]), str(target), minimize)
        d = dtype or st.read(members[0])[0][next(iter(st.read(members[0])[0]))][0]
        return ref_score(str(write_soup(tmp_path / name, members, d)), str(target), minimize)

    own = scores or [evaluate([m], f"own{i}.safetensors") for i, m in enumerate(models)]
    better = (lambda a, b: a < b) if minimize else (lambda a, b: a > b)
    rank = sorted(range(len(models)), key=lambda i: own[i], reverse=not minimize)  # stable
    soup, best, rows = [rank[0]], own[rank[0]], [(rank[0], own[rank[0]], own[rank[0]], True)]
    for r in rank[1:]:
        s = evaluate([models[i] for i in soup + [r]], f"cand{r}.safetensors")
        ok = better(s, best) if strict else not better(best, s)
        rows.append((r, own[r], s, ok))
        if ok:
            soup.append(r)
            best = s
    return rows, soup, best


def check_within_one_ulp(got_path, want_path, dtype):
    G, W = f32_tensors(got_path), f32_tensors(want_path)
    assert set(G) == set(W)
    for k in W:
        diff = np.abs(G[k].astype(np.float64) - W[k].astype(np.float64))
        assert np.all(diff <= st.ulp(dtype, W[k].astype(np.float64))), k


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def same_tensors(a, b):
    """Bit-identical tensors (the files' metadata names their own command)."""
    A, B = st.read(a)[0], st.read(b)[0]
    return A.keys() == B.keys() and all(A[k][0] == B[k][0] and np.array_equal(A[k][1], B[k][1])
                                        for k in A)


def garbled(path, to):
    """path's header with every value NaN: what must not be read."""
    t, _, order = st.read(path)
    st.write(to, [(k, t[k][0], st.round_to(t[k][0], np.full(t[k][1].shape, np.nan))
                   if t[k][0] in ("F32", "BF16", "F16") else t[k][1]) for k in order])
    return to


@pytest.mark.parametrize("dtype", ["BF16", "F32"])
def test_soup_sum_first_and_partial_sums(tmp_path, rng, dtype):
    """--sum-first is the fp32 sum in the order given, divided once; a sum
    stored by --sum-only stands in for the models it holds, bit for bit,
    and their values (the template's too) are never read."""
    _, models = ingredients(tmp_path, rng, dtype, n=5)
    direct = tmp_path / "direct.safetensors"
    ladle("soup", "--sum-first", *models, "-o", direct, "-q")
    assert same_tensors(direct, write_soup(tmp_path / "want.safetensors", models, dtype))
    s2, s4 = tmp_path / "s2.safetensors", tmp_path / "s4.safetensors"
    ladle("soup", "--sum-first", "--sum-only", *models[:2], "-o", s2, "-q")
    ladle("soup", "--sum-first", "--sum-only", *models[:4], "--partial-sum", f"{s2}:2", "-o", s4,
          "-q")
    M = [f32_tensors(m) for m in models]
    for k, (d, a) in st.read(s4)[0].items():
        if d == "F32" and k in M[0]:
            assert np.array_equal(a, ((M[0][k] + M[1][k]) + M[2][k]) + M[3][k]), k
    # The models a sum stands in for: garbled past their headers.
    bad = [garbled(m, tmp_path / f"bad{i}.safetensors") for i, m in enumerate(models[:4])]
    for partial, k in ((s2, 2), (s4, 4)):
        got = tmp_path / f"from{k}.safetensors"
        r = ladle("soup", "--sum-first", *bad[:k], *models[k:], "--partial-sum", f"{partial}:{k}",
                  "-o", got)
        assert same_tensors(got, direct), k
        roles = [x["role"] for x in json.loads(st.read(got)[1]["ladle_recipe"])["inputs"]]
        assert roles == ["template", "partial sum"] + ["ingredient"] * (5 - k)
    # A partial sum of all of them: the mean of the stored sum alone.
    s5 = tmp_path / "s5.safetensors"
    ladle("soup", "--sum-first", "--sum-only", *models, "--partial-sum", f"{s4}:4", "-o", s5, "-q")
    got = tmp_path / "from5.safetensors"
    ladle("soup", "--sum-first", *bad[:1], *models[1:], "--partial-sum", f"{s5}:5", "-o", got, "-q")
    assert same_tensors(got, direct)
    for args, msg in ((["--partial-sum", f"{s2}:2"], "goes with --sum-first"),
                      (["--sum-only"], "goes with --sum-first"),
                      (["--sum-first", "--weights", "1,2,3,4,5"], "no --weights"),
                      (["--sum-first", "--sum-only", "--dtype", "bf16"], "no --dtype"),
                      (["--sum-first", "--partial-sum", f"{s2}:6"], "FILE:K"),
                      (["--sum-first", "--partial-sum", f"{s2}"], "FILE:K")):
        r = ladle("soup", *models, *args, "-o", tmp_path / "x.safetensors", check=False)
        assert r.code == 2 and msg in r.err and not (tmp_path / "x.safetensors").exists(), args


def test_greedy_reads_a_running_sum(tmp_path, rng):
    """Once the soup is large enough for it to pay (F32 ingredients: 3),
    each candidate reads the soup's stored sum, at most one of the soup's
    ingredients not yet in it (F32: the sum is extended once two are
    left out) and its newest ingredient, as its recorded inputs show; every
    candidate equals the reference soup of its ingredients bit for bit."""
    target, models = ingredients(tmp_path, rng, "F32", n=7,
                                 scales=[0.5, 0.52, 0.54, 3.0, 0.56, 0.58, 4.0])
    work = tmp_path / "work"
    out = tmp_path / "soup.safetensors"
    r = ladle("soup", "--greedy", "--eval", evaluator(target), *models, "-o", out, "--json",
              "--work", work, "--keep-candidates", "-q")
    got = json.loads(r.out)
    log = [json.loads(line) for line in open(work / "ladle-log.jsonl")][len(models):]
    partial = 0
    for e in log:
        members = shlex.split(e["recipe"])[3:]
        assert members == [str(m) for m in got["soup"][:1]] or len(members) >= 2
        want = write_soup(tmp_path / "want.safetensors", members, "F32")
        assert same_tensors(e["path"], want), e["label"]
        roles = [x["role"] for x in json.loads(st.read(e["path"])[1]["ladle_recipe"])["inputs"]]
        if len(members) >= 4:
            assert roles[:2] == ["template", "partial sum"], e["label"]
            assert roles[2:] in (["ingredient"], ["ingredient"] * 2), e["label"]
            partial += 1
        else:
            assert roles == ["ingredient"] * len(members)
    assert partial >= 2  # the test means something
    assert 4 <= len(got["soup"]) < len(models)
    assert same_tensors(out, write_soup(tmp_path / "w.safetensors", got["soup"], "F32"))
    assert not [x for x in os.listdir(work) if "sum" in x]  # the running sum is removed


def test_greedy_merges_the_next_candidate_while_one_is_evaluated(tmp_path, rng):
    """While a step's candidate is evaluated, the next step's candidate if
    it is rejected is merged (cand-next-*, which the evaluator sees in the
    work folder before it scores); the next step evaluates that file when
    the soup did not change and stops and removes it when it did; every
    candidate is still the reference soup bit for bit, and none is left."""
    target, models = ingredients(tmp_path, rng, "F32", n=6,
                                 scales=[0.5, 0.52, 3.0, 0.54, 4.0, 5.0])
    work = tmp_path / "work"
    record = tmp_path / "record.jsonl"
    out = tmp_path / "soup.safetensors"
    r = ladle("soup", "--greedy", "--eval", evaluator(target, "--record", record, "--sleep",
                                                     "0.6", "--list", work),
              *models, "-o", out, "--json", "--work", work, "-q")
    got = json.loads(r.out)
    accepted = [x["accepted"] for x in got["ingredients"]]
    assert True in accepted[1:] and False in accepted[1:]  # the test means something
    log = [json.loads(line) for line in open(work / "ladle-log.jsonl")][len(models):]
    runs = {e["model"]: e for e in map(json.loads, open(record))}
    for step, e in enumerate(log, start=1):
        name = os.path.basename(e["path"])
        # made ahead exactly when the step before (not the first) was rejected
        assert name.startswith("cand-next-") == (step > 1 and not accepted[step - 1]), name
        if step + 1 < len(models):  # the next one was being made meanwhile
            assert any(x.startswith("cand-next-") for x in runs[e["path"]]["listed"]), name
    assert sorted(os.listdir(work)) == ["ladle-log.jsonl"]
    # the candidates' bytes: each scored as the reference soup of its members
    for e in log:
        members = shlex.split(e["recipe"])[3:]
        want = write_soup(tmp_path / "want.safetensors", members, "F32")
        assert e["score"] == ref_score(str(want), str(target)), e["label"]
    assert same_tensors(out, write_soup(tmp_path / "w.safetensors", got["soup"], "F32"))


@pytest.mark.parametrize("in_dtype,out_dtype", [("F32", None), ("BF16", "F16"), ("BF16", None)])
def test_greedy_matches_reference(tmp_path, rng, in_dtype, out_dtype):
    target, models = ingredients(tmp_path, rng, in_dtype)
    before = [sha(m) for m in models]
    out = tmp_path / "soup.safetensors"
    work = tmp_path / "work"
    args = ["soup", "--greedy", "--eval", evaluator(target), *models, "-o", out, "--json",
            "--work", work, "--keep-candidates", "-q"]
    if out_dtype:
        args += ["--dtype", out_dtype.lower()]
    r = ladle(*args)
    got = json.loads(r.out)
    rows, soup, best = greedy_reference(tmp_path, models, target, out_dtype)
    assert [x["model"] for x in got["ingredients"]] == [str(models[i]) for i, *_ in rows]
    assert [x["accepted"] for x in got["ingredients"]] == [ok for *_, ok in rows]
    assert 2 <= len(soup) < len(models)  # the test means something
    assert got["soup"] == [str(models[i]) for i in soup]
    for x, (_, own, s, _) in zip(got["ingredients"], rows):
        assert x["score"] == pytest.approx(own, rel=1e-6)
        assert x["soup_score"] == pytest.approx(s, rel=1e-6)
    assert got["score"] == pytest.approx(best, rel=1e-6)
    # OUT: the reference soup bit for bit, and bit-identical to the last
    # accepted candidate (found through the log).
    dtype = out_dtype or in_dtype
    want = write_soup(tmp_path / "want.safetensors", [models[i] for i in soup], dtype)
    assert same_tensors(out, want)
    log = [json.loads(line) for line in open(work / "ladle-log.jsonl")]
    assert all(e["eval"] == evaluator(target) and e["seconds"] > 0 for e in log)
    n_own = len(models)
    assert len(log) == n_own + len(models) - 1
    last = [e for e, x in zip(log[n_own:], got["ingredients"][1:]) if x["accepted"]][-1]
    assert st.read(out)[0].keys() == st.read(last["path"])[0].keys()
    for k, (d, a) in st.read(out)[0].items():
        assert d == dtype and np.array_equal(a, st.read(last["path"])[0][k][1]), k
    assert [sha(m) for m in models] == before


def test_greedy_given_scores_ties_and_strict(tmp_path, rng):
    target, models = ingredients(tmp_path, rng, "F32", n=3)
    twin = tmp_path / "twin.safetensors"
    twin.write_bytes(models[0].read_bytes())
    record = tmp_path / "record.jsonl"
    # Tied given scores keep the order given; the twin's soup with models[0]
    # is models[0] itself (the same score): accepted, but not with --strict.
    s0 = ref_score(str(models[0]), str(target))
    given = [s0, s0 - 1, s0 - 1, s0]
    scores = ",".join(map(repr, given))
    mods = [models[0], models[1], models[2], twin]
    for strict in (False, True):
        out = tmp_path / f"out{strict}.safetensors"
        args = ["soup", "--greedy", "--scores", scores, "--eval",
                evaluator(target, "--record", record), *mods, "-o", out, "--json", "-q"]
        got = json.loads(ladle(*args, *(["--strict"] if strict else [])).out)
        rows, soup, _ = greedy_reference(tmp_path, mods, target, scores=given, strict=strict)
        assert [x["model"] for x in got["ingredients"]] == [str(mods[i]) for i in (0, 3, 1, 2)]
        assert [x["accepted"] for x in got["ingredients"]] == [ok for *_, ok in rows]
        assert got["ingredients"][1]["accepted"] is (not strict)
    # --scores: no ingredient was evaluated on its own, only the 3 candidates each time.
    assert len(record.read_text().splitlines()) == 6


def test_greedy_minimize(tmp_path, rng):
    target, models = ingredients(tmp_path, rng, "F32", n=4)
    out1, out2 = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    hi = json.loads(ladle("soup", "--greedy", "--eval", evaluator(target), *models, "-o", out1,
                          "--json", "-q").out)
    lo = json.loads(ladle("soup", "--greedy", "--minimize", "--eval",
                          evaluator(target, "--minimize"), *models, "-o", out2, "--json",
                          "-q").out)
    assert lo["soup"] == hi["soup"] and lo["minimize"] is True
    assert lo["score"] == pytest.approx(-hi["score"])
    assert same_tensors(out1, out2)


def lerp_reference(tmp_path, a, b, alpha, name):
    A, B = f32_tensors(a), f32_tensors(b)
    out = [(k, "F32", (F32(1 - alpha) * A[k] + F32(alpha) * B[k])) for k in A]
    p = tmp_path / name
    st.write(p, out)
    return p


def test_sweep_matches_reference(tmp_path, rng):
    target, models = ingredients(tmp_path, rng, "F32", n=2)
    out = tmp_path / "best.safetensors"
    r = ladle("sweep", "--grid", "alpha=0:1:11", "--eval", evaluator(target), "-o", out,
              "--json", "-q", "--", "lerp", models[0], models[1], "--alpha", "{alpha}")
    got = json.loads(r.out)
    alphas = [float(f"{a:.12g}") for a in np.linspace(0, 1, 11)]  # 0.3, not 0.30000000000000004
    assert got["grid"]["alpha"] == alphas
    ref = [ref_score(str(lerp_reference(tmp_path, *models, a, f"r{i}.safetensors")), str(target))
           for i, a in enumerate(alphas)]
    assert [p["params"]["alpha"] for p in got["points"]] == alphas
    assert "--alpha 0.3 " in got["points"][3]["recipe"] + " "
    for p, s in zip(got["points"], ref):
        assert p["score"] == pytest.approx(s, rel=1e-6)
        assert p["recipe"].startswith("ladle lerp ")
    best = int(np.argmax(ref))
    assert 0 < best < 10 and got["best"]["params"]["alpha"] == alphas[best]
    assert [p["best"] for p in got["points"]] == [i == best for i in range(11)]
    check_within_one_ulp(out, lerp_reference(tmp_path, *models, alphas[best], "w.safetensors"),
                         "F32")


def test_sweep_two_axes_table(tmp_path, rng):
    target, models = ingredients(tmp_path, rng, "F32", n=3)
    base, m1, m2 = models
    r = ladle("sweep", "-g", "a=0.2:1:3", "-g", "b=0.5,-0.25", "--eval", evaluator(target),
              "--json", "-q", "--", "task", "--base", base, "--add", f"{{a}}:{m1}",
              "--add", f"{{b}}:{m2}")
    got = json.loads(r.out)
    pts = list(itertools.product([0.2, 0.6, 1.0], [0.5, -0.25]))
    assert [(p["params"]["a"], p["params"]["b"]) for p in got["points"]] == pts
    B, M1, M2 = f32_tensors(base), f32_tensors(m1), f32_tensors(m2)
    for p, (a, b) in zip(got["points"], pts):
        ta, tb = F32(a), F32(b)  # ladle: base + sum(lambda_i * (m_i - base)) in fp32
        ref = [(k, "F32", B[k] + (ta * (M1[k] - B[k]) + tb * (M2[k] - B[k]))) for k in B]
        st.write(tmp_path / "r.safetensors", ref)
        assert p["score"] == pytest.approx(ref_score(str(tmp_path / "r.safetensors"),
                                                     str(target)), rel=1e-5)
    # The text table: one row per point, the best marked once.
    r = ladle("sweep", "-g", "a=0.2:1:3", "-g", "b=0.5,-0.25", "--eval", evaluator(target),
              "-q", "--", "task", "--base", base, "--add", f"{{a}}:{m1}", "--add", f"{{b}}:{m2}")
    lines = r.out.strip().splitlines()
    assert lines[0].split() == ["a", "b", "score"] and len(lines) == 8
    assert sum("<- best" in x for x in lines) == 1


def run_until(args, record, count, timeout=60):
    """Starts ladle, sends SIGINT once the file `record` has `count` lines."""
    p = subprocess.Popen([LADLE, *map(str, args)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while time.time() - t0 < timeout:
        if record.exists() and len(record.read_text().splitlines()) >= count:
            break
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    return p.returncode, out, err


@pytest.mark.parametrize("kind", ["sweep", "greedy"])
def test_interrupt_then_resume(tmp_path, rng, kind):
    target, models = ingredients(tmp_path, rng, "F32", n=4)
    record, work = tmp_path / "record.jsonl", tmp_path / "work"
    ev = evaluator(target, "--record", record, "--sleep", "0.3")
    out = tmp_path / "out.safetensors"
    if kind == "sweep":
        args = ["sweep", "-g", "t=0:1:6", "--eval", ev, "-o", out, "--work", work, "--json",
                "--", "slerp", models[0], models[1], "--t", "{t}"]
        total = 6
    else:
        args = ["soup", "--greedy", "--eval", ev, *models, "-o", out, "--work", work, "--json"]
        total = 7
    log = work / "ladle-log.jsonl"
    code, _, err = run_until(args, log, 3)
    assert code == 130, err
    assert err.strip().splitlines()[-1].startswith("ladle: error: ") and "interrupted" in err
    assert not out.exists()
    assert not [x for x in os.listdir(work) if x.startswith("cand-")]  # candidates removed
    logged = [json.loads(x) for x in open(log)]
    assert 3 <= len(logged) < total
    # Without --resume the log is not overwritten.
    r = ladle(*args, check=False)
    assert r.code == 1 and "--resume" in r.err and not out.exists()
    r = ladle(args[0], "--resume", *args[1:])
    assert r.err.count("(from the log)") == len(logged)
    final = [json.loads(x) for x in open(log)]
    assert len(final) == total and len({e["recipe"] for e in final}) == total
    # An evaluation stopped by the interrupt may have recorded itself first.
    assert total <= len(record.read_text().splitlines()) <= total + 1
    # Same result as an uninterrupted run.
    out2 = tmp_path / "out2.safetensors"
    args2 = [a if a != out else out2 for a in args]
    args2[args2.index(work)] = tmp_path / "work2"
    r2 = ladle(*args2)
    key = "score" if kind == "greedy" else "best"
    assert json.loads(r.out)[key] == json.loads(r2.out)[key]
    assert same_tensors(out, out2)


def test_jobs_run_at_once(tmp_path, rng):
    target, models = ingredients(tmp_path, rng, "F32", n=2)
    rec1, rec2 = tmp_path / "r1.jsonl", tmp_path / "r2.jsonl"
    results = []
    for jobs, rec in ((2, rec1), (1, rec2)):
        r = ladle("sweep", "-g", "alpha=0:1:6", "--jobs", jobs, "--json", "-q",
                  "--eval", evaluator(target, "--record", rec, "--sleep", "0.4"),
                  "--", "lerp", *models, "--alpha", "{alpha}")
        results.append(json.loads(r.out))
    runs = [json.loads(x) for x in open(rec1)]
    assert {x["slot"] for x in runs} == {"0", "1"}
    assert all(x["env_model"] == x["model"] for x in runs)
    overlap = any(a["start"] < b["end"] and b["start"] < a["end"]
                  for a, b in itertools.combinations(runs, 2))
    assert overlap, "--jobs 2 never ran two evaluations at once"
    runs1 = [json.loads(x) for x in open(rec2)]
    assert not any(a["start"] < b["end"] - 0.05 and b["start"] < a["end"] - 0.05
                   for a, b in itertools.combinations(runs1, 2))
    assert [p["score"] for p in results[0]["points"]] == [p["score"] for p in results[1]["points"]]


FAILING = [
    ("exit 3", "sh -c 'echo 0.9; echo boom >&2; exit 3'", "exit status 3"),
    ("no number", "sh -c 'echo no score here; echo nan'", "no number"),
    ("killed", "echo 0.5; kill -9 $$", "killed by signal 9"),
]


@pytest.mark.parametrize("name,cmd,words", FAILING, ids=[f[0] for f in FAILING])
def test_evaluator_failure(tmp_path, rng, name, cmd, words):
    _, models = ingredients(tmp_path, rng, "F32", n=2)
    before = [sha(m) for m in models]
    out = tmp_path / "out.safetensors"
    for args in (["soup", "--greedy", "--eval", cmd, *models, "-o", out],
                 ["sweep", "-g", "a=0,1", "--eval", cmd, "-o", out, "--", "lerp", *models,
                  "--alpha", "{a}"]):
        r = ladle(*args, check=False)
        last = r.err.strip().splitlines()[-1]
        assert r.code == 1 and last.startswith("ladle: error: ") and words in last, r.err
        assert "nothing was accepted" in last
        if name == "exit 3":
            assert "  | boom" in r.err  # the tail of its stderr
        assert not out.exists()
        assert sorted(os.listdir(tmp_path)) == sorted(["target.safetensors", "ft0.safetensors",
                                                       "ft1.safetensors"])
    assert [sha(m) for m in models] == before


def test_evaluator_timeout_stops_its_processes(tmp_path, rng):
    _, models = ingredients(tmp_path, rng, "F32", n=2)
    pidfile = tmp_path / "pid"
    # The evaluator starts a grandchild that would outlive a plain kill.
    cmd = f"sleep 60 & echo $! > {pidfile}; wait"
    out = tmp_path / "out.safetensors"
    t0 = time.time()
    r = ladle("sweep", "-g", "a=0.5", "--eval", cmd, "--eval-timeout", "1", "-o", out, "--",
              "lerp", *models, "--alpha", "{a}", check=False)
    assert time.time() - t0 < 15
    assert r.code == 1 and "timed out after 1 s" in r.err, r.err
    assert not out.exists()
    pid = int(pidfile.read_text())
    time.sleep(0.3)
    try:  # gone, or a zombie waiting for a reaper (PID 1 in a container may not reap)
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        state = "gone"
    assert state in ("gone", "Z"), state


@pytest.mark.parametrize("printed,want", [
    ("acc=0.93", 0.93), ("accuracy: 93.1%", 93.1), ('{"score": -1.5e-3, "n": 7}', 7),
    ("epoch 3/10\\nloss 0.25", 0.25), ("0.7\\nnan", 0.7), ("model-3 got 12", 12),
    ("score 0.5.", 0.5),
])
def test_score_is_the_last_number(tmp_path, rng, printed, want):
    _, models = ingredients(tmp_path, rng, "F32", n=2)
    (tmp_path / "printed").write_text(printed.replace("\\n", "\n") + "\n")
    r = ladle("sweep", "-g", "a=0.5", "--eval", f"cat {tmp_path / 'printed'}", "--json", "-q",
              "--", "lerp", *models, "--alpha", "{a}", check=False)
    if printed == "score 0.5.":  # "0.5." is not a number: there is none
        assert r.code == 1 and "no number" in r.err
        return
    assert r.code == 0, r.err
    assert json.loads(r.out)["points"][0]["score"] == want


def test_model_path_is_quoted(tmp_path, rng):
    target, models = ingredients(tmp_path, rng, "F32", n=2)
    work = tmp_path / "it's a work dir"
    r = ladle("sweep", "-g", "a=0.5", "--work", work, "--json", "-q", "--eval",
              "test -f {model} && test -f \"$LADLE_MODEL\" && " + evaluator(target), "--",
              "lerp", *models, "--alpha", "{a}")
    assert json.loads(r.out)["points"][0]["score"] < 0


def test_folder_candidates(tmp_path, rng):
    """Candidates take OUT's form: a folder output gives folder candidates
    (config and tokenizer included), as an evaluator's from_pretrained wants."""
    m = st.llama(rng, "BF16", layers=1)
    a, b = tmp_path / "a", tmp_path / "b"
    st.write_hf(a, m, st.config())
    st.write_hf(b, st.llama(rng, "BF16", layers=1, base=m), st.config())
    cmd = "test -f {model}/config.json && test -f {model}/model.safetensors && echo 1"
    out = tmp_path / "best"
    ladle("sweep", "-g", "a=0,1", "--eval", cmd, "-o", out, "-q", "--", "lerp", a, b,
          "--alpha", "{a}")
    assert (out / "config.json").exists()


@pytest.mark.parametrize("args,words", [
    (["sweep", "-g", "a=0:1:3", "--eval", "echo 1", "--", "lerp", "A", "B", "--alpha", "{b}"],
     "{b} in the merge command is not a --grid axis"),
    (["sweep", "-g", "a=0:1:3", "--eval", "echo 1", "--", "lerp", "A", "B", "--alpha", "0.5"],
     "{a} is not in the merge command"),
    (["sweep", "-g", "a=0:1:3", "--eval", "echo 1", "--", "lerp", "A", "B", "--alpha", "{a}",
      "-o", "x"], "must not name an output"),
    (["sweep", "-g", "a=0:1", "--eval", "echo 1", "--", "lerp", "A", "B"], "START:STOP:STEPS"),
    (["sweep", "-g", "model=0,1", "--eval", "echo 1", "--", "lerp"], "taken"),
    (["sweep", "--eval", "echo 1", "--", "lerp", "A", "B"], "no --grid"),
    (["sweep", "-g", "a=1", "--", "lerp", "A", "B", "--alpha", "{a}"], "no evaluator"),
    (["sweep", "-g", "a=1", "--eval", "x", "--", "info", "{a}"], "not a merge command"),
    (["soup", "--greedy", "A", "B", "-o", "x.safetensors"], "needs an evaluator"),
    (["soup", "--eval", "echo 1", "A", "B", "-o", "x.safetensors"], "go with --greedy"),
    (["soup", "--greedy", "--eval", "echo 1", "--scores", "1,2,3", "A", "B", "-o", "x"],
     "3 scores for 2 ingredients"),
    (["soup", "--greedy", "--eval", "echo 1", "--resume", "A", "B", "-o", "x.safetensors"],
     "--resume needs"),
])
def test_usage_errors(tmp_path, args, words):
    r = ladle(*args, check=False)
    assert r.code in (1, 2) and words in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1 and r.err.startswith("ladle: error: ")


def test_existing_output_is_refused_before_any_work(tmp_path, rng):
    target, models = ingredients(tmp_path, rng, "F32", n=2)
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"precious")
    record = tmp_path / "rec"
    r = ladle("soup", "--greedy", "--eval", evaluator(target, "--record", record), *models,
              "-o", out, check=False)
    assert r.code == 2 and "--force" in r.err and not record.exists()
    assert out.read_bytes() == b"precious"


def test_sweep_over_a_mergekit_recipe(tmp_path, rng):
    """`merge recipe.yml --var t={t}`: {t} in the recipe's text takes each
    value; the recipe's merges equal the matching subcommand's, bit for bit
    (so the scores are equal)."""
    target, models = ingredients(tmp_path, rng, "F32", n=2)
    recipe = tmp_path / "slerp.yml"
    recipe.write_text(f"models:\n  - model: {models[0]}\n  - model: {models[1]}\n"
                      f"merge_method: slerp\nbase_model: {models[0]}\n"
                      "parameters:\n  t: {t}\n")
    a = json.loads(ladle("sweep", "-g", "t=0.1,0.5,0.8", "--eval", evaluator(target), "--json",
                         "-q", "--", "merge", recipe, "--var", "t={t}").out)
    b = json.loads(ladle("sweep", "-g", "t=0.1,0.5,0.8", "--eval", evaluator(target), "--json",
                         "-q", "--", "slerp", *models, "--t", "{t}").out)
    assert [p["score"] for p in a["points"]] == [p["score"] for p in b["points"]]
    assert len({p["score"] for p in a["points"]}) == 3
    r = ladle("merge", recipe, "--var", "x=1", "-o", tmp_path / "o.safetensors", check=False)
    assert r.code == 1 and "the recipe has no {x}" in r.err
    r = ladle("merge", recipe, "--var", "t=0.25", "--dry-run", "-o", tmp_path / "o")
    assert "t=0.25" in r.out
