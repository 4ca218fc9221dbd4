#!/usr/bin/env bash
# The science audit's GPU run (G1 seed variance of the fixed pipeline, G2 data scaling on surrogates) in one command
# that fits 8 minutes on one H200; benchmarks/gpu_science.py holds the plan (read its docstring).
#
#   bash benchmarks/gpu_science.sh --prepare runs/gpu_science_in [--store STORE]   # here, once: the inputs
#   bash benchmarks/gpu_science.sh [--input runs/gpu_science_in]                   # on the GPU machine
#   bash benchmarks/gpu_science.sh --device cpu --input DIR                        # dry run: tiny, < 1 minute
#   python benchmarks/gpu_science_eval.py OUT                                      # back on CPU: the tables
#
# Inputs. The GPU machine has no network and no BrainSpace, so the real store, its gradients and its events travel
# with the repository copy as one ignored folder named in the device tool's `carry` (about 10 MB for connattractor):
# `--prepare DIR` writes DIR/store (a copy of --store, else `brainjepa samples prepare connattractor`, which needs
# PyPI or the sample cache), DIR/gradients.csv (`brainjepa gradients`) and DIR/events (the sample cache's events/).
# The run takes `--input DIR` (default runs/gpu_science_in; when it is missing the script tries --prepare first,
# which works only where PyPI or the sample cache is reachable), or `--store`, `--gradients`, `--events` one by one.
#   device tool: command "bash benchmarks/gpu_science.sh", carry ["runs/gpu_science_in"], timeout_s 600.
# Outputs go to $OUT (else benchmarks/out/gpu_science): gpu_science.json, gpu_science.log and gzipped tars of the
# run folders (at most 7 files, each under 16 MiB). Every other argument goes to benchmarks/gpu_science.py
# (--budget-s, --seeds, --g1-steps, --sizes, --g2-steps, --probe-steps, --device, ...).
# Python: $PYTHON, else .venv/bin/python, else python3; where that cannot import brainjepa but has torch, numpy,
# pandas, scipy, scikit-learn, yaml, safetensors and tqdm (the GPU image), the source tree goes on PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

if [[ -n "${PYTHON:-}" ]]; then PY="$PYTHON"
elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python
else PY=python3
fi
if ! "$PY" -c "import brainjepa" 2>/dev/null; then
    "$PY" -c "import torch, numpy, pandas, scipy, sklearn, yaml, safetensors, tqdm" \
        || { echo "gpu_science: $PY lacks torch or brainjepa's dependencies"; exit 2; }
    export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
    echo "using $PY (its own torch) with the source tree on PYTHONPATH"
fi

INPUT=runs/gpu_science_in
PREPARE=""
STORE=""
ARGS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --prepare) PREPARE="$2"; shift 2 ;;
        --input) INPUT="$2"; shift 2 ;;
        --store) STORE="$2"; ARGS+=("$1" "$2"); shift 2 ;;
        *) ARGS+=("$1"); shift ;;
    esac
done

prepare() {  # DIR [STORE]
    local dir=$1 store=${2:-}
    mkdir -p "$dir"
    if [[ -n "$store" ]]; then
        rm -rf "$dir/store"; cp -r "$store" "$dir/store"
    else
        "$PY" -m brainjepa samples prepare connattractor --out "$dir/store" --overwrite
    fi
    "$PY" -m brainjepa gradients --data "$dir/store" --out "$dir/gradients.csv" --no-progress
    "$PY" - "$dir" <<'PYEOF'
import shutil, sys
from pathlib import Path
from brainjepa.data.simulate import find_events
from brainjepa.data.store import RunStore
dest = Path(sys.argv[1]) / "events"
folder, found = find_events(RunStore(Path(sys.argv[1]) / "store"))
shutil.rmtree(dest, ignore_errors=True)
if folder is not None:
    shutil.copytree(folder, dest)
print(f"events: {len(found)} runs from {folder}" if folder else "events: none found (no evoked part)")
PYEOF
    du -sh "$dir"
}

if [[ -n "$PREPARE" ]]; then
    prepare "$PREPARE" "$STORE"
    echo "inputs ready in $PREPARE: run the GPU script with carry [\"$PREPARE\"]"
    exit 0
fi

if [[ -z "$STORE" ]]; then
    if [[ ! -f "$INPUT/store/store.json" ]]; then
        echo "gpu_science: no store at $INPUT/store; preparing it (needs PyPI or the sample cache)"
        prepare "$INPUT"
    fi
    ARGS=(--store "$INPUT/store" --gradients "$INPUT/gradients.csv" ${ARGS[@]+"${ARGS[@]}"})
    [[ -d "$INPUT/events" ]] && ARGS=(--events "$INPUT/events" "${ARGS[@]}")
fi
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv || true
fi
exec "$PY" benchmarks/gpu_science.py "${ARGS[@]}"
