"""Data: reading ROI time series, the memory-mapped dataset store, and validation."""

from brainjepa.data.dataset import StoreDataset, split_by_subject
from brainjepa.data.gradients import compute_gradients, compute_group_fc, load_gradient, save_gradient
from brainjepa.data.normalize import (
    Identity,
    Normalizer,
    RobustScaler,
    RoiZScore,
    SampleZScore,
    make_normalizer,
    normalizer_from_dict,
)
from brainjepa.data.readers import Run, Source, find_sources, read_phenotypes, read_source
from brainjepa.data.samples import download_sample, list_samples, prepare_sample
from brainjepa.data.simulate import SimulationConfig, simulate_bold, simulate_store
from brainjepa.data.store import RunStore, StoreWriter, prepare_store
from brainjepa.data.validate import Problem, check_timeseries, validate_paths
from brainjepa.data.windows import WindowSpec, take_window, take_windows, window_positions, window_starts

__all__ = [
    "Identity",
    "Normalizer",
    "Problem",
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
    "list_samples",
    "load_gradient",
    "make_normalizer",
    "normalizer_from_dict",
    "prepare_sample",
    "prepare_store",
    "read_phenotypes",
    "read_source",
    "save_gradient",
    "simulate_bold",
    "simulate_store",
    "split_by_subject",
    "take_window",
    "take_windows",
    "validate_paths",
    "window_positions",
    "window_starts",
]
