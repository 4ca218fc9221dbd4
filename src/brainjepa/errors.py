"""Exceptions raised for bad user input; the CLI turns them into one clear line."""

from __future__ import annotations


class BrainJEPAError(ValueError):
    """Base class for errors the user can fix (bad data, bad config, bad checkpoint)."""


class DataError(BrainJEPAError):
    """A data file or sample is unusable; the message names the file or subject and the problem."""


class DownloadError(DataError):
    """A pinned file (a sample wheel, an atlas) could not be fetched or failed its sha256 check: no input of the
    command can be read without it, so it stops the command once rather than failing each run."""


class ConfigError(BrainJEPAError):
    """A configuration key is unknown, ill-typed or inconsistent; the message names the dotted key."""


class CheckpointError(BrainJEPAError):
    """A checkpoint or pretrained folder cannot be read or does not match the model."""


class TrainingError(BrainJEPAError):
    """Training cannot go on (e.g. a non-finite loss); the message names the step."""


class OutputError(OSError):
    """An output could not be written (a full disk, no permission); the message names the file and, for a full
    disk, the disk. Nothing was replaced: the previous file, if any, is unchanged."""
