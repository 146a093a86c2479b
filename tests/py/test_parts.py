"""--part I/N and ladle index: N processes each write some shards of one
folder output; together, in any order or at once, they write exactly the
bytes of the one-process merge."""
import os
import subprocess

import pytest

import st
from conftest import LADLE, ladle


def family(tmp_path, rng, dtype="BF16"):
    base = st.llama(rng, dtype, layers=4, hidden=64, inter=96, vocab=128)
    paths = []
    for i, m in enumerate([base] + [st.llama(rng, dtype, layers=4, hidden=64, inter=96,
                                             vocab=128, base=base, noise=0.02)
                                    for _ in range(3)]):
        d = tmp_path / f"m{i}"
        st.write_hf(d, m, st.config(layers=4, hidden=64, vocab=128))
        paths.append(d)
    return paths


def tree(d):
    """Every file under d (hidden ones too) -> its bytes."""
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, d)] = open(p, "rb").read()
    return out


def merge_args(paths, cmd):
    if cmd == "ties":
        return ["ties", "--base", paths[0], *sum((["--add", f"1:{p}"] for p in paths[1:]), []),
                "--density", "0.4", "--shard-size", "40KB"]
    return ["soup", *paths[1:], "--shard-size", "40KB", "--dtype", "f32"]


def run_in(cwd, *args, check=True):
    r = subprocess.run([LADLE, *map(str, args)], cwd=cwd, capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stderr
    return r


@pytest.mark.parametrize("cmd,n,order", [("soup", 3, [3, 1, 2]), ("ties", 4, [2, 4, 1, 3])])
def test_parts_equal_the_whole(tmp_path, rng, cmd, n, order):
    paths = family(tmp_path, rng)
    whole, parted = tmp_path / "whole", tmp_path / "parted"
    whole.mkdir()
    parted.mkdir()
    args = merge_args(paths, cmd)
    run_in(whole, *args, "-o", "out", "-q")
    assert len([f for f in os.listdir(whole / "out") if f.startswith("model-")]) >= n
    for i in order:
        r = run_in(parted, *args, "-o", "out", "-q", "--part", f"{i}/{n}")
        assert not (i != order[-1] and (parted / "out" / "model.safetensors.index.json").exists())
    assert tree(whole / "out") == tree(parted / "out")  # no staging left either


def test_parts_at_once(tmp_path, rng):
    paths = family(tmp_path, rng)
    whole, parted = tmp_path / "whole", tmp_path / "parted"
    whole.mkdir()
    parted.mkdir()
    args = merge_args(paths, "ties")
    run_in(whole, *args, "-o", "out", "-q")
    procs = [subprocess.Popen([LADLE, *map(str, args), "-o", "out", "-q", "--part", f"{i}/3"],
                              cwd=parted, stderr=subprocess.PIPE, text=True) for i in (1, 2, 3)]
    for p in procs:
        assert p.wait() == 0, p.stderr.read()
    assert tree(whole / "out") == tree(parted / "out")


def test_index_completes_and_reports(tmp_path, rng):
    paths = family(tmp_path, rng)
    args = merge_args(paths, "soup")
    whole, parted = tmp_path / "whole", tmp_path / "parted"
    whole.mkdir()
    parted.mkdir()
    run_in(whole, *args, "-o", "out", "-q")
    for i in (1, 3):
        run_in(parted, *args, "-o", "out", "-q", "--part", f"{i}/3")
    r = run_in(parted, "index", "out", check=False)
    assert r.returncode == 1 and "(part 2)" in r.stderr and "(part 1)" not in r.stderr
    assert not (parted / "out" / "model.safetensors.index.json").exists()
    # the last part stops before publishing (here: another publisher's lock)
    (parted / "out" / ".ladle-publish.lock").write_text("")
    r = run_in(parted, *args, "-o", "out", "-q", "--part", "2/3")
    assert r.stderr == ""
    assert not (parted / "out" / "model.safetensors.index.json").exists()
    os.unlink(parted / "out" / ".ladle-publish.lock")
    r = run_in(parted, "index", "out")
    assert "complete" in r.stderr
    assert tree(whole / "out") == tree(parted / "out")
    assert "complete" in run_in(parted, "index", "out").stderr  # once more: nothing to do
    r = run_in(parted, "index", tmp_path, check=False)
    assert r.returncode == 1 and "no part of a merge in parts" in r.stderr


def test_parts_must_be_one_command(tmp_path, rng):
    """A part run with other options writes other bytes: never published."""
    paths = family(tmp_path, rng)
    args = merge_args(paths, "soup")
    run_in(tmp_path, *args, "-o", "out", "-q", "--part", "1/2")
    run_in(tmp_path, *args, "-o", "out", "--part", "2/2")  # without -q: another header
    assert not (tmp_path / "out" / "model.safetensors.index.json").exists()
    r = run_in(tmp_path, "index", "out", check=False)
    assert r.returncode == 1 and "another size" in r.stderr


def test_part_refusals(tmp_path, rng):
    paths = family(tmp_path, rng)
    base = ["soup", *paths[1:]]
    for extra, msg in ((["-o", tmp_path / "x.safetensors", "--part", "1/2"], "folder output"),
                       (["-o", tmp_path / "x", "--part", "0/2"], "--part takes I/N"),
                       (["-o", tmp_path / "x", "--part", "3/2"], "--part takes I/N"),
                       (["-o", tmp_path / "x", "--part", "1/2x"], "--part takes I/N")):
        r = ladle(*base, *extra, check=False)
        assert r.code == 2 and msg in r.err, (extra, r.err)
    r = ladle("ties", "--base", paths[0], "--add", f"1:{paths[1]}", "--density", "0.3",
              "--trim-scope", "model", "-o", tmp_path / "x", "--part", "1/2", check=False)
    assert r.code == 2 and "whole model" in r.err
    assert not (tmp_path / "x").exists()
    ladle(*base, "-o", tmp_path / "done", "-q")
    r = ladle(*base, "-o", tmp_path / "done", "--part", "1/2", check=False)
    assert r.code != 0 and "already holds a model" in r.err
    # more parts than shards: the idle part says so, and the others still complete it
    r = ladle(*base, "-o", tmp_path / "few", "--part", "1/2")
    r = ladle(*base, "-o", tmp_path / "few", "--part", "2/2")
    assert (tmp_path / "few" / "model.safetensors").exists() or \
        (tmp_path / "few" / "model.safetensors.index.json").exists()
