#!/usr/bin/env bash
# The GPU check of brainjepa, in one command (about 8 minutes on one GPU, installation not counted):
#   1. torch, CUDA, driver, GPU name and memory, bf16 support;
#   2. the CUDA tests: pytest -m cuda tests/test_cuda.py (they skip without CUDA);
#   3. the pretraining throughput sweep, benchmarks/gpu_bench.py (vit_base, 450 x 160, batch 16/32/64, eager /
#      activation checkpointing / torch.compile, MFU against the bf16 matmul peak measured in the same run);
#   4. every figure in one JSON, $OUT/gpu_check.json when OUT is set (else benchmarks/out/gpu_check.json), and a
#      one-line summary printed last.
#
#   bash benchmarks/gpu_check.sh                  # on a GPU machine
#   bash benchmarks/gpu_check.sh --device cpu      # dry run: a tiny model, few steps, < 1 minute
#
# Other arguments go to gpu_bench.py (e.g. --batches 16,32 --modes eager,compile). GPU_CHECK_BUDGET_S (default
# 480) is the time in seconds the check may take: the sweep starts no configuration that would end after it.
# Python: $PYTHON, else .venv/bin/python, else python3. Where that cannot import brainjepa: with torch and the
# other dependencies present (a GPU image's CUDA torch) the source tree is put on PYTHONPATH and nothing is
# installed; otherwise a .venv-gpu is made (seeing the system's packages) and torch + brainjepa[dev] pip-installed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

DEVICE=auto
ARGS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --device) DEVICE="$2"; ARGS+=("$1" "$2"); shift 2 ;;
        --device=*) DEVICE="${1#--device=}"; ARGS+=("$1"); shift ;;
        *) ARGS+=("$1"); shift ;;
    esac
done

# ---------------------------------------------------------------------------------------------- python (not timed)
if [[ -n "${PYTHON:-}" ]]; then PY="$PYTHON"
elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python
else PY=python3
fi
if ! "$PY" -c "import brainjepa" 2>/dev/null; then
    if "$PY" -c "import torch, numpy, yaml, safetensors, tqdm, pytest" 2>/dev/null; then
        export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
        echo "using $PY (its own torch) with the source tree on PYTHONPATH"
    else
        echo "installing into .venv-gpu (torch, then brainjepa[dev])"
        python3 -m venv --system-site-packages .venv-gpu
        PY=.venv-gpu/bin/python
        "$PY" -c "import torch" 2>/dev/null || "$PY" -m pip install -q torch
        "$PY" -m pip install -q -e ".[dev]"
    fi
fi
"$PY" -c "import brainjepa" || { echo "gpu_check: cannot import brainjepa with $PY"; exit 2; }

OUTDIR="${OUT:-$ROOT/benchmarks/out}"
mkdir -p "$OUTDIR"
JSON="$OUTDIR/gpu_check.json"
LOG="$OUTDIR/gpu_check_tests.log"
START=$SECONDS
BUDGET_S=${GPU_CHECK_BUDGET_S:-480}

# ---------------------------------------------------------------------------------------------- 1. environment
echo "== environment"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.max.sm --format=csv || true
fi
"$PY" benchmarks/gpu_bench.py --env ${ARGS[@]+"${ARGS[@]}"}

# ---------------------------------------------------------------------------------------------- 2. CUDA tests
echo "== CUDA tests (pytest -m cuda)"
export CUBLAS_WORKSPACE_CONFIG=:4096:8   # deterministic cuBLAS, for the bit-exact resume test
TESTS_RC=0
"$PY" -m pytest -m cuda -q -rs -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$LOG" || TESTS_RC=$?
unset CUBLAS_WORKSPACE_CONFIG

# ---------------------------------------------------------------------------------------------- 3. sweep
echo "== pretraining throughput sweep"
EXTRA=()
if [[ "$DEVICE" == cpu ]]; then   # dry run: a tiny model, few steps; codegen-free compile backend
    EXTRA=(--tiny --batches 2,4 --steps 2 --warmup 1 --probe-steps 4 --compile-backend aot_eager)
fi
LEFT=$(( BUDGET_S - (SECONDS - START) - 30 ))
(( LEFT > 60 )) || LEFT=60
BENCH_RC=0
"$PY" benchmarks/gpu_bench.py ${EXTRA[@]+"${EXTRA[@]}"} ${ARGS[@]+"${ARGS[@]}"} --budget-s "$LEFT" --json "$JSON" \
    --tests-log "$LOG" --tests-rc "$TESTS_RC" || BENCH_RC=$?
# gpu_bench.py printed the one-line summary last; exit non-zero if a test or a configuration failed
exit $(( TESTS_RC != 0 ? TESTS_RC : BENCH_RC ))
