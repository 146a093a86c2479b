#!/usr/bin/env bash
# Real merges end to end on models generated here: a base and three
# fine-tunes (llama-shaped, bf16, sharded), merged the main ways ladle knows.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ladle="$here/../build/ladle"
out="${1:-$here/out}"
rm -rf "$out"
/usr/bin/python3 "$here/make_family.py" "$out/models" --size 40MB --fine-tunes 3 --shards 2
m="$out/models"
set -x
"$ladle" info "$m/base" | tail -4
"$ladle" lerp "$m/ft1" "$m/ft2" --alpha 0.3 -o "$out/lerp"
"$ladle" soup "$m/ft1" "$m/ft2" "$m/ft3" -o "$out/soup" --shard-size 20MB
"$ladle" soup "$m/ft1" "$m/ft2" "$m/ft3" --weights 2,1,1 -o "$out/weighted.safetensors"
"$ladle" task --base "$m/base" --add 0.5:"$m/ft1" --add 0.5:"$m/ft2" --add -0.3:"$m/ft3" \
    -o "$out/task" --dtype f32
"$ladle" diff "$m/ft1" "$m/ft2" --base "$m/base" | tail -2
"$ladle" slerp "$m/ft1" "$m/ft2" --t 0.5 --set 'self_attn:t=0,0.5,1' --set 'mlp:t=1,0.5,0' \
    -o "$out/slerp"
"$ladle" ties --base "$m/base" --add 1:"$m/ft1" --add 1:"$m/ft2" --add 0.5:"$m/ft3" \
    --density 0.3 -o "$out/ties"
"$ladle" dare --base "$m/base" --add 1:"$m/ft1" --add 1:"$m/ft2" --density 0.3 \
    --sign-consensus --seed 1 -o "$out/dare"
"$ladle" stock --base "$m/base" "$m/ft1" "$m/ft2" "$m/ft3" -o "$out/stock"
mkdir -p "$out/run"
for step in 500 1000 1500; do ln -sfn "$m/ft$((step / 500))" "$out/run/checkpoint-$step"; done
"$ladle" ckpt "$out/run" --last 2 -o "$out/ckpt"
set +x
ls "$out/soup"
echo "quickstart: merges written under $out"
