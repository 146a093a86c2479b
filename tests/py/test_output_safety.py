"""Outputs appear complete or not at all; inputs are never touched."""
import hashlib
import os
import resource
import signal
import subprocess
import time

import numpy as np
import pytest

import st
from conftest import LADLE, ladle


def digest(path):
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(path)) if os.path.isdir(path) else [("", [], [path])]:
        for f in sorted(files):
            with open(os.path.join(root, f), "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


def small_pair(tmp_path, rng):
    base = st.llama(rng, "BF16")
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    st.write(a, base)
    st.write(b, st.llama(rng, "BF16", base=base))
    return a, b


def big_models(tmp_path, n, mb):
    """n float32 models of about mb MB each, written without holding them all."""
    rng = np.random.default_rng(7)
    paths = []
    for i in range(n):
        p = tmp_path / f"big{i}.safetensors"
        tensors = [(f"layers.{k}.weight", "F32",
                    rng.standard_normal((1024, 1024), dtype=np.float32)) for k in range(mb // 4)]
        st.write(p, tensors)
        paths.append(p)
    return paths


def leftovers(folder):
    return [f for f in os.listdir(folder) if ".ladle-" in f]


def test_existing_output_needs_force(tmp_path, rng):
    a, b = small_pair(tmp_path, rng)
    out = tmp_path / "o.safetensors"
    out.write_bytes(b"precious")
    r = ladle("lerp", a, b, "--alpha", "0.5", "-o", out, check=False)
    assert r.code == 1 and "--force" in r.err and out.read_bytes() == b"precious"
    ladle("lerp", a, b, "--alpha", "0.5", "-o", out, "--force", "-q")
    assert st.read(out)[0]  # now a valid model
    d = tmp_path / "folder-out"
    ladle("lerp", a, b, "--alpha", "0.5", "-o", d, "-q")
    (d / "stale.txt").write_text("from an earlier run")
    r = ladle("lerp", a, b, "--alpha", "0.7", "-o", d, check=False)
    assert r.code == 1 and (d / "stale.txt").exists()
    ladle("lerp", a, b, "--alpha", "0.7", "-o", d, "--force", "-q")
    assert not (d / "stale.txt").exists() and (d / "model.safetensors").exists()
    assert leftovers(tmp_path) == []


def test_force_never_replaces_a_folder_that_is_not_a_model(tmp_path, rng):
    a, b = small_pair(tmp_path, rng)
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    r = ladle("lerp", a, b, "--alpha", "0.5", "-o", home, "--force", check=False)
    assert r.code == 1 and "does not look like a model" in r.err
    assert (home / "thesis.tex").read_text() == "years of work"


def test_output_overlapping_an_input_is_refused(tmp_path, rng):
    a, b = small_pair(tmp_path, rng)
    m = tmp_path / "m"
    st.write_hf(m, st.llama(rng, "BF16"), st.config())
    before = {p: digest(p) for p in (a, b, m)}
    for out in (a, m / "inner", m, tmp_path):
        r = ladle("soup", a, b, m, "-o", out, "--force", check=False)
        assert r.code == 1 and ("input" in r.err), (out, r.err)
    assert {p: digest(p) for p in (a, b, m)} == before


def test_missing_output_folder(tmp_path, rng):
    a, b = small_pair(tmp_path, rng)
    r = ladle("lerp", a, b, "--alpha", "0.5", "-o", tmp_path / "no" / "such" / "o.safetensors",
              check=False)
    assert r.code == 1 and r.err.startswith("ladle: error: ")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_output_folder(tmp_path, rng):
    a, b = small_pair(tmp_path, rng)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    r = ladle("lerp", a, b, "--alpha", "0.5", "-o", ro / "o.safetensors", check=False)
    assert r.code == 1 and os.listdir(ro) == []


def test_file_size_limit_leaves_nothing(tmp_path, rng):
    """A write that fails part-way (here a file-size limit, as a full disk
    would) is an error and leaves no partial output."""
    a, b = big_models(tmp_path, 2, 8)
    before = digest(a)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, 4 << 20))

    for out in (tmp_path / "o.safetensors", tmp_path / "o-dir"):
        p = subprocess.run([LADLE, "lerp", a, b, "--alpha", "0.5", "-o", out],
                           capture_output=True, text=True, preexec_fn=limit)
        assert p.returncode == 1, p.stderr
        assert p.stderr.startswith("ladle: error: ") and "File too large" in p.stderr
        assert not out.exists() and leftovers(tmp_path) == []
    assert digest(a) == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_leaves_nothing(tmp_path, sig):
    models = big_models(tmp_path, 3, 64)
    before = [digest(m) for m in models]
    out = tmp_path / "out"
    proc = subprocess.Popen([LADLE, "soup", *models, "-j", "1", "-o", out],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not leftovers(tmp_path) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.001)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the merge finished before the signal arrived")
    assert proc.returncode == 130 and "interrupted" in err
    assert not out.exists() and leftovers(tmp_path) == []
    assert [digest(m) for m in models] == before


@pytest.mark.skipif(os.environ.get("LADLE_SANITIZED") == "1",
                    reason="sanitizer shadow memory inflates RSS")
def test_memory_does_not_grow_with_model_size(tmp_path):
    """A soup of three 128 MB models must not hold them: peak RSS stays a
    small fraction of one model (mmap'd or read pages would count).
    Measured by /usr/bin/time: a child forked from this Python process would
    report Python's own RSS, which survives exec in ru_maxrss."""
    models = big_models(tmp_path, 3, 128)
    out = tmp_path / "soup.safetensors"
    p = subprocess.run(["/usr/bin/time", "-f", "%M", LADLE, "soup", *models, "-o", out, "-q"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    peak_mb = int(p.stderr.strip().splitlines()[-1]) / 1024
    assert peak_mb < 40, f"peak RSS {peak_mb:.1f} MB for 3 x 128 MB inputs"
