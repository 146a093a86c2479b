import os
import subprocess

import numpy as np
import pytest

LADLE = os.environ.get("LADLE") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "ladle")


class Run:
    def __init__(self, proc):
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr


def ladle(*args, check=True, timeout=600, cwd=None):
    proc = subprocess.run([LADLE, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)
    r = Run(proc)
    if check and r.code != 0:
        raise AssertionError(f"ladle {' '.join(map(str, args))} failed ({r.code}): {r.err}")
    return r


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
