"""Synthetic clips for tests: an in-memory frame source and a moving square with a known path."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from stno.data import FrameSource, VideoWriter, write_png_frames

BACKGROUND = 0.2
FOREGROUND = 0.8


class TensorSource(FrameSource):
    """A frame source over in-memory (n, 3, H, W) uint8 tensors, one per sequence name."""

    def __init__(self, clips: dict[str, torch.Tensor]) -> None:
        self.clips = clips
        self.sequences = [(name, len(frames)) for name, frames in sorted(clips.items())]

    def read(self, name: str, indices: Sequence[int]) -> torch.Tensor:
        return self.clips[name][list(indices)]


def moving_square(
    num_frames: int,
    height: int = 48,
    width: int = 48,
    square: int = 8,
    start: tuple[float, float] = (12.0, 10.0),
    velocity: tuple[float, float] = (1.0, 2.0),
) -> torch.Tensor:
    """(n, 3, H, W) uint8 frames of a grey square whose top-left corner moves linearly.

    Frame ``i`` has the square at rows ``start[0] + i * velocity[0]`` (integer positions when
    start and velocity are integers), on a background of 0.2 (so bicubic ringing is not clamped).
    The three channels differ (R full, G half, B a quarter of the contrast) to catch channel mix-ups.
    """
    frames = torch.full((num_frames, 3, height, width), BACKGROUND)
    gains = torch.tensor([1.0, 0.5, 0.25]).view(3, 1, 1)
    for i in range(num_frames):
        top = round(start[0] + i * velocity[0])
        left = round(start[1] + i * velocity[1])
        frames[i, :, top : top + square, left : left + square] = (
            BACKGROUND + (FOREGROUND - BACKGROUND) * gains
        )
    return torch.round(frames * 255).to(torch.uint8)


def centroid(frame: torch.Tensor) -> torch.Tensor:
    """(row, col) centre of mass of the red channel above the background; frame (3, H, W) in [0, 1]."""
    weight = (frame[0].double() - BACKGROUND).clamp(min=0)
    rows = torch.arange(frame.shape[-2], dtype=torch.float64).view(-1, 1)
    cols = torch.arange(frame.shape[-1], dtype=torch.float64).view(1, -1)
    total = weight.sum()
    return torch.stack([(weight * rows).sum() / total, (weight * cols).sum() / total])


def write_test_video(path: Path, frames: torch.Tensor, fps: float = 25.0) -> Path:
    """Write (n, 3, H, W) uint8 frames as a near-lossless H.264 video (CRF 0, yuv420p)."""
    with VideoWriter(path, fps=fps, crf=0) as writer:
        writer.write(frames)
    return path


def write_frame_folder(folder: Path, frames: torch.Tensor) -> Path:
    write_png_frames(frames, folder)
    return folder
