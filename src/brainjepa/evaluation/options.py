"""The settings shared by every use of a pretrained encoder on runs, declared once: `EncoderOptions`.

Which encoder, how a run becomes its input windows, its normalisation, and where and in which precision the
encoder runs are the same choice for `embed`, fine-tuning and the scikit-learn transformer. Each field is declared
with `option`: its default, its range (`brainjepa.bounds`) and its help text, from which the command line's flags
(`brainjepa.cli.arguments.add_option_arguments`) and `BrainJEPAEmbedder`'s parameters are generated, so a setting
is added or changed in one place.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from brainjepa.bounds import SCANNER_TR, bounded, check_bounds
from brainjepa.data.normalize import NORMALIZATION_KINDS
from brainjepa.errors import ConfigError
from brainjepa.precision import Precision
from brainjepa.runtime import Runtime, runtime

NORMALIZATIONS = ("model", *(k for k in NORMALIZATION_KINDS if k != "robust"))  # "model": the stored robust stats


def option(default: Any, help: str, *, choices: tuple[str, ...] | None = None, metavar: str | None = None,
           **limits: Any) -> Any:
    """A dataclass field with its command-line help (argparse's ``%(default)s`` names the default) and, for a
    number, its kind and range (`bounded`'s `ge`, `gt`, `le`, `lt`); `choices` for a ``str`` field whose type is not
    a Literal."""
    number = isinstance(default, int | float) and not isinstance(default, bool)
    checked = bounded(default, **limits).metadata if number or limits else {}
    extra = {"help": help, "choices": choices, "metavar": metavar}
    return dataclasses.field(default=default, metadata={**checked, **extra})


def option_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of `cls` declared with `option`, in order: its settings a user gives."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


@functools.cache
def option_choices(cls: type) -> dict[str, tuple]:
    """The allowed values of each field of `cls` that has a fixed set: its Literal type's, or `option`'s choices."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        listed = f.metadata.get("choices") or (typing.get_args(hints[f.name])
                                               if typing.get_origin(hints[f.name]) is Literal else None)
        if listed:
            out[f.name] = tuple(listed)
    return out


@dataclass(frozen=True)
class EncoderOptions:
    """Which encoder, how a run becomes its input windows, and where and how precisely the encoder runs.

    Subclasses add their own settings and name their section (`SECTION`, as errors spell a key: ``embed.pad``).
    Each field's meaning is its help text, the same words as the command line's.
    """

    SECTION: ClassVar[str] = "encoder"

    encoder: Literal["target", "context"] = option(
        "target", "EMA target encoder (the reference's downstream choice) or the context encoder (default "
        "%(default)s)")
    sampling_rate: int = option(
        1, "frame stride inside a window (default %(default)s; the reference's UKB setting is 3)", ge=1)
    target_tr: float | None = option(
        None, "resample each run to this TR instead of a fixed stride (needs the runs' TR)", metavar="SECONDS",
        ge=SCANNER_TR[0], le=SCANNER_TR[1])
    pad: bool = option(False, "repeat the last frame of runs shorter than one window (default: error naming the run)")
    normalization: str = option(
        "model", "per-window normalisation: model (the model's stored normaliser; a per-sample z-score if it has "
        "none) or an explicit one (default %(default)s)", choices=NORMALIZATIONS)
    precision: Precision = option(
        "auto", "autocast dtype. auto (default): bf16 where it is faster (a GPU with bf16, a CPU with native bf16), "
        "else fp32; the choice and its reason are logged")
    device: str | None = option(None, "torch device (default: cuda if available, else cpu)")

    def __post_init__(self) -> None:
        check_bounds(self, self.SECTION)
        for name, allowed in option_choices(type(self)).items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{self.SECTION}.{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        if self.target_tr is not None and self.sampling_rate != 1:  # a target TR replaces the stride
            raise ConfigError(f"{self.SECTION}.sampling_rate ({self.sampling_rate}) and {self.SECTION}.target_tr "
                              f"({self.target_tr:g} s) are two ways to space a window's frames, and the target TR "
                              f"would win: give one of them")

    def runtime(self, device: Any = None) -> Runtime:
        """Where and how precisely to run (`brainjepa.runtime`): `self.device`, else `device` (e.g. where the model
        is), else CUDA if available, else CPU."""
        return runtime(self.device or device, self.precision, setting=f"{self.SECTION}.device")
