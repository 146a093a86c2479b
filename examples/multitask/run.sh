#!/usr/bin/env bash
# A multi-task merging benchmark on a CPU in about a minute: five tasks
# fine-tuned from one pre-trained encoder (train.py), merged by every
# data-free method ladle has, each method's lambda chosen on the validation
# split by `ladle sweep` (the same grid for all), then every task scored on
# the held-out test split with its own head. Prints the table the papers
# print (accuracy per task, average, normalised average) and draws it in
# OUT/results.svg.
#
#   examples/multitask/run.sh [OUT_DIR]     (default examples/multitask/out)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ladle="$here/../../build/ladle"
out="${1:-$here/out}"
py=/usr/bin/python3 # Debian's, with numpy, torch and scikit-learn
rm -rf "$out"
mkdir -p "$out/merged"
m="$out/models"

echo "== 1. pre-train the encoder, fine-tune it once per task"
"$py" "$here/train.py" "$m"
tasks=$("$py" -c "import sys; sys.path.insert(0, '$here'); from tasks import TASKS; print(' '.join(TASKS))")
fts=()
adds=()
for t in $tasks; do
    fts+=("$m/$t.safetensors")
    adds+=(--add "1:$m/$t.safetensors")
done

# ladle runs the evaluator once per candidate; the score is the last number
# it prints: the mean validation accuracy over the tasks.
evaluator="$py $(printf %q "$here/eval.py") {model} --data $(printf %q "$m") --split val"

# name, then the merge command with {lambda}
methods=(
    "task_arithmetic|task --base $m/base.safetensors ${adds[*]} --lambda {lambda}"
    "ties|ties --base $m/base.safetensors ${adds[*]} --density 0.2 --lambda {lambda}"
    "tsv|tsv --base $m/base.safetensors ${fts[*]} --lambda {lambda}"
    "iso_c|iso-c --base $m/base.safetensors ${fts[*]} --lambda {lambda}"
    "iso_cts|iso-cts --base $m/base.safetensors ${fts[*]} --lambda {lambda}"
    "wudi|wudi --base $m/base.safetensors ${fts[*]} --lambda {lambda}"
    "consensus_ta|consensus-ta --base $m/base.safetensors ${fts[*]} --lambda {lambda}"
    "consensus_ties|consensus-ties --base $m/base.safetensors ${adds[*]} --density 0.2 --trim-scope model --no-normalize --lambda {lambda}"
)
echo "== 2. merge the encoders; lambda from 0.2 to 11 (x1.5 steps) chosen on validation"
for entry in "${methods[@]}"; do
    name=${entry%%|*}
    # shellcheck disable=SC2086 # the command is a list of words
    "$ladle" sweep --grid lambda=0.2,0.3,0.45,0.7,1,1.5,2.2,3.3,5,7.5,11 --eval "$evaluator" -o "$out/merged/$name.safetensors" \
        --json -q -- ${entry#*|} > "$out/merged/$name.sweep.json"
    echo "merge: $name"
done

echo "== 3. results on the test split"
"$py" "$here/report.py" "$out"
