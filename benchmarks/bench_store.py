"""Dataset store benchmark: write throughput, random-window read latency and memory at 10k+ runs.

    python benchmarks/bench_store.py --dir /tmp/bench_store --subjects 10000 --rois 450 --frames 200

Writes a synthetic store (StoreWriter.add, validation included), then, in a fresh process, reads random
[R, window] windows with RunStore.window: first right after evicting the file from the page cache (cold, what a
first epoch sees on local disk), then with the whole file cached (warm), and once through the raw memmap for
comparison. Reports
median/p99 per window and RSS (anonymous and file-backed) before and after. Deletes the store unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def rss_mib() -> dict[str, float]:
    """Resident memory of this process from /proc (Linux): anonymous, file-backed and total, in MiB."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "VmRSS"):
                out[key] = int(value.split()[0]) / 1024
    return out


def write(args: argparse.Namespace) -> dict:
    from brainjepa.data.store import StoreWriter

    need = args.subjects * args.rois * args.frames * 4
    free = shutil.disk_usage(args.dir.parent).free
    if free < 1.5 * need:
        sys.exit(f"need {need / 1e9:.1f} GB (+50%) free under {args.dir.parent}, have {free / 1e9:.1f} GB")
    rng = np.random.default_rng(args.seed)
    # A pool of noise sliced at a different offset per subject: the benchmark times the store, not the RNG.
    pool = rng.standard_normal((args.rois, args.frames * 8)).astype(np.float32)
    starts = rng.integers(0, pool.shape[1] - args.frames, size=args.subjects)
    t0 = time.perf_counter()
    with StoreWriter(args.dir, args.rois, overwrite=True) as writer:
        for k, s in enumerate(starts):
            writer.add(pool[:, s : s + args.frames], subject=f"{k:06d}", tr=0.735, phenotypes={"age": k % 50})
    seconds = time.perf_counter() - t0
    return {
        "subjects": args.subjects,
        "gb": need / 1e9,
        "write_s": seconds,
        "write_gb_s": need / 1e9 / seconds,
        "runs_per_s": args.subjects / seconds,
    }


def _time_windows(read, store, rng, n: int, length: int) -> np.ndarray:
    runs = rng.integers(0, len(store), size=n)
    times = np.empty(n)
    for j, i in enumerate(runs):
        start = int(rng.integers(0, store.frames(int(i)) - length + 1))
        t = time.perf_counter()
        read(int(i), start, length)
        times[j] = time.perf_counter() - t
    return times * 1e3  # ms


def read(args: argparse.Namespace) -> dict:
    from brainjepa.data.store import DATA_FILE, RunStore

    before_open = rss_mib()
    t0 = time.perf_counter()
    store = RunStore(args.dir)
    open_s = time.perf_counter() - t0
    fd = os.open(args.dir / DATA_FILE, os.O_RDONLY)
    os.fsync(fd)  # dirty pages cannot be evicted
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # evict this file from the page cache: cold reads
    os.close(fd)
    rng = np.random.default_rng(args.seed + 1)
    result = {"open_s": open_s, "rss_before_open": before_open, "rss_after_open": rss_mib()}
    for name in ("cold", "warm"):
        if name == "warm":  # pull the whole file into the page cache first
            with open(args.dir / DATA_FILE, "rb") as fh:
                while fh.read(1 << 24):
                    pass
        t = _time_windows(store.window, store, rng, args.reads, args.window)
        result[name] = {"median_ms": float(np.median(t)), "p99_ms": float(np.percentile(t, 99)), "rss_after": rss_mib()}

    offsets = store.manifest["offset"].to_numpy()

    def memmap_window(i: int, start: int, length: int) -> np.ndarray:
        o = int(offsets[i]) + start
        return np.ascontiguousarray(store.data[o : o + length].T)

    t = _time_windows(memmap_window, store, rng, args.reads, args.window)
    result["memmap"] = {"median_ms": float(np.median(t)), "p99_ms": float(np.percentile(t, 99)), "rss_after": rss_mib()}
    return result


