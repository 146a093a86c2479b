"""Fault injection: a disk that fills up mid-write, a read-only output
folder, SIGKILL mid-merge and mid-sweep. After each: inputs unchanged, no
partial OUT, and a search finishes with --resume."""
import json
import os
import signal
import subprocess
import time

import pytest

import st
from conftest import LADLE, ladle
from test_output_safety import big_models, digest, leftovers, small_pair
from test_search import evaluator, ingredients, same_tensors


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs of our own (root only), unmounted afterwards."""
    mounted = []

    def mount(size, ro=False):
        d = tmp_path / f"fs{len(mounted)}"
        d.mkdir()
        opts = f"size={size}" + (",ro" if ro else "")
        if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", d],
                          capture_output=True).returncode != 0:
            pytest.skip("cannot mount a tmpfs here (not root?)")
        mounted.append(d)
        return d
    yield mount
    for d in mounted:
        subprocess.run(["umount", "-l", d])


def test_disk_fills_up_during_the_write(tmp_path, tmpfs):
    """Enough space when the merge starts; another process takes it while
    ladle writes: ENOSPC mid-write, a one-line error, nothing left."""
    a, b = big_models(tmp_path, 2, 32)
    before = [digest(a), digest(b)]
    fs = tmpfs("48m")
    out = fs / "out.safetensors"
    proc = subprocess.Popen([LADLE, "lerp", a, b, "--alpha", "0.5", "-j", "1", "-o", out],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not leftovers(fs) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.0005)
    try:
        with open(fs / "filler", "wb") as f:  # takes what is left
            f.write(b"\0" * (40 << 20))
    except OSError:
        pass
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the merge finished before the disk filled up")
    assert proc.returncode == 1 and err.startswith("ladle: error: ") and \
        "No space left on device" in err, err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() and leftovers(fs) == []
    assert [digest(a), digest(b)] == before


def test_not_enough_space_is_caught_before_writing(tmp_path, tmpfs):
    a, b = big_models(tmp_path, 2, 8)
    fs = tmpfs("2m")
    r = ladle("lerp", a, b, "--alpha", "0.5", "-o", fs / "o.safetensors", check=False)
    assert r.code == 1 and "space" in r.err and os.listdir(fs) == []


def test_read_only_output_folder(tmp_path, rng, tmpfs):
    """A read-only file system: even root cannot write there."""
    a, b = small_pair(tmp_path, rng)
    ro = tmpfs("8m", ro=True)
    for out in (ro / "o.safetensors", ro / "folder"):
        r = ladle("lerp", a, b, "--alpha", "0.5", "-o", out, check=False)
        assert r.code == 1 and r.err.startswith("ladle: error: ") and "Read-only" in r.err, r.err
        assert os.listdir(ro) == []


def test_sigkill_mid_merge(tmp_path):
    """SIGKILL cannot be caught: OUT never appears (it is a rename of a
    finished file), the hidden temporary stays, inputs are untouched, and
    the next run succeeds."""
    models = big_models(tmp_path, 3, 64)
    before = [digest(m) for m in models]
    out = tmp_path / "out.safetensors"
    proc = subprocess.Popen([LADLE, "soup", *models, "-j", "1", "-o", out],
                            stderr=subprocess.PIPE)
    deadline = time.time() + 30
    while not leftovers(tmp_path) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.0005)
    proc.kill()
    proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the merge finished before the signal arrived")
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    assert all(x.startswith(".out.safetensors.ladle-tmp-") for x in leftovers(tmp_path))
    assert [digest(m) for m in models] == before
    ladle("soup", *models, "-o", out, "-q")
    assert st.read(out)[0]


def test_sigkill_mid_sweep_then_resume(tmp_path, rng):
    target, models = ingredients(tmp_path, rng, "F32", n=2)
    before = [digest(m) for m in models]
    work, out = tmp_path / "work", tmp_path / "best.safetensors"
    args = ["sweep", "-g", "a=0:1:6", "--eval", evaluator(target, "--sleep", "0.2"), "-o", out,
            "--work", work, "--json", "--", "lerp", *models, "--alpha", "{a}"]
    log = work / "ladle-log.jsonl"
    proc = subprocess.Popen([LADLE, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 2:
            break
        time.sleep(0.01)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    time.sleep(0.5)  # an orphaned evaluator finishes on its own
    logged = len(log.read_text().splitlines())
    assert 2 <= logged < 6 and not out.exists()
    stale = [x for x in os.listdir(work) if "cand-" in x]
    r = ladle(args[0], "--resume", *args[1:])
    assert not [x for x in os.listdir(work) if "cand-" in x]
    assert ("left in" in r.err) == bool(stale)
    final = [json.loads(x) for x in open(log)]
    assert r.err.count("(from the log)") == logged
    assert len(final) == 6 and len({e["recipe"] for e in final}) == 6
    ref = tmp_path / "ref.safetensors"
    r2 = ladle("sweep", "-g", "a=0:1:6", "--eval", evaluator(target), "-o", ref, "--json", "-q",
               "--", "lerp", *models, "--alpha", "{a}")
    assert json.loads(r.out)["best"] == json.loads(r2.out)["best"]
    assert same_tensors(out, ref)
    assert [digest(m) for m in models] == before
