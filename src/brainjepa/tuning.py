"""Precision, attention kernel and batch size, chosen by timing the encoder itself on the data at hand.

A matmul timing (`brainjepa.precision`) tells whether the CPU multiplies bf16 faster, not whether the encoder runs
faster: on a CPU with avx512_bf16 but no AMX the linear layers gain 2-3x in bf16 while attention over thousands of
tokens gains little, so the encoder as a whole gains from about 1.1x to 1.4x depending on its width (RESULTS.md,
"bf16 on CPU"), and under a busy machine the order can flip. How many windows one forward pass should hold
depends on the model and the CPU as well.

So `plan_embedding` times what the call will run: the patch embedding and the first block of the encoder (every
block has the same shape, so one stands for all) on copies of the call's first window, under the same
``inference_mode`` and autocast. Only open questions are timed: the precision where the user said ``auto`` and the
CPU's flags leave it open (`brainjepa.precision.bf16_needs_timing`); the attention kernel where the encoder runs in
bf16 on a CPU (torch's SDPA or oneDNN's fused attention, `brainjepa.models.onednn_attention`); and the batch size
where the user gave none and the encoder runs on a CPU. Pretraining asks the one question that applies to it, the
kernel of the target encoder's pass in bf16 on a CPU (`plan_target_attention`). Each timing is the best of `REPS`
passes after a warm-up pass (oneDNN builds its kernels on the first one). A call of fewer than `MIN_WINDOWS`
windows, or a run of fewer than `MIN_STEPS` steps, is not timed (a timing costs up to about 5 windows' worth,
once): it uses a stored decision where there is one, else the rules (the matmul check; SDPA; batch
`DEFAULT_BATCH`). The one exception is the attention kernel of a shorter embedding call, timed alone where that
costs at most `KERNEL_SHARE` of the call's own block passes (from 5 windows of a 12-block encoder).

A decision is stored in ``tuning.json`` in the cache folder (`brainjepa.io.cache_root`), keyed by the CPU, the
torch and brainjepa versions (whose kernels are timed), the thread count and the encoder shape, and reused: the same
command on the same machine keeps the same precision, kernel and batch size (and so the same numbers) from one run
to the next. Delete the file to time again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from brainjepa.io import atomic_write_text, cache_root
from brainjepa.models import onednn_attention
from brainjepa.models.encoder import BrainEncoder
from brainjepa.models.layers import INFERENCE_KERNELS, InferenceKernel, inference_attention
from brainjepa.precision import PrecisionChoice, bf16_needs_timing, cpu_name
from brainjepa.runtime import Runtime
from brainjepa.version import __version__

logger = logging.getLogger(__name__)

REPS = 2  # timed passes per candidate (best of), after one warm-up pass
MIN_WINDOWS = 32  # calls with fewer windows are not timed: a timing costs up to about 5 windows' worth (RESULTS.md)
# A shorter call still times the attention kernel where its passes (`_KERNEL_PASSES` of one block) are at most this
# share of the call's own block passes (windows x depth): the kernel alone is cheap to time, and oneDNN has run ViT-B
# windows 1.5x faster than SDPA on a CPU without AMX (RESULTS.md), so from about 5 ViT-B windows it pays.
KERNEL_SHARE = 0.1
_KERNEL_PASSES = 2 * (REPS + 1)  # block passes of one kernel timing: two kernels, each warmed up once
MIN_STEPS = 100  # pretraining runs with fewer steps are not timed: the kernel timing costs about 3 steps' worth
MIN_GAIN = 1.05  # a candidate must be this much faster per window to be taken: smaller differences are noise
MAX_BATCH = 32  # the largest batch tried on a CPU
DEFAULT_BATCH = 32  # windows per pass where nothing is timed (a GPU, or a short call)
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class EmbeddingPlan:
    """How an embedding call runs: its `Runtime` (device, precision), the attention kernel of its bf16 CPU passes
    and the windows per forward pass."""

    run: Runtime
    batch_size: int
    why_batch: str = ""  # how the batch size was decided, for the log ("" when it was given or by rule)
    attention: InferenceKernel = "sdpa"
    why_attention: str = ""  # how the kernel was decided ("" by rule: SDPA)

    def log(self, log: logging.Logger) -> None:
        self.run.log(log)
        if self.why_attention:
            log.info("attention: %s (%s)", self.attention, self.why_attention)
        log.info("batch: %d windows per forward pass%s", self.batch_size,
                 f" ({self.why_batch})" if self.why_batch else "")


def plan_embedding(net: BrainEncoder, window: Tensor, run: Runtime, *, precision_auto: bool, batch_size: int | None,
                   windows: int) -> EmbeddingPlan:
    """The precision, attention kernel and batch size to embed `windows` windows with `net`, timing what the
    settings leave open (or reusing a decision stored for this machine and encoder shape).

    Args:
        net: the encoder, on `run.device`, in eval mode.
        window: one input window [1, R, T] on `run.device` (the call's first; its values do not change the time).
        run: the runtime from the user's settings (its precision already chosen by the rules).
        precision_auto: the user's precision is ``auto`` (an explicit one is never overridden).
        batch_size: the user's batch size, or None to choose one.
        windows: windows the call will embed (timing only pays for long calls).
    """
    time_precision = precision_auto and bf16_needs_timing(run.device)
    time_batch = batch_size is None and run.device.type == "cpu"
    if not (time_precision or time_batch or _kernel_open(run)):
        return EmbeddingPlan(run, batch_size or DEFAULT_BATCH)
    store = _Decisions(decisions_path(), _shape_key(net, window), may_time=windows >= MIN_WINDOWS)
    timer = _Timer(net)
    if time_precision:
        decided = store.get("precision", lambda: _time_precision(timer, window), valid=_DTYPES.__contains__)
        if decided is not None:
            run = Runtime(run.device, PrecisionChoice(_DTYPES[decided[0]], f"auto: {decided[1]}"))
    kernel: tuple[InferenceKernel, str] = ("sdpa", "")
    if _kernel_open(run):
        kernel_store = dataclasses.replace(store, may_time=store.may_time or _kernel_pays(net, windows))
        kernel = kernel_store.get("attention bf16", lambda: _time_kernel(timer, window),
                                  valid=INFERENCE_KERNELS.__contains__) or kernel
    if time_batch:
        dtype = run.precision.dtype
        decided = store.get(f"batch {run.precision.name}" + (" onednn" if kernel[0] == "onednn" else ""),
                            lambda: _time_batch(timer, window, dtype, kernel[0]),
                            valid=lambda b: isinstance(b, int) and 1 <= b <= MAX_BATCH)
        if decided is not None:
            return EmbeddingPlan(run, *decided, *kernel)
    return EmbeddingPlan(run, batch_size or DEFAULT_BATCH, "", *kernel)


def plan_target_attention(net: BrainEncoder, batch: Tensor, run: Runtime, *, steps: int) -> tuple[InferenceKernel, str]:
    """The attention kernel for the target encoder's pass of a pretraining run, and why: timed on the run's batch
    shape where the run is in bf16 on a CPU and has `MIN_STEPS` steps or more (a stored decision otherwise), else
    SDPA. `net` is the target encoder (its first block is timed; every block has the same shape); `batch` [B, R, T]
    has the run's shape (its values do not change the time)."""
    if not _kernel_open(run):
        return "sdpa", ""
    store = _Decisions(decisions_path(), _shape_key(net, batch[:1]), may_time=steps >= MIN_STEPS)
    return (store.get(f"attention bf16 batch {len(batch)}", lambda: _time_kernel(_Timer(net), batch),
                      valid=INFERENCE_KERNELS.__contains__)
            or ("sdpa", f"by rule: a run of {steps} steps is not timed (MIN_STEPS {MIN_STEPS})"))


def _kernel_pays(net: BrainEncoder, windows: int) -> bool:
    """Whether a call of `windows` windows pays for timing the kernel alone (`KERNEL_SHARE` of its block passes)."""
    return _KERNEL_PASSES <= KERNEL_SHARE * windows * len(net.blocks)


def _kernel_open(run: Runtime) -> bool:
    """Whether the attention kernel is a question: bf16 on a CPU, with oneDNN's fused attention reachable."""
    return run.device.type == "cpu" and run.precision.dtype == torch.bfloat16 and onednn_attention.available()


def decisions_path() -> Path:
    """The file the timed decisions are stored in: ``tuning.json`` in the cache folder."""
    return cache_root() / "tuning.json"


def stored_decisions() -> dict[str, dict[str, list]]:
    """Every stored decision: {machine and encoder shape: {"precision" / "attention bf16" / "batch fp32" / ...:
    [value, why]}}."""
    return _Decisions(decisions_path(), "")._read()


@dataclass
class _Timer:
    """`_seconds_per_window` on one encoder, each (batch, dtype, kernel) timed once: the precision, kernel and batch
    questions share candidates (bf16 with SDPA at batch 1; the chosen kernel at batch 1)."""

    net: BrainEncoder
    done: dict[tuple[int, torch.dtype, str], float] = field(default_factory=dict)

    def seconds(self, x: Tensor, dtype: torch.dtype, kernel: InferenceKernel = "sdpa") -> float:
        key = (len(x), dtype, kernel)
        if key not in self.done:
            self.done[key] = _seconds_per_window(self.net, x, dtype, kernel)
        return self.done[key]


def _time_precision(timer: _Timer, window: Tensor) -> tuple[str, str]:
    """fp32 or bf16, whichever runs the first block faster by `MIN_GAIN` (fp32 on a tie), and the timings."""
    fp32, bf16 = (timer.seconds(window, dtype) for dtype in (torch.float32, torch.bfloat16))
    name = "bf16" if fp32 >= MIN_GAIN * bf16 else "fp32"
    return name, f"timed on this encoder's first block, fp32 {fp32:.3g} s, bf16 {bf16:.3g} s per window"


def _time_kernel(timer: _Timer, x: Tensor) -> tuple[InferenceKernel, str]:
    """SDPA or oneDNN, whichever runs the first block on x in bf16 faster by `MIN_GAIN` (SDPA on a tie)."""
    sdpa, onednn = (timer.seconds(x, torch.bfloat16, kernel) for kernel in ("sdpa", "onednn"))
    name: InferenceKernel = "onednn" if sdpa >= MIN_GAIN * onednn else "sdpa"
    return name, f"timed on this encoder's first block in bf16, SDPA {sdpa:.3g} s, oneDNN {onednn:.3g} s per window"


def _time_batch(timer: _Timer, window: Tensor, dtype: torch.dtype,
                kernel: InferenceKernel = "sdpa") -> tuple[int, str]:
    """The batch size (a power of 2 up to `MAX_BATCH`) with the lowest time per window, trying larger ones only
    while each is `MIN_GAIN` faster than the best so far; and the timings in words."""
    sizes = [2 ** k for k in range(int(math.log2(MAX_BATCH)) + 1)]
    best, tried = sizes[0], [(sizes[0], timer.seconds(window, dtype, kernel))]
    for size in sizes[1:]:
        tried.append((size, timer.seconds(window.repeat(size, 1, 1), dtype, kernel)))
        if tried[-1][1] * MIN_GAIN > min(s for _, s in tried[:-1]):
            break
        best = size
    words = ", ".join(f"{b}: {s:.3g} s" for b, s in tried)
    return best, f"timed on this encoder's first block, per window at batch {words}"


def _seconds_per_window(net: BrainEncoder, x: Tensor, dtype: torch.dtype, kernel: InferenceKernel = "sdpa") -> float:
    """Seconds per window of the patch embedding and first block on x [B, R, T] in `dtype` with the attention
    `kernel` (best of `REPS`; the warm-up pass also pays the fused attention's one-off profiling). Only CPUs are
    timed, so no device synchronisation is needed."""
    best = math.inf
    with inference_attention(net, kernel), torch.inference_mode(), torch.autocast(
            x.device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        for rep in range(REPS + 1):
            start = time.perf_counter()
            net.forward_intermediates(x, [0])
            if rep:  # the first pass is the warm-up
                best = min(best, time.perf_counter() - start)
    return best / len(x)


def _shape_key(net: BrainEncoder, window: Tensor) -> str:
    """What a timing depends on: the CPU, torch and brainjepa (its oneDNN attention), the threads, the encoder's
    width, heads and its input's shape."""
    attn = net.blocks[0].attn
    return (f"{cpu_name()} | torch {torch.__version__} | brainjepa {__version__} | {torch.get_num_threads()} threads"
            f" | width {net.cfg.embed_dim} heads {attn.num_heads} | input {list(window.shape[1:])} patch "
            f"{net.cfg.patch_size}")


@dataclass
class _Decisions:
    """Timed decisions stored in a JSON file: {key: {what: [value, why]}}; unreadable entries are timed afresh.
    `may_time` False: only stored decisions are used (the call is too short to pay for a timing)."""

    path: Path
    key: str
    may_time: bool = True

    def get(self, what: str, decide: Callable[[], tuple[Any, str]],
            valid: Callable[[Any], bool]) -> tuple[Any, str] | None:
        """The stored (value, why) of `what` for this key if `valid`, else `decide()`'s, stored (a write that fails
        only logs); None when nothing is stored and timing is not allowed."""
        stored = self._read()
        entry = stored.get(self.key, {}).get(what)
        if isinstance(entry, list) and len(entry) == 2 and valid(entry[0]):
            return entry[0], f"{entry[1]}; stored in {self.path}"
        if not self.may_time:
            return None
        value, why = decide()
        stored.setdefault(self.key, {})[what] = [value, why]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(stored, indent=1))
        except OSError as err:  # a read-only cache only costs the timing next time
            logger.debug("could not store the timing in %s: %s", self.path, err)
        return value, why

    def _read(self) -> dict:
        try:
            stored = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(stored, dict):
            return {}
        return {key: entry for key, entry in stored.items() if isinstance(entry, dict)}