def prepare_ukb(args: argparse.Namespace) -> dict:
    """Time `prepare_store` on synthetic subjects in the reference UKB layout (50 + 400 ROIs x 490 frames)."""
    import pandas as pd

    from brainjepa.data.prepare import prepare_store
    from brainjepa.data.readers import UKB_CORTICAL, UKB_SUBCORTICAL, ReadOptions

    rng = np.random.default_rng(args.seed)
    root = args.dir.with_name(args.dir.name + "_ukb")
    for k in range(args.ukb):
        folder = root / "time_series" / f"{1000000 + k}"
        folder.mkdir(parents=True, exist_ok=True)
        for name, rois in ((UKB_SUBCORTICAL, 50), (UKB_CORTICAL, 400)):
            ts = rng.standard_normal((rois, 490)).astype(np.float32)
            index = pd.Index([f"roi{i}" for i in range(rois)], name="label_name")
            pd.DataFrame(ts, index=index).to_csv(folder / name, float_format="%.6g")
    out = {}
    try:
        for workers in sorted({1, args.workers}):
            t0 = time.perf_counter()
            store = prepare_store(
                [root], root / "store", ReadOptions(num_rois=450, tr=0.735), overwrite=True, stats=False,
                workers=workers, progress=False,
            ).store
            out[workers] = time.perf_counter() - t0
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"subjects": len(store), "seconds_by_workers": out}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, default=Path("/tmp/bench_store"), help="store directory (deleted after)")
    p.add_argument("--subjects", type=int, default=10_000, help="runs to write")
    p.add_argument("--rois", type=int, default=450, help="ROIs per run")
    p.add_argument("--frames", type=int, default=200, help="frames per run")
    p.add_argument("--window", type=int, default=160, help="frames per random window read")
    p.add_argument("--reads", type=int, default=10_000, help="random windows per pass")
    p.add_argument("--seed", type=int, default=0, help="seed for data and read positions")
    p.add_argument("--ukb", type=int, default=200, help="synthetic UKB-layout subjects to time `prepare` on (0: skip)")
    p.add_argument("--workers", type=int, default=2, help="reader processes for the timed UKB prepare")
    p.add_argument("--keep", action="store_true", help="keep the store after the benchmark")
    p.add_argument("--phase", choices=("all", "read"), default="all", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase == "read":
        print(json.dumps(read(args)))
        return
    try:
        wrote = write(args)
        print(
            f"write: {wrote['subjects']} runs, {wrote['gb']:.2f} GB in {wrote['write_s']:.1f} s = "
            f"{wrote['write_gb_s']:.2f} GB/s ({wrote['runs_per_s']:.0f} runs/s)"
        )
        # Read in a fresh process so its RSS reflects only the reader.
        child = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--phase", "read"], check=True, capture_output=True, text=True
        )
        r = json.loads(child.stdout.strip().splitlines()[-1])
        print(
            f"open: {r['open_s'] * 1e3:.0f} ms; RSS before open {r['rss_before_open']['VmRSS']:.0f} MiB, "
            f"after {r['rss_after_open']['VmRSS']:.0f} MiB"
        )
        for name in ("cold", "warm", "memmap"):
            q = r[name]
            print(
                f"{name:>6}: {args.reads} random {args.rois}x{args.window} windows: median {q['median_ms']:.3f} ms, "
                f"p99 {q['p99_ms']:.3f} ms; RSS after {q['rss_after']['VmRSS']:.0f} MiB "
                f"(anon {q['rss_after']['RssAnon']:.0f}, file {q['rss_after']['RssFile']:.0f})"
            )
        if args.ukb:
            u = prepare_ukb(args)
            for workers, seconds in u["seconds_by_workers"].items():
                print(
                    f"prepare (UKB layout, 50+400 ROIs x 490 frames, gzipped CSV pairs), {workers} worker(s): "
                    f"{u['subjects']} subjects in {seconds:.1f} s = {u['subjects'] / seconds:.1f} subjects/s"
                )
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
