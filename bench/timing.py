"""What the Python benchmarks share: a command timed by /usr/bin/time."""
import subprocess
import sys


def timed(cmd, output=False):
    """Runs cmd; returns (seconds, peak RSS in MB), and with output also its
    stdout and stderr. A failure ends the benchmark with its stderr."""
    p = subprocess.run(["/usr/bin/time", "-f", "%e %M", *map(str, cmd)], capture_output=True,
                       text=True)
    if p.returncode:
        sys.exit(f"bench: {' '.join(map(str, cmd))} failed:\n{p.stderr}")
    secs, kb = p.stderr.strip().splitlines()[-1].split()
    if output:
        return float(secs), int(kb) / 1024, p.stdout, p.stderr
    return float(secs), int(kb) / 1024
