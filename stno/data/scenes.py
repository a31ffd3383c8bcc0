"""Scene cuts: find where a video jumps to another shot, and split sequences into shots.

A training or validation window that spans a cut asks the network to interpolate between two
unrelated images; such windows are dropped by splitting every sequence into its shots.

Detection: the mean absolute difference of consecutive frames, on a small grey-level copy
(robust to noise and compression), compared with the differences around it. A cut is a jump far
above its neighbourhood (``ratio`` times the local median) and above an absolute floor
(``min_level``, in 8-bit levels), so fast but continuous motion is not a cut.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from stno.data.sources import FrameSource, _check_indices

__all__ = ["frame_differences", "detect_scene_cuts", "ShotSource"]

log = logging.getLogger(__name__)


def frame_differences(frames: torch.Tensor, size: int = 64, chunk: int = 16) -> torch.Tensor:
    """Mean absolute grey-level change between consecutive frames, in 8-bit levels.

    Args:
        frames: (n, 3, H, W) uint8 (or float in [0, 255]).
        size: the longer side of the grey copy the differences are taken on.
        chunk: frames converted to float at a time (the small grey copies are what is kept, so
            a whole decoded video is never held in float: 4x its uint8 size).
    Returns:
        (n - 1,) float tensor: entry i compares frames i and i + 1.
    """
    height, width = frames.shape[-2:]
    factor = max(1, round(max(height, width) / size))
    greys = []
    for start in range(0, frames.shape[0], chunk):
        grey = frames[start : start + chunk].float().mean(dim=1, keepdim=True)
        if factor > 1:
            grey = F.avg_pool2d(grey, factor, ceil_mode=True)
        greys.append(grey)
    grey = torch.cat(greys)
    return (grey[1:] - grey[:-1]).abs().mean(dim=(1, 2, 3))


def detect_scene_cuts(
    frames: torch.Tensor, ratio: float = 3.0, min_level: float = 12.0, radius: int = 6
) -> list[int]:
    """Indices of the first frame of every new shot in ``frames`` (n, 3, H, W) uint8.

    A cut before frame ``i + 1`` when the change from frame i to i + 1 exceeds ``min_level``
    8-bit levels and ``ratio`` times the median change of the ``radius`` pairs on each side.
    """
    diffs = frame_differences(frames)
    cuts = []
    for i, value in enumerate(diffs.tolist()):
        around = torch.cat([diffs[max(0, i - radius) : i], diffs[i + 1 : i + 1 + radius]])
        local = float(around.median()) if around.numel() else 0.0
        if value > min_level and value > ratio * local:
            cuts.append(i + 1)
    return cuts


class ShotSource(FrameSource):
    """The shots of another source's sequences, each one sequence named ``<name>@<first frame>``.

    Every sequence is read once to find its cuts (a video source caches its frames anyway).
    ``cuts`` maps a sequence name to the first frames of its shots after the first.
    """

    def __init__(self, source: FrameSource, ratio: float = 3.0, min_level: float = 12.0) -> None:
        self.source = source
        self.cuts: dict[str, list[int]] = {}
        self._shots: dict[str, tuple[str, int, int]] = {}
        self.sequences = []
        for name, count in source.sequences:
            frames = source.read(name, range(count))
            count = frames.shape[0]  # a video may decode to another count than its container's
            cuts = detect_scene_cuts(frames, ratio, min_level) if count > 2 else []
            self.cuts[name] = cuts
            bounds = [0, *cuts, count]
            for start, stop in zip(bounds, bounds[1:], strict=False):
                shot = name if not cuts else f"{name}@{start}"
                self._shots[shot] = (name, start, stop)
                self.sequences.append((shot, stop - start))
        total = sum(len(c) for c in self.cuts.values())
        log.info("scene cuts: %d in %d sequences", total, len(self.cuts))

    def windows_dropped(self, length: int, stride: int = 1) -> tuple[int, int]:
        """(windows of ``length`` frames lost to cuts, windows without splitting), every ``stride``."""

        def count(frames: int) -> int:
            return 0 if frames < length else (frames - length) // stride + 1

        whole = sum(count(c) for _n, c in self.source.sequences)
        kept = sum(count(c) for _n, c in self.sequences)
        return whole - kept, whole

    def read(self, name: str, indices: Sequence[int]) -> torch.Tensor:
        source_name, start, stop = self._shots[name]
        indices = _check_indices(name, indices, stop - start)
        return self.source.read(source_name, [start + i for i in indices])

    def __repr__(self) -> str:
        return f"ShotSource({self.source!r}, {sum(map(len, self.cuts.values()))} cuts)"
