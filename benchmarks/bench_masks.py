"""Per-batch time of the pretraining batch pipeline, the path training runs in its DataLoader workers.

`MaskedBatches[key]` reads and normalises this process's windows from a store, draws the masks of the whole global
batch (`draw_masks`, global batch = --batch x world size, so every process count sees the same masks) and keeps
this process's rows. The mask draw grows with the world size, the window reads do not. Timed at the reference
450 x 160 grid (patch 16, stride-3 clips) on random data in a temporary store, with torch on one thread as in
DataLoader workers. One JSON line per world size: median / p90 wall ms and median CPU ms per batch, for the whole
`Batch` and for the global `draw_masks` alone.

    python benchmarks/bench_masks.py [--batch 16] [--world-sizes 1 4 8] [--batches 100] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from brainjepa.data.dataset import StoreDataset
from brainjepa.data.store import StoreWriter
from brainjepa.data.windows import WindowSpec
from brainjepa.masks import MaskConfig, draw_masks
from brainjepa.training.batch import MaskedBatches


def summary(fn, batches: int) -> dict[str, float]:
    """Median and p90 wall time, and median CPU time (less sensitive to other processes on a busy machine)."""
    fn(0)  # warm-up
    wall, cpu = [], []
    for i in range(1, batches + 1):
        w0, c0 = time.perf_counter(), time.process_time()
        fn(i)
        cpu.append((time.process_time() - c0) * 1e3)
        wall.append((time.perf_counter() - w0) * 1e3)
    return {
        "median_ms": round(statistics.median(wall), 2),
        "p90_ms": round(statistics.quantiles(wall, n=10)[-1], 2),
        "median_cpu_ms": round(statistics.median(cpu), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16, help="samples per process (data.batch_size)")
    ap.add_argument("--world-sizes", type=int, nargs="+", default=[1, 4, 8], help="process counts to time")
    ap.add_argument("--batches", type=int, default=100, help="timed batches per world size")
    ap.add_argument("--rois", type=int, default=450, help="ROIs per sample")
    ap.add_argument("--frames", type=int, default=160, help="frames per sample (model input)")
    ap.add_argument("--patch-size", type=int, default=16, help="frames per token")
    ap.add_argument("--stride", type=int, default=3, help="frame stride of the clip (data.sampling_rate)")
    ap.add_argument("--runs", type=int, default=32, help="runs in the temporary store (batches cycle over them)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (workers use 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    grid, mask = (args.rois, args.frames // args.patch_size), MaskConfig()
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        with StoreWriter(Path(tmp) / "store", args.rois) as w:
            for s in range(args.runs):
                w.add(rng.normal(size=(args.rois, args.frames * args.stride + 10)).astype(np.float32), subject=f"s{s}")
        dataset = StoreDataset(Path(tmp) / "store", window=WindowSpec(frames=args.frames, sampling_rate=args.stride))
        for world in args.world_sizes:
            batches = MaskedBatches(dataset, mask, grid, seed=0, batch_size=args.batch, world_size=world)

            def key(i: int) -> tuple[int, int, list[int]]:
                return 0, i, [(i * args.batch + j) % args.runs for j in range(args.batch)]

            whole = summary(lambda i, b=batches: b[key(i)], args.batches)
            masks = summary(lambda i, g=args.batch * world: draw_masks(mask, *grid, seed=0, epoch=0, batch=i,
                                                                        batch_size=g), args.batches)
            print(json.dumps({"batch": args.batch, "world_size": world, "global_batch": args.batch * world,
                              "grid": list(grid), "threads": args.threads, "batch_ms": whole, "masks_ms": masks}))


if __name__ == "__main__":
    main()
