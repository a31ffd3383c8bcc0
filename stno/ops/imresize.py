"""MATLAB-compatible bicubic resizing in torch (the degradation every ST-VSR benchmark uses).

MATLAB's ``imresize(img, scale, 'bicubic')`` differs from ``torch.nn.functional.interpolate``:

- cubic kernel with a = -0.5 (torch uses a = -0.75);
- when downscaling, the kernel is stretched by ``1/scale`` (antialiasing), so every output
  pixel averages ``4/scale`` input pixels;
- borders are extended by mirroring (``symmetric``: ``... x1 x0 | x0 x1 ...``);
- the two axes are resized one after the other, the axis with the smaller scale first.

With ``scale`` given, the output size is ``ceil(scale * input size)`` and the kernel uses
``scale`` itself; with ``out_size`` given, each axis uses ``scale = out / in``.

Each axis is a matrix product with a dense (out, in) weight matrix, built once per
(in, out, scale) and cached, so repeated calls on frames of one size are cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from stno.errors import ConfigError

__all__ = ["imresize", "crop_to_multiple", "output_size", "resize_matrix"]

# Tolerance for ceil(scale * size): 1/3 * 48 must give 16, not 17.
_SIZE_EPS = 1e-9


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5, as MATLAB's imresize."""
    absx = np.abs(x)
    absx2 = absx**2
    absx3 = absx**3
    near = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1)
    far = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * ((absx > 1) & (absx <= 2))
    return near + far


@lru_cache(maxsize=64)
def _resize_matrix_np(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """(out_len, in_len) float64 weights of MATLAB bicubic resizing along one axis."""
    kernel_width = 4.0
    antialias = scale < 1
    if antialias:
        kernel_width /= scale
    # Output pixel centres (1-based, as MATLAB) mapped to input coordinates.
    out_pos = np.arange(1, out_len + 1, dtype=np.float64)
    in_pos = out_pos / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(in_pos - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    distance = in_pos[:, None] - indices
    weights = scale * _cubic(scale * distance) if antialias else _cubic(distance)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # Symmetric border: index sequence 1..n, n..1 repeated.
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    zero_based = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_len)]
    matrix = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.repeat(np.arange(out_len), taps)
    np.add.at(matrix, (rows, zero_based.reshape(-1)), weights.reshape(-1))
    return matrix


def resize_matrix(
    in_len: int, out_len: int, scale: float | None = None, device=None, dtype=torch.float32
) -> torch.Tensor:
    """Dense (out_len, in_len) matrix ``M`` with ``y = M @ x`` resizing one axis.

    ``scale`` defaults to ``out_len / in_len``. Cached per (sizes, scale, device, dtype).
    """
    if scale is None:
        scale = out_len / in_len
    return _resize_matrix_torch(
        int(in_len), int(out_len), float(scale), torch.device(device or "cpu"), dtype
    )


@lru_cache(maxsize=64)
def _resize_matrix_torch(
    in_len: int, out_len: int, scale: float, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    matrix = _resize_matrix_np(in_len, out_len, scale)
    return torch.from_numpy(matrix).to(device=device, dtype=dtype)


def output_size(size: Sequence[int], scale: float | Sequence[float]) -> tuple[int, int]:
    """MATLAB's output size ``ceil(scale * size)`` for (H, W)."""
    scales = _pair(scale)
    return tuple(int(math.ceil(s * n - _SIZE_EPS)) for s, n in zip(scales, size, strict=True))  # type: ignore[return-value]


def _pair(value) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        return float(value), float(value)
    values = tuple(float(v) for v in value)
    if len(values) != 2:
        raise ValueError(f"expected one number or a pair (h, w), got {value!r}")
    return values  # type: ignore[return-value]


def imresize(
    x: torch.Tensor,
    scale: float | Sequence[float] | None = None,
    out_size: Sequence[int] | None = None,
) -> torch.Tensor:
    """Resize like MATLAB's ``imresize(x, scale, 'bicubic')`` (antialiased when shrinking).

    Args:
        x: (..., C, H, W) float tensor, any value range (no clamping), CPU or GPU.
        scale: one factor or (scale_h, scale_w); output size is ``ceil(scale * (H, W))``.
        out_size: (H_out, W_out); each axis then uses ``scale = out / in``.
            Give exactly one of ``scale`` and ``out_size``.

    Returns:
        (..., C, H_out, W_out) tensor of the input's dtype (half precision is computed in fp32).
    """
    if (scale is None) == (out_size is None):
        raise ValueError("imresize: give exactly one of scale and out_size")
    if x.dim() < 2:
        raise ValueError(f"imresize: expected (..., H, W), got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise ValueError(
            f"imresize: expected a float tensor, got {x.dtype}; convert with x.float() / 255"
        )
    in_size = (int(x.shape[-2]), int(x.shape[-1]))
    if out_size is not None:
        out_hw = tuple(int(v) for v in out_size)
        if len(out_hw) != 2 or min(out_hw) < 1:
            raise ValueError(f"imresize: out_size must be two positive ints, got {out_size!r}")
        scales = (out_hw[0] / in_size[0], out_hw[1] / in_size[1])
    else:
        scales = _pair(scale)
        if min(scales) <= 0:
            raise ValueError(f"imresize: scale must be positive, got {scale!r}")
        out_hw = output_size(in_size, scales)
        if min(out_hw) < 1:
            raise ConfigError(f"imresize: scale {scale!r} gives an empty output from {in_size}")
    compute_dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    y = x.to(compute_dtype)
    # MATLAB resizes the axis with the smaller scale first (stable order: H before W on ties).
    order = (0, 1) if scales[0] <= scales[1] else (1, 0)
    for axis in order:
        if out_hw[axis] == in_size[axis] and scales[axis] == 1.0:
            continue
        matrix = resize_matrix(in_size[axis], out_hw[axis], scales[axis], y.device, compute_dtype)
        if axis == 0:
            y = torch.matmul(matrix, y)
        else:
            y = torch.matmul(y, matrix.t())
    return y.to(x.dtype)


def crop_to_multiple(x: torch.Tensor, factor: int | float) -> torch.Tensor:
    """Crop (..., H, W) at the bottom/right so H and W are multiples of ``factor``.

    A non-integer factor is rounded to the nearest integer (at least 1).
    """
    step = max(1, int(round(factor)))
    height = x.shape[-2] - x.shape[-2] % step
    width = x.shape[-1] - x.shape[-1] % step
    if height == 0 or width == 0:
        raise ValueError(
            f"crop_to_multiple: frame {tuple(x.shape[-2:])} is smaller than the factor {factor}"
        )
    return x[..., :height, :width]
