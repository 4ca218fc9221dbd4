"""Where a model runs and in which precision, decided once per run: `runtime(device, precision)`.

Pretraining, embedding, fine-tuning and the multimodal projectors each call `runtime` once with the user's
`device` and `precision` settings and then only use the `Runtime` it returns: its `device`, its precision choice
(with the reason, logged in one line) and `autocast()`, entered around every forward pass (nanoGPT builds its
``ctx`` once the same way). A CUDA device that is not there is refused here, by the setting's name, before any
work. `default_num_workers` sizes the DataLoader workers from the CPUs this process has.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from brainjepa.errors import ConfigError
from brainjepa.precision import Precision, PrecisionChoice, choose_precision


@dataclass(frozen=True)
class Runtime:
    """The device a run uses and the autocast precision chosen for it."""

    device: torch.device
    precision: PrecisionChoice

    @property
    def bf16(self) -> bool:
        return self.precision.dtype == torch.bfloat16

    def autocast(self) -> torch.autocast:
        """The context of every forward pass: bf16 autocast on this device, or a disabled one (fp32)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def log(self, logger: logging.Logger) -> None:
        """One line naming the precision and why (each caller logs it under its own name)."""
        logger.info("precision: %s (%s)", self.precision.name, self.precision.reason)


def runtime(device: str | torch.device | None = "auto", precision: Precision = "auto", *, local_rank: int = 0,
            world_size: int = 1, setting: str = "device") -> Runtime:
    """The `Runtime` for the user's settings: `device` resolved by `resolve_device`, then the precision chosen
    for that device by `brainjepa.precision.choose_precision` (``auto``: bf16 only where it is native and faster).

    Raises:
        ConfigError: an unknown device or precision, or a CUDA device this machine does not have.
    """
    dev = resolve_device(device, local_rank, world_size, setting=setting)
    return Runtime(dev, choose_precision(dev, precision))


def resolve_device(name: str | torch.device | None = "auto", local_rank: int = 0, world_size: int = 1, *,
                   setting: str = "meta.device") -> torch.device:
    """A device setting as a torch device: auto (or None) -> CUDA if available, else CPU; cuda -> this process's
    cuda:LOCAL_RANK. Errors name the setting as `setting` spells it (``meta.device=cuda`` or ``--device cuda``).

    Raises:
        ConfigError: not a torch device, CUDA asked for but not available, a GPU index beyond the visible ones, or
            one fixed GPU for several processes.
    """
    name = "auto" if name is None else str(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"{setting} {name!r} is not a torch device ({err})") from err
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise ConfigError(f"{_said(setting, name)}: CUDA is not available here ({why}); use {_said(setting, 'cpu')} "
                          "(or auto)")
    if device.index is not None and world_size > 1:
        raise ConfigError(f"{_said(setting, name)} would put all {world_size} processes on one GPU; use "
                          f"{_said(setting, 'cuda')} (each process takes cuda:LOCAL_RANK)")
    index, count = (local_rank if device.index is None else device.index), torch.cuda.device_count()
    if index >= count:
        asked = f"LOCAL_RANK {local_rank} needs cuda:{index}" if device.index is None else _said(setting, name)
        raise ConfigError(f"{asked} but only {count} CUDA device(s) are visible (cuda:0 to cuda:{count - 1})")
    return torch.device("cuda", index)


def _said(setting: str, value: str) -> str:
    """The setting with a value as the user writes it: ``meta.device=cpu`` in a config, ``--device cpu`` as a flag."""
    return f"{setting} {value}" if setting.startswith("-") else f"{setting}={value}"


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one; containers often restrict it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_num_workers(device: torch.device | str, processes_per_node: int | None = None, cap: int = 8) -> int:
    """DataLoader workers per training process, from the CPUs this process's share of the node has.

    On a GPU the process itself needs about one core to launch kernels, so the rest of its share loads data (at
    most `cap`). On a CPU the training step's own threads use every core and a batch loads in milliseconds against
    a step of seconds: one worker overlaps the loading where there are more than two cores, none on two or fewer
    (the quickstart measured a worker competing with the step there). `processes_per_node` defaults to torchrun's
    LOCAL_WORLD_SIZE (1 without torchrun).
    """
    procs = processes_per_node or int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    share = available_cpus() // max(procs, 1)
    if torch.device(device).type == "cuda":
        return max(0, min(cap, share - 1))
    return 1 if share > 2 else 0
