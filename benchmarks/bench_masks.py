"""Time of one `MaskCollator` call (stack samples + draw masks) per batch, at the reference 450 x 160 grid.

DataLoader workers run torch with one thread, so that is the default here. Reports the median and 90th
percentile wall time and the median CPU time over `--batches` batches, for the whole call and for the
mask draw alone.

    python benchmarks/bench_masks.py [--batch-sizes 16 64] [--batches 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from brainjepa.masks import MaskCollator


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
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64], help="batch sizes to time")
    ap.add_argument("--batches", type=int, default=200, help="timed batches per size")
    ap.add_argument("--rois", type=int, default=450, help="ROIs per sample")
    ap.add_argument("--frames", type=int, default=160, help="frames per sample")
    ap.add_argument("--patch-size", type=int, default=16, help="frames per token")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (workers use 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    collator = MaskCollator((args.rois, args.frames), patch_size=args.patch_size)
    for batch_size in args.batch_sizes:
        samples = [torch.randn(1, args.rois, args.frames) for _ in range(batch_size)]
        call = summary(lambda i, s=samples: collator(s), args.batches)
        masks = summary(lambda i, b=batch_size: collator.masks_for(b, epoch=0, batch=i), args.batches)
        record = {
            "batch_size": batch_size,
            "grid": [args.rois, args.frames // args.patch_size],
            "threads": args.threads,
            "collate": call,
            "masks_only": masks,
        }
        print(json.dumps(record))


if __name__ == "__main__":
    main()
