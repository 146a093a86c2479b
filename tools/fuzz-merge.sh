#!/usr/bin/env bash
# Keeps what a long fuzzing run learnt: merges the working corpus of each
# target (build-fuzz/corpus/TARGET, or the folder given as TARGET=DIR) into
# tests/fuzz/corpus/TARGET as cov-* files: only the inputs that add coverage
# over what is checked in (libFuzzer's -merge=1), none twice.
set -euo pipefail
cd "$(dirname "$0")/.."
for arg in "$@"; do
    t="${arg%%=*}"
    src="build-fuzz/corpus/$t"
    [ "$arg" != "$t" ] && src="${arg#*=}"
    dest="tests/fuzz/corpus/$t"
    tmp=$(mktemp -d)
    build-fuzz/fuzz_"$t" -merge=1 "$tmp" "$dest" "$src" > /dev/null 2>&1
    known=$(for s in "$dest"/*; do sha1sum < "$s"; done)
    added=0
    for f in "$tmp"/*; do
        [ -s "$f" ] || continue
        sum=$(sha1sum < "$f")
        if ! grep -qxF "$sum" <<< "$known"; then
            cp "$f" "$dest/cov-${sum:0:40}"
            added=$((added + 1))
        fi
    done
    rm -rf "$tmp"
    echo "fuzz-merge: $t: $added inputs added"
done
