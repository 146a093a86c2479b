#!/usr/bin/env bash
# Installs what building and testing ladle need, from Debian's packages.
#   build: a C11 compiler (gcc; clang for the warning check), make, jansson
#   tests: python3 with numpy, pytest and torch (the references), GNU time
set -euo pipefail
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    gcc clang make libc6-dev libjansson-dev libyaml-dev pkg-config \
    python3 python3-numpy python3-pytest python3-torch python3-yaml time >/dev/null
echo "install-deps: done"
