"""Packaging: `make install` gives a tree a C program links against with
pkg-config; `pip install ./python` works offline on Debian's Python; a
streamed merge stays in bounded memory whatever the models' size."""
import os
import shutil
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import st
from util import LADLE, ROOT
from util import ladle as cli

SANITIZED = os.environ.get("LADLE_SANITIZED") == "1"
BUILD = os.path.dirname(os.path.abspath(LADLE))


def big_file(path, rng, mb):
    """One F32 tensor of mb megabytes, written in chunks (never whole in memory)."""
    n = mb * (1 << 20) // 4
    header = json_bytes({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, n * 4]}})
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        for _ in range(mb):
            f.write(rng.standard_normal(1 << 18).astype(np.float32).tobytes())


def json_bytes(obj):
    import json
    text = json.dumps(obj).encode()
    return text + b" " * ((8 - len(text) % 8) % 8)


@pytest.mark.skipif(SANITIZED, reason="peak RSS is not measured under AddressSanitizer")
def test_streamed_merge_memory_is_bounded(tmp_path, rng):
    paths = [tmp_path / f"m{i}.safetensors" for i in range(3)]
    for p in paths:
        big_file(p, rng, 128)
    script = textwrap.dedent(f"""
        import resource, sys
        sys.path.insert(0, {os.path.join(ROOT, 'python')!r})
        import ladle
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        ladle.uniform_soup({[str(p) for p in paths]!r}, out={str(tmp_path / 'o.safetensors')!r})
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) // 1024)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       check=True, env={**os.environ})
    grew_mb = int(r.stdout.strip())
    assert grew_mb < 48, f"the merge of 3 x 128 MB raised peak RSS by {grew_mb} MB"
    assert os.path.getsize(tmp_path / "o.safetensors") > 128 << 20


PROGRAM = r"""
#include <ladle.h>
#include <stdio.h>

/* A merge through the installed library: ./prog A B OUT */
int main(int argc, char **argv)
{
    char *args[] = {"soup", argv[1], argv[2], "-o", argv[3]};
    lad_job *job;
    lad_plan *plan;
    lad_error err = {0};
    if (argc != 4 || lad_job_parse(5, args, &job, &err) != 0 ||
        lad_job_plan(job, NULL, NULL, &plan, &err) != 0 || lad_plan_execute(plan, NULL, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    printf("%s %zu\n", lad_version(), lad_plan_ntensors(plan));
    lad_plan_free(plan);
    lad_job_free(job);
    return 0;
}
"""


@pytest.mark.skipif(SANITIZED, reason="the installed tree is the build under test's, "
                                      "instrumented: linking it needs the sanitizer runtime")
def test_make_install_and_pkg_config(tmp_path, rng):
    dest = tmp_path / "root"
    subprocess.run(["make", "-s", "-C", ROOT, f"BUILD={BUILD}", "install", f"DESTDIR={dest}",
                    "PREFIX=/usr/local"], check=True, capture_output=True)
    prefix = dest / "usr" / "local"
    for f in ["bin/ladle", "lib/libladle.so.0", "lib/libladle.so", "lib/libladle.a",
              "include/ladle.h", "lib/pkgconfig/ladle.pc", "share/man/man1/ladle.1"]:
        assert (prefix / f).exists(), f
    man = (prefix / "share/man/man1/ladle.1").read_text()
    assert man.startswith(".TH LADLE 1") and ".SS ladle ties" in man and "--density" in man
    for cmd in ("wudi", "consensus-ties", "masks", "index", "iso-cts"):  # every command
        assert f".SS ladle {cmd}\n" in man, cmd
    env = {**os.environ, "PKG_CONFIG_PATH": str(prefix / "lib/pkgconfig"),
           "PKG_CONFIG_SYSROOT_DIR": str(dest)}
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "ladle"], env=env, check=True,
                           capture_output=True, text=True).stdout.split()
    src = tmp_path / "prog.c"
    src.write_text(PROGRAM)
    subprocess.run(["cc", "-std=c11", "-Wall", "-Werror", str(src), "-o", str(tmp_path / "prog"),
                    *flags], check=True)
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    base = st.llama(rng, "BF16", layers=1)
    st.write(a, base)
    st.write(b, st.llama(rng, "BF16", layers=1, base=base))
    r = subprocess.run([str(tmp_path / "prog"), a, b, tmp_path / "c.safetensors"],
                       env={**os.environ, "LD_LIBRARY_PATH": str(prefix / "lib")},
                       capture_output=True, text=True, check=True)
    assert r.stdout.split()[0] == "0.1.0"
    cli("soup", a, b, "-o", tmp_path / "d.safetensors", "-q")
    got, want = st.read(tmp_path / "c.safetensors")[0], st.read(tmp_path / "d.safetensors")[0]
    assert {k: v[1].tobytes() for k, v in got.items()} == {k: v[1].tobytes()
                                                           for k, v in want.items()}


@pytest.mark.skipif(SANITIZED, reason="pip builds the normal library, not the one under test")
def test_pip_install_offline(tmp_path):
    if shutil.which("pip3") is None and subprocess.run(
            ["/usr/bin/python3", "-m", "pip", "--version"], capture_output=True).returncode:
        pytest.skip("pip is not installed")
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    env = {k: v for k, v in os.environ.items() if k != "LADLE_LIBRARY"}
    env["PIP_NO_INDEX"] = "1"  # offline: nothing may be downloaded
    # the README's command, from the repository root
    subprocess.run([str(venv / "bin" / "pip"), "install", "./python"], cwd=ROOT, env=env,
                   check=True, capture_output=True)
    r = subprocess.run([str(venv / "bin" / "python"), "-c",
                        "import ladle, numpy as np, os; "
                        "print(ladle.__file__); "
                        "m = ladle.uniform_soup([{'w': np.ones(3, np.float32)}, "
                        "{'w': np.zeros(3, np.float32)}]); print(m['w'].tolist())"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    where, values = r.stdout.splitlines()
    assert where.startswith(str(venv)) and values == "[0.5, 0.5, 0.5]"
