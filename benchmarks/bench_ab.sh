#!/usr/bin/env bash
# Pretraining step time of an older commit and of this tree, alternated in one run (so both see the same machine):
#   bash benchmarks/bench_ab.sh 0b85261 [bench_pretrain.py arguments]
# The old commit is checked out in a temporary git worktree; both use this tree's virtual environment.
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:?usage: bench_ab.sh OLD_COMMIT [bench_pretrain.py arguments]}
shift
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--batch 2 --steps 4 --dtype fp32)
py=${PYTHON:-.venv/bin/python}
tree=$(mktemp -d)
trap 'git worktree remove --force "$tree" >/dev/null 2>&1 || true' EXIT
git worktree add --detach "$tree" "$old" >/dev/null
for i in 1 2; do
  printf 'before %s: ' "$old"; PYTHONPATH="$tree/src" "$py" "$tree/benchmarks/bench_pretrain.py" "${args[@]}"
  printf 'after: ';            PYTHONPATH=src "$py" benchmarks/bench_pretrain.py "${args[@]}"
done
