#!/usr/bin/env bash
# A real model-soup experiment, end to end through ladle, in about a minute
# on a CPU: fine-tune 12 ingredients of a small MLP on scikit-learn's digits
# from one pre-trained model, then compare the best single ingredient, the
# uniform soup and the greedy soup on the validation and the test split.
#
#   examples/model_soup/run.sh [OUT_DIR]     (default examples/model_soup/out)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ladle="$here/../../build/ladle"
out="${1:-$here/out}"
py=/usr/bin/python3 # Debian's, with numpy, torch and scikit-learn
rm -rf "$out"
mkdir -p "$out"
models="$out/models"

echo "== 1. pre-train, then fine-tune 12 ingredients with a hyperparameter grid"
"$py" "$here/train.py" "$models"

# ladle runs this once per candidate with {model} replaced; the score is the
# last number it prints (here: validation accuracy in %).
evaluator="$py $(printf %q "$here/eval.py") {model} --data $(printf %q "$models/data.npz") --split val"

echo "== 2. greedy soup: rank by validation accuracy, add while it does not drop"
"$ladle" soup --greedy --eval "$evaluator" "$models"/ft-*.safetensors \
    -o "$out/greedy.safetensors" --work "$out/work" --json > "$out/greedy.json"

echo "== 3. uniform soup of all ingredients"
"$ladle" soup "$models"/ft-*.safetensors -o "$out/uniform.safetensors"

echo "== 4. sweep: interpolate from the pre-trained model to the greedy soup"
"$ladle" sweep --grid alpha=0:1:11 --eval "$evaluator" -o "$out/sweep.safetensors" --json \
    -- lerp "$models/pretrained.safetensors" "$out/greedy.safetensors" --alpha '{alpha}' \
    > "$out/sweep.json"

echo "== 5. results (validation chose; test is held out)"
"$py" "$here/report.py" "$out"
