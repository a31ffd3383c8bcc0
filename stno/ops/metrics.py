"""PSNR and SSIM in the convention ST-VSR papers report (MATLAB / BasicSR style).

Convention, step by step, for a prediction and a target RGB frame in [0, 1]:

1. Both are quantised to 8 bits: ``round(clamp(x, 0, 1) * 255)`` (what saving a PNG does).
2. Y channel: ITU-R BT.601 studio range as MATLAB's ``rgb2ycbcr``:
   ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` with R, G, B in [0, 1], so Y is in [16, 235]
   on the 0..255 scale. Y is not rounded again (as the Python ports of the MATLAB scripts).
   kornia's ``rgb_to_ycbcr`` is full range and gives other numbers: it is not used.
3. ``crop_border`` pixels are removed on every side (0 by default).
4. PSNR = ``10 log10(255^2 / MSE)`` with data range 255, per frame (RGB: MSE over all three
   channels together).
5. SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255,
   'valid' filtering (no padding: the SSIM map is (H-10) x (W-10)), mean of the map.
   RGB SSIM is the mean over channels of the per-channel SSIM.

Everything is computed in float64.
"""

from __future__ import annotations

import torch

from stno.errors import ConfigError

__all__ = ["quantize_8bit", "rgb_to_y", "psnr", "ssim", "frame_metrics"]

_Y_WEIGHTS = (65.481, 128.553, 24.966)
_SSIM_SIZE = 11
_SSIM_SIGMA = 1.5


def quantize_8bit(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> float64 tensor of integers in [0, 255] (``round(clamp(x) * 255)``)."""
    return torch.round(x.detach().to(torch.float64).clamp(0.0, 1.0) * 255.0)


def rgb_to_y(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> (..., 1, H, W) BT.601 studio-range Y in [16, 235] (0..255 scale)."""
    if rgb.shape[-3] != 3:
        raise ValueError(f"rgb_to_y: expected 3 channels in dim -3, got shape {tuple(rgb.shape)}")
    rgb = rgb.to(torch.float64)
    y = (
        16.0
        + _Y_WEIGHTS[0] * rgb[..., 0, :, :]
        + _Y_WEIGHTS[1] * rgb[..., 1, :, :]
        + _Y_WEIGHTS[2] * rgb[..., 2, :, :]
    )
    return y.unsqueeze(-3)


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 255.0) -> torch.Tensor:
    """(N, ...) and (N, ...) -> (N,) float64 PSNR in dB over all non-batch elements (inf if equal)."""
    _check_same_shape(a, b)
    diff = a.to(torch.float64) - b.to(torch.float64)
    mse = diff.reshape(diff.shape[0], -1).pow(2).mean(dim=1)
    return 10.0 * torch.log10(data_range**2 / mse)


def _gaussian_window(device) -> torch.Tensor:
    coords = torch.arange(_SSIM_SIZE, dtype=torch.float64, device=device) - (_SSIM_SIZE - 1) / 2
    g = torch.exp(-(coords**2) / (2 * _SSIM_SIGMA**2))
    g = g / g.sum()
    return g


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 255.0) -> torch.Tensor:
    """(N, C, H, W) and (N, C, H, W) -> (N, C) float64 SSIM per channel ('valid' 11x11 Gaussian).

    H and W must be at least 11.
    """
    _check_same_shape(a, b)
    if a.dim() != 4:
        raise ValueError(f"ssim: expected (N, C, H, W), got shape {tuple(a.shape)}")
    n, c, h, w = a.shape
    if h < _SSIM_SIZE or w < _SSIM_SIZE:
        raise ValueError(f"ssim: frames must be at least {_SSIM_SIZE}x{_SSIM_SIZE}, got {h}x{w}")
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    g = _gaussian_window(a.device).tolist()
    out_h, out_w = h - _SSIM_SIZE + 1, w - _SSIM_SIZE + 1

    def blur(x: torch.Tensor) -> torch.Tensor:
        # Separable valid filtering of every channel independently, as shifted multiply-adds:
        # float64 convolutions take a slow generic path on CPU (10x slower than this).
        x = x.reshape(n * c, h, w)
        rows = sum(weight * x[:, k : k + out_h, :] for k, weight in enumerate(g))
        return sum(weight * rows[:, :, k : k + out_w] for k, weight in enumerate(g))

    x = a.to(torch.float64)
    y = b.to(torch.float64)
    mu_x, mu_y = blur(x), blur(y)
    sigma_xx = blur(x * x) - mu_x**2
    sigma_yy = blur(y * y) - mu_y**2
    sigma_xy = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (sigma_xx + sigma_yy + c2)
    )
    return ssim_map.mean(dim=(-2, -1)).reshape(n, c)


def frame_metrics(
    pred: torch.Tensor, target: torch.Tensor, crop_border: int = 0
) -> dict[str, torch.Tensor]:
    """Per-frame metrics of (N, 3, H, W) RGB frames in [0, 1].

    Returns a dict of (N,) float64 tensors on the input's device: ``psnr_y``, ``ssim_y`` (dB / [-1, 1],
    Y channel), ``psnr_rgb``, ``ssim_rgb`` (RGB), in the convention of the module docstring.
    """
    _check_same_shape(pred, target)
    if pred.dim() != 4 or pred.shape[1] != 3:
        raise ValueError(f"frame_metrics: expected (N, 3, H, W), got shape {tuple(pred.shape)}")
    if crop_border < 0 or 2 * crop_border >= min(pred.shape[-2:]):
        raise ConfigError(
            f"frame_metrics: crop_border {crop_border} is too large for {tuple(pred.shape[-2:])}"
        )
    pred_q = quantize_8bit(pred)
    target_q = quantize_8bit(target)
    pred_y = rgb_to_y(pred_q / 255.0)
    target_y = rgb_to_y(target_q / 255.0)
    if crop_border > 0:
        crop = (..., slice(crop_border, -crop_border), slice(crop_border, -crop_border))
        pred_q, target_q, pred_y, target_y = (
            pred_q[crop],
            target_q[crop],
            pred_y[crop],
            target_y[crop],
        )
    return {
        "psnr_y": psnr(pred_y, target_y),
        "ssim_y": ssim(pred_y, target_y)[:, 0],
        "psnr_rgb": psnr(pred_q, target_q),
        "ssim_rgb": ssim(pred_q, target_q).mean(dim=1),
    }


def _check_same_shape(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"metrics: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.dim() < 1 or a.shape[0] == 0:
        raise ValueError("metrics: empty batch")
