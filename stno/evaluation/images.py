"""Array helpers for looking at frames: display range, nearest upscaling, error maps, and the
detailed crop of a frame (what the notebook figures of :mod:`stno.evaluation.visualize` show).

Images are (3, H, W) RGB or (H, W) grey, float in [0, 1], as torch tensors or numpy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["Box", "as_numpy", "crop", "detail_box", "error_map", "to_display", "upscale_nearest"]

Box = tuple[int, int, int, int]  # (top, left, height, width) in pixels


def as_numpy(image) -> np.ndarray:
    """A torch tensor (any device) or array-like as a float64 numpy array of the same shape."""
    if hasattr(image, "detach"):  # a torch tensor; torch itself is not imported here
        image = image.detach().cpu().double().numpy()
    return np.asarray(image, dtype=np.float64)


def to_display(image) -> np.ndarray:
    """(3, H, W) -> (H, W, 3), or (H, W) -> (H, W), float64 clipped to [0, 1] for ``imshow``."""
    array = as_numpy(image)
    if array.ndim == 3:
        if array.shape[0] != 3:
            raise ValueError(f"to_display: expected (3, H, W) or (H, W), got shape {array.shape}")
        array = array.transpose(1, 2, 0)
    elif array.ndim != 2:
        raise ValueError(f"to_display: expected (3, H, W) or (H, W), got shape {array.shape}")
    return np.clip(array, 0.0, 1.0)


def upscale_nearest(image, size: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of (3, h, w) or (h, w) to ``size`` (H, W), so LR pixels stay visible.

    Output pixel (y, x) takes input pixel ``(floor(y * h / H), floor(x * w / W))``; same layout as the input.
    """
    array = as_numpy(image)
    height, width = (int(n) for n in size)
    if height < 1 or width < 1:
        raise ValueError(f"upscale_nearest: size must be positive, got {tuple(size)}")
    h, w = array.shape[-2:]
    rows = np.arange(height) * h // height
    cols = np.arange(width) * w // width
    return array[..., rows[:, None], cols[None, :]]


def error_map(output, target) -> np.ndarray:
    """``|output - target|`` per element, float64, same shape as the inputs (in [0, 1] for images)."""
    output, target = as_numpy(output), as_numpy(target)
    if output.shape != target.shape:
        raise ValueError(f"error_map: shapes differ, {output.shape} vs {target.shape}")
    return np.abs(output - target)


def detail_box(image, size: int | Sequence[int]) -> Box:
    """The ``size`` window of ``image`` with the most texture (largest summed gradient magnitude).

    Args:
        image: (3, H, W) or (H, W) in [0, 1].
        size: window height and width (one int for a square).

    Returns:
        ``(top, left, height, width)``; the first such window in row-major order on ties.
    """
    height, width = (int(size), int(size)) if np.isscalar(size) else (int(s) for s in size)
    grey = as_numpy(image)
    grey = grey.mean(axis=0) if grey.ndim == 3 else grey
    H, W = grey.shape
    if not (1 <= height <= H and 1 <= width <= W):
        raise ValueError(f"detail_box: window {height}x{width} does not fit an image of {H}x{W}")
    gradient = np.zeros_like(grey)
    gradient[:, :-1] += np.abs(np.diff(grey, axis=1))
    gradient[:-1, :] += np.abs(np.diff(grey, axis=0))
    # Integral image: every window sum in O(1).
    integral = np.pad(gradient.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = (
        integral[height:, width:]
        - integral[:-height, width:]
        - integral[height:, :-width]
        + integral[:-height, :-width]
    )
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(top), int(left), height, width


def crop(image, box: Box) -> np.ndarray:
    """The ``box`` = (top, left, height, width) region of (3, H, W) or (H, W); same layout as the input."""
    top, left, height, width = box
    array = as_numpy(image)
    H, W = array.shape[-2:]
    if top < 0 or left < 0 or height < 1 or width < 1 or top + height > H or left + width > W:
        raise ValueError(f"crop: box {tuple(box)} is outside an image of {H}x{W}")
    return array[..., top : top + height, left : left + width]
