"""Golden values from BasicSR, the field's reference for MATLAB bicubic and Y-PSNR/SSIM.

The fixture (`tests/data/golden/`, made as its README says) holds BasicSR's outputs and the
recipe of the seeded inputs; no BasicSR code is in this repository.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stno.ops.imresize import imresize
from stno.ops.metrics import frame_metrics

GOLDEN = Path(__file__).parent / "data" / "golden"

# BasicSR's imresize works in float32 throughout (weights from float32 coordinates, float32
# products); ours in float64 agrees with BasicSR's algorithm run in float64 to 1e-13. So the
# difference is float32 rounding: measured at most 8e-7 of the value range (float32 eps is
# 1.2e-7, a few roundings over two passes of up to 18 taps). 4e-6 of the range is 32 eps; a
# wrong kernel, border or pixel-centre convention is off by more than 1e-2.
IMRESIZE_RTOL_OF_RANGE = 4e-6

# BasicSR's Y goes through float32 (`to_y_channel`: uint8 / 255 in float32, Y / 255 stored as
# float32, times 255 in float32); ours is float64. Emulating that float32 Y, ours agrees to
# 4e-15, so these bounds are that rounding: measured at most 2.3e-6 dB and 2.7e-8 SSIM.
PSNR_Y_ATOL = 1e-5
SSIM_Y_ATOL = 2e-7
# RGB metrics: both float64 on the same integers; only the summation order differs.
RGB_ATOL = 1e-9


def make_image(kind: str, seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """The fixture's input recipe: float32, uniform [0, 1) or integers 0..255."""
    rng = np.random.default_rng(seed)
    if kind == "float01":
        return rng.random(shape, dtype=np.float32)
    if kind == "uint8":
        return rng.integers(0, 256, size=shape).astype(np.float32)
    raise ValueError(f"unknown input kind {kind!r}")


def make_pair(seed: int, height: int, width: int, sigma: float | None):
    """The fixture's metric pair: uint8 (H, W, 3) RGB target, and pred = target + rounded noise
    clipped to 0..255 (or an independent uniform image when sigma is None)."""
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    if sigma is None:
        pred = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    else:
        noise = rng.normal(0.0, sigma, size=(height, width, 3))
        pred = np.clip(np.round(target + noise), 0, 255).astype(np.uint8)
    return target, pred


def _imresize_golden():
    with np.load(GOLDEN / "imresize_basicsr.npz") as data:
        manifest = json.loads(str(data["manifest"]))
        return [(case, data[case["name"]]) for case in manifest["cases"]]


def _metric_cases():
    return json.loads((GOLDEN / "metrics_basicsr.json").read_text())["cases"]


IMRESIZE_CASES = _imresize_golden()
METRIC_CASES = _metric_cases()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize(
    "case,expected", IMRESIZE_CASES, ids=[case["name"] for case, _ in IMRESIZE_CASES]
)
def test_imresize_matches_basicsr(case, expected, dtype):
    image = make_image(case["kind"], case["seed"], tuple(case["shape"]))
    # A changed numpy random stream would show here, not as a resize mismatch.
    assert image.astype(np.float64).sum() == pytest.approx(case["input_sum"], rel=1e-12)
    ours = imresize(torch.from_numpy(image).to(dtype), scale=case["scale"])
    assert list(ours.shape) == case["output_shape"] == list(expected.shape)
    value_range = 1.0 if case["kind"] == "float01" else 255.0
    error = np.abs(ours.double().numpy() - expected.astype(np.float64)).max()
    assert error <= IMRESIZE_RTOL_OF_RANGE * value_range, f"max abs difference {error:.3e}"


@pytest.mark.parametrize("crop_border", [0, 4])
@pytest.mark.parametrize("case", METRIC_CASES, ids=[case["name"] for case in METRIC_CASES])
def test_metrics_match_basicsr(case, crop_border):
    target, pred = make_pair(case["seed"], case["height"], case["width"], case["sigma"])
    assert int(target.sum(dtype=np.int64)) == case["target_sum"]
    assert int(pred.sum(dtype=np.int64)) == case["pred_sum"]

    def to_frames(image: np.ndarray) -> torch.Tensor:  # uint8 (H, W, 3) -> (1, 3, H, W) [0, 1]
        return torch.from_numpy(image).permute(2, 0, 1)[None].double() / 255.0

    ours = {
        k: float(v[0])
        for k, v in frame_metrics(to_frames(pred), to_frames(target), crop_border).items()
    }
    expected = case[f"crop{crop_border}"]
    assert ours["psnr_y"] == pytest.approx(expected["psnr_y"], rel=0, abs=PSNR_Y_ATOL)
    assert ours["ssim_y"] == pytest.approx(expected["ssim_y"], rel=0, abs=SSIM_Y_ATOL)
    assert ours["psnr_rgb"] == pytest.approx(expected["psnr_rgb"], rel=0, abs=RGB_ATOL)
    assert ours["ssim_rgb"] == pytest.approx(expected["ssim_rgb"], rel=0, abs=RGB_ATOL)
