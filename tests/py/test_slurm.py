"""A real single-node Slurm cluster on this machine (Debian's munge,
slurmctld and slurmd; loopback only; started and stopped here): the
examples/slurm array-job merge gives the one-machine merge's bytes, and a
sweep whose evaluations run through srun gives the local sweep's scores.
Skipped, saying why, where Slurm is not installed or cannot start."""
import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

import st
from conftest import LADLE, ladle
from test_parts import family, merge_args, tree
from test_search import evaluator, ingredients

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    need = ["munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue"]
    missing = [b for b in need if not shutil.which(b)]
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing; "
                    "tools/install-deps.sh installs slurmctld, slurmd, slurm-client, munge)")
    if os.geteuid() != 0:
        pytest.skip("a Slurm cluster for the test needs root (its daemons run as root here)")
    d = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool", "munge"):
        (d / sub).mkdir()
    os.chmod(d / "munge", 0o700)
    (d / "munge" / "munge.key").write_bytes(os.urandom(1024))
    os.chmod(d / "munge" / "munge.key", 0o400)
    sock = d / "munge" / "sock"
    host = socket.gethostname().split(".")[0]
    conf = d / "slurm.conf"
    conf.write_text(f"""ClusterName=ladletest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmUser=root
SlurmdUser=root
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
""")
    env = dict(os.environ, SLURM_CONF=str(conf))
    started = []

    def daemon(cmd):
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            pytest.skip(f"Slurm did not start here: {' '.join(cmd)}: {p.stderr.strip()[:300]}")

    daemon(["munged", f"--key-file={d}/munge/munge.key", f"--socket={sock}",
            f"--pid-file={d}/munge/pid", f"--log-file={d}/munge/log",
            f"--seed-file={d}/munge/seed", "--force"])
    started.append(d / "munge" / "pid")
    daemon(["slurmctld", "-f", str(conf)])
    started.append(d / "slurmctld.pid")
    daemon(["slurmd", "-f", str(conf)])
    started.append(d / "slurmd.pid")
    try:
        t0 = time.time()
        while time.time() - t0 < 30:
            p = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True,
                               text=True)
            if p.returncode == 0 and p.stdout.strip() in ("idle", "mix", "alloc"):
                break
            time.sleep(0.5)
        else:
            logs = "".join((d / f).read_text()[-400:] for f in ("slurmctld.log", "slurmd.log")
                           if (d / f).exists())
            pytest.skip(f"the Slurm node did not come up within 30 s: {logs}")
        yield env
    finally:
        subprocess.run(["scancel", "--full", "-u", "root"], env=env, capture_output=True)
        for pid in reversed(started):
            try:
                os.kill(int(pid.read_text().split()[0]), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        time.sleep(0.5)


def wait_job(env, job, timeout=180):
    t0 = time.time()
    while time.time() - t0 < timeout:
        p = subprocess.run(["squeue", "-h", "-j", job], env=env, capture_output=True, text=True)
        if p.returncode == 0 and not p.stdout.strip():
            return
        time.sleep(0.5)
    raise AssertionError(f"Slurm job {job} did not finish in {timeout} s")


def test_array_job_merge(slurm, tmp_path, rng):
    paths = family(tmp_path, rng)
    args = [str(a) for a in merge_args(paths, "ties")]
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    local.mkdir()
    cluster.mkdir()
    subprocess.run([LADLE, *args, "-o", "out", "-q"], cwd=local, check=True)  # one machine
    env = dict(slurm, LADLE=os.path.abspath(LADLE))
    p = subprocess.run(["sbatch", "--parsable", "--array=1-3", f"--chdir={cluster}",
                        f"--output={cluster}/slurm-%A_%a.out",
                        os.path.join(ROOT, "examples", "slurm", "merge.sbatch"), "out", *args],
                       env=env, capture_output=True, text=True, check=True)
    wait_job(env, p.stdout.strip().split(";")[0])
    logs = "".join(open(cluster / f).read() for f in os.listdir(cluster) if f.startswith("slurm-"))
    assert (cluster / "out" / "model.safetensors.index.json").exists(), logs
    assert tree(local / "out") == tree(cluster / "out")


def test_sweep_evaluations_through_srun(slurm, tmp_path, rng):
    target, models = ingredients(tmp_path, rng, "F32", n=2)
    sweep = ["--grid", "alpha=0:1:5", "--json", "-q", "--", "lerp", models[0], models[1],
             "--alpha", "{alpha}"]
    local = json.loads(ladle("sweep", "--eval", evaluator(target), *sweep).out)
    env = dict(slurm)
    work = tmp_path / "work"
    r = subprocess.run([LADLE, "sweep", "--jobs", "2", "--work", work, "--eval",
                        "srun --ntasks=1 --quiet " + evaluator(target), *map(str, sweep)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert [p["score"] for p in got["points"]] == [p["score"] for p in local["points"]]
    assert [p["params"] for p in got["points"]] == [p["params"] for p in local["points"]]
    assert os.listdir(work) == [] or all(f.endswith(".jsonl") for f in os.listdir(work))


def test_interrupt_cancels_the_steps(slurm, tmp_path, rng):
    """Ctrl-C stops ladle's evaluations: srun is in the evaluator's process
    group, gets its SIGTERM and cancels its job step; nothing is left."""
    target, models = ingredients(tmp_path, rng, "F32", n=2)
    cmd = "srun --ntasks=1 --quiet " + evaluator(target, "--sleep", "60")
    p = subprocess.Popen([LADLE, "sweep", "--grid", "alpha=0:1:3", "--jobs", "2", "--eval", cmd,
                          "--work", tmp_path / "work", "--", "lerp", models[0], models[1],
                          "--alpha", "{alpha}"], env=slurm, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while time.time() - t0 < 60:
        q = subprocess.run(["squeue", "-h", "-t", "R", "-o", "%i"], env=slurm,
                           capture_output=True, text=True)
        if len(q.stdout.split()) >= 2:  # both evaluations running on the cluster
            break
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    t0 = time.time()
    while time.time() - t0 < 30:
        q = subprocess.run(["squeue", "-h"], env=slurm, capture_output=True, text=True)
        if not q.stdout.strip():
            break
        time.sleep(0.5)
    assert not q.stdout.strip(), f"jobs left running: {q.stdout}"
    assert not [f for f in os.listdir(tmp_path / "work") if not f.endswith(".jsonl")]
