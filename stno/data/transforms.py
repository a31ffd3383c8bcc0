"""What the clip datasets do to frames: LR made from HR by MATLAB bicubic (``make_lr``,
``downscale``), random crops, flips, rotations and time reversal (``augment_clip``), and the
random draws they take from a ``torch.Generator``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from stno.errors import DataError
from stno.ops.imresize import imresize

__all__ = [
    "augment_clip",
    "downscale",
    "lr_size_for",
    "make_lr",
    "randint",
    "random_crop",
    "uniform",
]


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator, dtype=torch.float64).item()


def randint(generator: torch.Generator, high: int) -> int:
    """Uniform int in [0, high)."""
    return int(torch.randint(high, (), generator=generator).item())


def lr_size_for(hr_size: Sequence[int], scale: float) -> tuple[int, int]:
    """LR (h, w) for HR (H, W) at ``scale``: ``floor(H / scale)``, at least 1."""
    if not scale >= 1:
        raise DataError(f"space scale must be >= 1 (HR at least as large as LR), got {scale}")
    lr_h, lr_w = (math.floor(n / scale + 1e-9) for n in hr_size)
    if lr_h < 1 or lr_w < 1:
        raise DataError(f"frames of {tuple(hr_size)} are too small for space scale {scale:g}")
    return lr_h, lr_w


def make_lr(
    hr: torch.Tensor, scale: float, quantize: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """LR frames from HR frames (..., 3, H, W) in [0, 1] by MATLAB bicubic at ``1 / scale``.

    HR is first cropped (bottom/right) to ``round(lr_size * scale)`` with
    ``lr_size = floor(size / scale)`` (a multiple of an integer scale). LR is clamped to [0, 1]
    and, with ``quantize``, rounded to 8-bit levels as LR images saved by MATLAB are.
    Returns ``(hr, lr)``.
    """
    lr_h, lr_w = lr_size_for(hr.shape[-2:], scale)
    hr = hr[..., : min(hr.shape[-2], round(lr_h * scale)), : min(hr.shape[-1], round(lr_w * scale))]
    return hr, downscale(hr, (lr_h, lr_w), quantize)


def downscale(hr: torch.Tensor, lr_size: Sequence[int], quantize: bool = True) -> torch.Tensor:
    """MATLAB-bicubic downscaling of (..., 3, H, W) in [0, 1] to ``lr_size``, clamped (and 8-bit)."""
    lr = imresize(hr, out_size=tuple(lr_size)).clamp(0, 1)
    return torch.round(lr * 255) / 255 if quantize else lr


def augment_clip(
    frames: torch.Tensor, generator: torch.Generator, reverse: bool = True
) -> tuple[torch.Tensor, bool]:
    """Same random flips / 90-degree rotation (square frames only) / time reversal for every frame.

    Args:
        frames: (T, C, H, W) clip.
    Returns:
        The augmented clip and whether time was reversed.
    """
    flips = torch.rand(4, generator=generator)
    if flips[0] < 0.5:
        frames = frames.flip(-1)
    if flips[1] < 0.5:
        frames = frames.flip(-2)
    # A transpose combined with the flips gives all 8 rotations/reflections of a square.
    if frames.shape[-1] == frames.shape[-2] and flips[2] < 0.5:
        frames = frames.transpose(-1, -2)
    reversed_time = bool(reverse and flips[3] < 0.5)
    if reversed_time:
        frames = frames.flip(0)
    return frames.contiguous(), reversed_time


def random_crop(
    frames: torch.Tensor, height: int, width: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Crop (..., H, W) to (height, width) at a random place, or the centre without a generator."""
    full_h, full_w = frames.shape[-2:]
    if generator is None:
        top, left = (full_h - height) // 2, (full_w - width) // 2
    else:
        top, left = (
            randint(generator, full_h - height + 1),
            randint(generator, full_w - width + 1),
        )
    return frames[..., top : top + height, left : left + width]
