"""Metrics vs an independent numpy computation of the field's convention (MATLAB BT.601 Y, 8-bit, SSIM)."""

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from stno.ops.metrics import frame_metrics, psnr, quantize_8bit, rgb_to_y, ssim


def to_uint8_hwc(frame_chw: np.ndarray) -> np.ndarray:
    """[0, 1] float (3, H, W) -> uint8 (H, W, 3), as saving a PNG does."""
    return (
        np.clip(np.round(np.clip(frame_chw, 0, 1) * 255), 0, 255)
        .astype(np.uint8)
        .transpose(1, 2, 0)
    )


def matlab_y(image_uint8_hwc: np.ndarray) -> np.ndarray:
    """MATLAB rgb2ycbcr Y on the 0..255 scale (unrounded): 16 + [65.481, 128.553, 24.966] . RGB/255."""
    rgb = image_uint8_hwc.astype(np.float64) / 255.0
    return rgb @ np.array([65.481, 128.553, 24.966]) + 16.0


def numpy_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def numpy_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. SSIM on one 2-D channel, 0..255, fspecial('gaussian', 11, 1.5), 'valid'."""
    ax = np.arange(11) - 5.0
    g = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * 1.5**2))
    g /= g.sum()

    def filt(img):
        windows = sliding_window_view(img, (11, 11))
        return np.einsum("ijkl,kl->ij", windows, g)

    a = a.astype(np.float64)
    b = b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return float(ssim_map.mean())


@pytest.mark.parametrize("crop_border", [0, 3])
def test_frame_metrics_match_numpy(crop_border):
    rng = np.random.default_rng(0)
    target = rng.random((2, 3, 23, 30))
    pred = np.clip(target + rng.normal(0, 0.05, target.shape), -0.1, 1.1)  # out of range: clamped
    result = frame_metrics(
        torch.from_numpy(pred).float(), torch.from_numpy(target).float(), crop_border
    )
    assert set(result) == {"psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb"}
    for value in result.values():
        assert value.shape == (2,) and value.dtype == torch.float64
    for i in range(2):
        p8 = to_uint8_hwc(pred[i].astype(np.float32))
        t8 = to_uint8_hwc(target[i].astype(np.float32))
        if crop_border:
            p8 = p8[crop_border:-crop_border, crop_border:-crop_border]
            t8 = t8[crop_border:-crop_border, crop_border:-crop_border]
        py, ty = matlab_y(p8), matlab_y(t8)
        assert abs(result["psnr_y"][i].item() - numpy_psnr(py, ty)) < 1e-6
        assert abs(result["ssim_y"][i].item() - numpy_ssim(py, ty)) < 1e-6
        assert abs(result["psnr_rgb"][i].item() - numpy_psnr(p8, t8)) < 1e-6
        ssim_rgb = np.mean([numpy_ssim(p8[..., c], t8[..., c]) for c in range(3)])
        assert abs(result["ssim_rgb"][i].item() - ssim_rgb) < 1e-6


def test_y_range_and_known_values():
    black_white = torch.tensor([0.0, 1.0]).view(2, 1, 1, 1).expand(2, 3, 1, 1)
    y = rgb_to_y(black_white)
    assert y.shape == (2, 1, 1, 1)
    assert torch.allclose(y.flatten(), torch.tensor([16.0, 235.0], dtype=torch.float64))
    assert quantize_8bit(torch.tensor([-0.2, 0.5, 0.501, 1.3])).tolist() == [
        0.0,
        128.0,
        128.0,
        255.0,
    ]


def test_psnr_known_value_and_identity():
    a = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    b = torch.full_like(a, 2.55)  # MSE = 2.55^2 -> PSNR = 20 log10(100) = 40 dB
    assert abs(psnr(a, b).item() - 40.0) < 1e-9
    frames = torch.rand(2, 3, 16, 16)
    same = frame_metrics(frames, frames)
    assert torch.isinf(same["psnr_y"]).all() and torch.allclose(
        same["ssim_rgb"], torch.ones(2, dtype=torch.float64)
    )


def test_bad_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        frame_metrics(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 15))
    with pytest.raises(ValueError, match="at least 11"):
        ssim(torch.rand(1, 1, 8, 20), torch.rand(1, 1, 8, 20))
