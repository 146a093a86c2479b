#!/usr/bin/env bash
# Generates a small model family beside these recipes and runs every one.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ -d "$here/models/ft3" ] || /usr/bin/python3 "$here/../make_family.py" "$here/models" --size 10MB --fine-tunes 3
mkdir -p "$here/out"
for r in "$here"/*.yml; do
    "$here/../../build/ladle" merge "$r" -o "$here/out/$(basename "$r" .yml)" --force
done
