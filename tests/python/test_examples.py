"""The Python examples run, and say what the README says they say."""
import os
import re
import subprocess
import sys

from util import ROOT

EXAMPLES = os.path.join(ROOT, "examples", "python")


def run(name):
    return subprocess.run([sys.executable, os.path.join(EXAMPLES, name)], capture_output=True,
                          text=True, check=True, timeout=600).stdout


def test_soup_and_task_vectors():
    out = run("soup_and_task_vectors.py")
    rows = dict(re.findall(r"^(best single ingredient|uniform soup.*?|greedy soup.*?)\s+"
                           r"([\d.]+)\s+[\d.]+$", out, re.M))
    assert len(rows) == 3, out
    best = float(rows["best single ingredient"])
    greedy = [float(v) for k, v in rows.items() if k.startswith("greedy")][0]
    assert greedy >= best  # on validation, by construction
    neg = re.search(r"^pretrained - [\d.]+ tau \(negation\)\s+([\d.]+)\s+([\d.]+)$", out, re.M)
    pre = re.search(r"^pretrained\s+([\d.]+)\s+([\d.]+)$", out, re.M)
    assert neg and pre, out
    assert float(neg.group(1)) < float(pre.group(1))  # the even digits are forgotten
    assert float(neg.group(2)) >= 0.95 * float(pre.group(2))  # the odd ones kept


def test_in_memory():
    out = run("in_memory.py")
    assert re.search(r"^\[6\] ladle.Model\(.*\) torch.bfloat16 True$", out, re.M), out
