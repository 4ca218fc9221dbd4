"""Data: reading ROI time series, checking them, the memory-mapped store, normalisation, windows and datasets.

The submodules form a one-way stack, each importing only from the layers below it (parsers -> readers -> validate
-> store -> normalize, windows -> dataset -> prepare, gradients, simulate, samples; the exact order is in
tests/test_imports.py, see docs/data.md). This package only re-exports; inside the stack, modules import from the
defining submodule, never from here.
"""

from brainjepa.data.dataset import StoreDataset, split_by_subject
from brainjepa.data.gradients import compute_gradients, compute_group_fc, gradients_file
from brainjepa.data.normalize import (
    Identity,
    Normalizer,
    RobustScaler,
    RoiZScore,
    SampleZScore,
    make_normalizer,
    normalizer_from_dict,
)
from brainjepa.data.prepare import Prepared, prepare_store, save_robust_stats, validate_paths
from brainjepa.data.readers import ReadOptions, Run, Source, find_sources, read_phenotypes, read_source
from brainjepa.data.samples import download_sample, list_samples, prepare_sample
from brainjepa.data.simulate import SimulationConfig, simulate_bold, simulate_store
from brainjepa.data.store import RunStore, StoreWriter, open_runs
from brainjepa.data.validate import Problem, check_timeseries
from brainjepa.data.windows import WindowSpec, take_window, take_windows, window_positions, window_starts
from brainjepa.io import load_gradient, save_gradient

__all__ = [
    "Identity",
    "Normalizer",
    "Prepared",
    "Problem",
    "ReadOptions",
    "RobustScaler",
    "RoiZScore",
    "Run",
    "RunStore",
    "SampleZScore",
    "SimulationConfig",
    "Source",
    "StoreDataset",
    "StoreWriter",
    "WindowSpec",
    "check_timeseries",
    "compute_gradients",
    "compute_group_fc",
    "download_sample",
    "find_sources",
    "gradients_file",
    "list_samples",
    "load_gradient",
    "make_normalizer",
    "normalizer_from_dict",
    "open_runs",
    "prepare_sample",
    "prepare_store",
    "read_phenotypes",
    "read_source",
    "save_gradient",
    "save_robust_stats",
    "simulate_bold",
    "simulate_store",
    "split_by_subject",
    "take_window",
    "take_windows",
    "validate_paths",
    "window_positions",
    "window_starts",
]
