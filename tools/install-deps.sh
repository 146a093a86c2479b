#!/usr/bin/env bash
# Installs what building and testing ladle need, from Debian's packages.
#   build: a C11 compiler (gcc; clang for the warning check), make, jansson,
#          libyaml, LAPACKE and OpenBLAS (SVDs: lora extract)
#   tests: python3 with numpy, pytest and torch (the references), GNU time
#   the Python package: pip, venv, setuptools and wheel (installed offline)
#   fuzz:  clang's libFuzzer runtime (libclang-rt-14-dev)
#   demo:  scikit-learn (the digits dataset of the model-soup example)
#   charts: rsvg-convert (librsvg2-bin) renders the --plot SVGs in the tests
#   Slurm: munge, slurmctld, slurmd and slurm-client, for the test that runs
#          a single-node cluster on loopback (tests/py/test_slurm.py)
#   GGUF:  Node.js and npm, for an independent GGUF reader (tests/node:
#          @huggingface/gguf from the npm registry, pinned by its lock file)
set -euo pipefail
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    gcc clang libclang-rt-14-dev make libc6-dev libjansson-dev libyaml-dev pkg-config \
    liblapacke-dev libopenblas-dev \
    python3 python3-numpy python3-pytest python3-torch python3-yaml python3-sklearn time \
    python3-pip python3-venv python3-setuptools python3-wheel python3-jinja2 \
    librsvg2-bin munge slurmctld slurmd slurm-client >/dev/null
command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    --no-install-recommends nodejs npm >/dev/null
npm ci --prefix "$(dirname "$0")/../tests/node" --no-audit --no-fund --loglevel=error >/dev/null
echo "install-deps: done"
