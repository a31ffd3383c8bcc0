"""Views on part of a frame source: ``SequenceSubset`` and the train/validation split that
makes two of them (``split_sequences``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stno.data.sources import FrameSource, _check_indices
from stno.errors import ConfigError, DataError

__all__ = ["SequenceSubset", "split_sequences"]


class SequenceSubset(FrameSource):
    """A view of some sequences of another source, each limited to a frame range.

    ``ranges`` maps a sequence name to ``(start, stop)`` (frames ``start .. stop-1``); frame
    ``i`` of the view is frame ``start + i`` of the source.
    """

    def __init__(
        self, source: FrameSource, ranges: dict[str, tuple[int, int]], role: str | None = None
    ) -> None:
        counts = dict(source.sequences)
        for name, (start, stop) in ranges.items():
            if name not in counts:
                raise KeyError(f"no sequence {name!r} in {source!r}")
            if not 0 <= start < stop <= counts[name]:
                raise ConfigError(
                    f"bad frame range {start}..{stop} for {name!r} ({counts[name]} frames)"
                )
        self.source = source
        self.role = role  # "training" / "validation" part of a split, for messages
        self.ranges = dict(ranges)
        self.sequences = [(name, stop - start) for name, (start, stop) in self.ranges.items()]

    def read(self, name: str, indices: Sequence[int]) -> torch.Tensor:
        start, stop = self.ranges[name]
        indices = _check_indices(name, indices, stop - start)
        return self.source.read(name, [start + i for i in indices])

    def describe(self, name: str) -> str:
        start, stop = self.ranges[name]
        total = self.source.num_frames(name)
        if (start, stop) == (0, total):
            return self.source.describe(name)
        part = f"its {self.role} part" if self.role else "the part used"
        return (
            f"sequence {name!r} has {total} frames, {part} (frames {start}..{stop - 1}, after the "
            f"train/validation split of data.val_fraction) has {stop - start}"
        )

    def __repr__(self) -> str:
        return f"SequenceSubset({self.source!r}, {self.ranges})"


def split_sequences(
    source: FrameSource, val_fraction: float = 0.2, min_frames: int = 1
) -> tuple[SequenceSubset, SequenceSubset]:
    """Split a source into (train, val) views that share no frame.

    With several sequences, the last ``max(1, round(n * val_fraction))`` sequences (by name)
    are validation. With one sequence, its first ``1 - val_fraction`` of frames are training
    and the rest validation. ``min_frames`` (e.g. the clip window) is checked for both parts.
    """
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    sequences = source.sequences
    if len(sequences) >= 2:
        num_val = min(len(sequences) - 1, max(1, round(len(sequences) * val_fraction)))
        train = {name: (0, count) for name, count in sequences[:-num_val]}
        val = {name: (0, count) for name, count in sequences[-num_val:]}
    else:
        name, count = sequences[0]
        boundary = round(count * (1 - val_fraction))
        if boundary < min_frames or count - boundary < min_frames:
            raise DataError(
                f"sequence {name!r} has {count} frames: too few to split {1 - val_fraction:.0%}/"
                f"{val_fraction:.0%} into train and val parts of at least {min_frames} frames each"
            )
        train = {name: (0, boundary)}
        val = {name: (boundary, count)}
    return SequenceSubset(source, train, "training"), SequenceSubset(source, val, "validation")
