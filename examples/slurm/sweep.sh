#!/bin/bash
# A sweep whose evaluations run as Slurm job steps: ladle merges each
# candidate (on the node it runs on) into --work, a folder on shared storage,
# and starts up to --jobs evaluators at once, each through srun on a node of
# its own (here: one GPU each). Ctrl-C or scancel of ladle's own job stops
# every evaluation (srun is in the evaluator's process group, and srun
# cancels its step when signalled), removes the candidates, and keeps the
# log: --resume picks up where it stopped.
#
#   examples/slurm/sweep.sh WORK_DIR A B [EVAL-ARGS...]
#   e.g. sweep.sh /shared/sweep-work /shared/ft-math /shared/ft-code
#
# EVAL: the evaluator (default: python3 eval.py {model}); SRUN: srun's
# options (default: one task, one GPU).
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 WORK_DIR MODEL_A MODEL_B" >&2
    exit 2
fi
work=$1 a=$2 b=$3
"${LADLE:-ladle}" sweep --grid alpha=0:1:11 --jobs "${JOBS:-4}" --work "$work" \
    --eval "srun ${SRUN:---ntasks=1 --gres=gpu:1} ${EVAL:-python3 eval.py {model}}" \
    -o "$work/best" -- lerp "$a" "$b" --alpha '{alpha}'
