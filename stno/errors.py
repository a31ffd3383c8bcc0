"""The errors STNO raises for things a user can fix: one root, a class per kind of input.

Entry points show an ``STNOError`` (and Hydra's own config errors) as one line, ``stno-x: error:
message``, with exit code 2. Every other exception is a bug, and keeps its traceback.

Each class is also a ``ValueError`` (or the ``OSError`` its case is), so code that catches the
built-in kinds keeps working.
"""

from __future__ import annotations

__all__ = [
    "STNOError",
    "ConfigError",
    "DataError",
    "DataNotFoundError",
    "CheckpointError",
    "CheckpointNotFoundError",
    "ConversionError",
    "OutputError",
    "OutputExistsError",
    "OutputNotWritableError",
]


class STNOError(Exception):
    """Root of the errors that mean "the input or the settings cannot work", not "a bug"."""


class ConfigError(STNOError, ValueError):
    """An impossible setting or argument: a scale below 1, too few input frames, an unknown name."""


class DataError(STNOError, ValueError):
    """Input frames or videos that cannot be used: unreadable, cut off, too short, mixed sizes."""


class DataNotFoundError(DataError, FileNotFoundError):
    """An input video, image or folder that does not exist."""


class CheckpointError(STNOError, ValueError):
    """A checkpoint that cannot be loaded: not an STNO checkpoint, unsafe, or another model."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint path that does not exist."""


class ConversionError(CheckpointError):
    """A weights file that is not in the layout of the paper's code (``stno-convert``)."""


class OutputError(STNOError, ValueError):
    """An output path that cannot be written: a missing folder, the input itself, an unknown kind."""


class OutputNotWritableError(OutputError, PermissionError):
    """An output folder this process may not write to."""


class OutputExistsError(OutputError, FileExistsError):
    """An output that already exists and was not to be replaced (``overwrite=false``)."""
