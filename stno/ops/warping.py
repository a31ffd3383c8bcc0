"""Pixel-coordinate grids and flow-guided backward warping, shared by all stages."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "pixel_centers",
    "coordinate_grid",
    "corner_aligned_grid",
    "backward_warp",
    "resize_flow",
    "full_precision",
]


def full_precision(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float32, or as it is when already float32/float64 (bfloat16 autocast runs
    keep coordinates, flows and images at full precision with this)."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def pixel_centers(size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Centres of ``size`` equal cells covering [-1, 1]: (size,)."""
    return (torch.arange(size, device=device, dtype=dtype) * 2 + 1) / size - 1


def coordinate_grid(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Normalised (x, y) coordinates of pixel centres, in [-1, 1]: (h, w, 2)."""
    ys = pixel_centers(h, device, dtype)
    xs = pixel_centers(w, device, dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def corner_aligned_grid(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Normalised (x, y) coordinates with -1 and 1 on the first and last pixel: (h, w, 2).

    ``linspace(-1, 1)`` along each axis: the grid the reference code's motion stage uses.
    """
    ys = torch.linspace(-1.0, 1.0, h, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def backward_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``x`` at ``p + flow(p)`` for every pixel p (bilinear, border padding).

    Args:
        x: (N, C, h, w) the frame or features to warp.
        flow: (N, 2, h, w) displacement in pixels, channel 0 = x (right), 1 = y (down).
    Returns:
        (N, C, h, w).
    """
    n, _, h, w = flow.shape
    flow = full_precision(flow)
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype)
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    # align_corners=True: pixel index i maps to -1 + 2 i / (size - 1)
    sx = (gx + flow[:, 0]) * (2 / max(w - 1, 1)) - 1
    sy = (gy + flow[:, 1]) * (2 / max(h - 1, 1)) - 1
    grid = torch.stack([sx, sy], dim=-1)
    # sampling positions and weights in float32: bfloat16 would move pixels by up to ~0.5 px
    with torch.autocast(x.device.type, enabled=False):
        warped = F.grid_sample(
            full_precision(x),
            grid.to(full_precision(x).dtype),
            mode="bilinear",
            padding_mode="border",
            align_corners=True,
        )
    return warped.to(x.dtype)


def resize_flow(flow: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Upsample a flow field by ``factor`` (bilinear), scaling the displacements with it."""
    return factor * F.interpolate(
        full_precision(flow), scale_factor=factor, mode="bilinear", align_corners=False
    )
