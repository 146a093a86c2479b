#!/usr/bin/env bash
# Runs each libFuzzer target built by `make fuzz-build` for FUZZ_SECONDS
# (default 60) on one core. The working corpus is build-fuzz/corpus/TARGET,
# seeded from tests/fuzz/corpus/TARGET and the kept regressions; a finding
# is written to build-fuzz/findings/ and fails the run. Keep each finding,
# once fixed, as tests/fuzz/regressions/TARGET/NAME: the replay test in
# `make test` runs it from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
status=0
for t in "$@"; do
    work="build-fuzz/corpus/$t"
    mkdir -p "$work" build-fuzz/findings
    cp -n tests/fuzz/corpus/"$t"/* "$work"/ 2>/dev/null || true
    [ -d tests/fuzz/regressions/"$t" ] && cp -n tests/fuzz/regressions/"$t"/* "$work"/ 2>/dev/null
    echo "fuzz: $t for ${seconds}s"
    # -rss_limit_mb: a 100 MB header is legal, so allow a few copies of it.
    if ! build-fuzz/fuzz_"$t" -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=65536 \
            -timeout=10 -artifact_prefix="build-fuzz/findings/$t-" -print_final_stats=1 \
            "$work" > "build-fuzz/$t.log" 2>&1; then
        echo "fuzz: $t FOUND A PROBLEM; log: build-fuzz/$t.log"
        grep -E "ERROR|SUMMARY|Test unit written" "build-fuzz/$t.log" | head -5
        status=1
    else
        grep -E "stat::number_of_executed_units|stat::peak_rss" "build-fuzz/$t.log" |
            sed "s/^/fuzz: $t: /"
        echo "fuzz: $t: corpus $(ls "$work" | wc -l) inputs, no finding"
    fi
done
exit $status
