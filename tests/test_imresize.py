"""MATLAB-compatible bicubic vs an independent loop-based numpy version of the published algorithm."""

import math

import numpy as np
import pytest
import torch

from stno.ops.imresize import crop_to_multiple, imresize


def keys_cubic(d: float) -> float:
    """Keys (1981) cubic convolution, a = -0.5."""
    a = -0.5
    d = abs(d)
    if d <= 1:
        return (a + 2) * d**3 - (a + 3) * d**2 + 1
    if d < 2:
        return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
    return 0.0


def mirror_index(i: int, n: int) -> int:
    """0-based symmetric extension: ... 1 0 | 0 1 ... n-1 | n-1 n-2 ..."""
    period = 2 * n
    i = i % period
    return i if i < n else period - 1 - i


def resize_axis_reference(line: np.ndarray, out_len: int, scale: float) -> np.ndarray:
    """Resize one 1-D signal: output pixel j (0-based) sits at input coordinate (j + 0.5) / scale - 0.5."""
    n = len(line)
    out = np.zeros(out_len)
    shrink = min(scale, 1.0)  # the kernel is stretched by 1/scale when downscaling
    support = 2.0 / shrink
    for j in range(out_len):
        centre = (j + 0.5) / scale - 0.5
        total = 0.0
        weight_sum = 0.0
        for i in range(math.floor(centre - support) - 1, math.ceil(centre + support) + 2):
            w = shrink * keys_cubic(shrink * (centre - i))
            total += w * line[mirror_index(i, n)]
            weight_sum += w
        out[j] = total / weight_sum
    return out


def imresize_reference(image: np.ndarray, out_hw, scales) -> np.ndarray:
    """(C, H, W) float64; the axis with the smaller scale is resized first, as MATLAB."""
    order = [0, 1] if scales[0] <= scales[1] else [1, 0]
    result = image
    for axis in order:
        c, h, w = result.shape
        if axis == 0:
            new = np.zeros((c, out_hw[0], w))
            for ch in range(c):
                for x in range(w):
                    new[ch, :, x] = resize_axis_reference(result[ch, :, x], out_hw[0], scales[0])
        else:
            new = np.zeros((c, h, out_hw[1]))
            for ch in range(c):
                for y in range(h):
                    new[ch, y, :] = resize_axis_reference(result[ch, y, :], out_hw[1], scales[1])
        result = new
    return result


@pytest.mark.parametrize(
    "size,scale",
    [((24, 32), 1 / 4), ((20, 18), 1 / 2), ((21, 27), 1 / 3), ((9, 11), 2.0), ((7, 10), 2.7)],
)
def test_scale_matches_reference(size, scale):
    rng = np.random.default_rng(0)
    image = rng.random((3, *size))
    out = imresize(torch.from_numpy(image).float(), scale=scale)
    expected_hw = (math.ceil(size[0] * scale - 1e-9), math.ceil(size[1] * scale - 1e-9))
    assert out.shape == (3, *expected_hw)
    reference = imresize_reference(image, expected_hw, (scale, scale))
    assert np.abs(out.double().numpy() - reference).max() < 1e-4


@pytest.mark.parametrize(
    "size,out_hw", [((37, 53), (13, 20)), ((13, 20), (37, 53)), ((16, 30), (40, 11))]
)
def test_out_size_matches_reference(size, out_hw):
    rng = np.random.default_rng(1)
    image = rng.random((2, *size))
    out = imresize(torch.from_numpy(image), out_size=out_hw)
    assert out.dtype == torch.float64 and out.shape == (2, *out_hw)
    scales = (out_hw[0] / size[0], out_hw[1] / size[1])
    reference = imresize_reference(image, out_hw, scales)
    assert np.abs(out.numpy() - reference).max() < 1e-4


def test_batched_leading_dims_and_known_values():
    rng = np.random.default_rng(2)
    frames = torch.from_numpy(rng.random((2, 3, 3, 12, 8))).float()
    out = imresize(frames, scale=0.5)
    assert out.shape == (2, 3, 3, 6, 4)
    single = imresize(frames[1, 2], scale=0.5)
    assert torch.allclose(out[1, 2], single, atol=1e-6)
    # Away from the borders a symmetric kernel keeps a linear ramp: pixel j lands on 2j + 0.5.
    ramp = torch.arange(16, dtype=torch.float64).view(1, 1, 16).expand(1, 4, 16)
    down = imresize(ramp, scale=0.5)[0, 0]
    assert torch.allclose(
        down[2:-2], torch.arange(16, dtype=torch.float64)[4:-4:2] + 0.5, atol=1e-9
    )


def test_constant_image_stays_constant():
    image = torch.full((3, 23, 31), 0.37)
    for kwargs in ({"scale": 0.25}, {"scale": 3.3}, {"out_size": (10, 47)}):
        out = imresize(image, **kwargs)
        assert torch.allclose(out, torch.full_like(out, 0.37), atol=1e-6)


def test_bad_arguments():
    image = torch.rand(3, 8, 8)
    with pytest.raises(ValueError, match="exactly one"):
        imresize(image)
    with pytest.raises(ValueError, match="positive"):
        imresize(image, scale=-1)
    with pytest.raises(ValueError, match="float"):
        imresize(torch.zeros(3, 8, 8, dtype=torch.uint8), scale=0.5)


def test_crop_to_multiple():
    x = torch.rand(2, 3, 130, 67)
    assert crop_to_multiple(x, 4).shape == (2, 3, 128, 64)
    assert crop_to_multiple(x, 1).shape == x.shape
    with pytest.raises(ValueError):
        crop_to_multiple(torch.rand(3, 2, 2), 4)


def test_interior_matches_pillow():
    """Pillow's BICUBIC uses the same kernel (a = -0.5, stretched when shrinking) and pixel centres;
    it only treats borders differently, so away from the borders both must agree."""
    image_module = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(3)
    image = rng.random((40, 60)).astype(np.float32)
    for out_hw in ((10, 15), (20, 30), (13, 23), (80, 120)):
        pil = image_module.fromarray(image, mode="F").resize(
            (out_hw[1], out_hw[0]), image_module.Resampling.BICUBIC
        )
        expected = np.asarray(pil, dtype=np.float64)
        ours = imresize(torch.from_numpy(image)[None], out_size=out_hw)[0].double().numpy()
        margin = max(2, math.ceil(4 * out_hw[0] / 40))  # beyond the kernel's reach of the border
        interior = (slice(margin, -margin), slice(margin, -margin))
        assert np.abs(ours[interior] - expected[interior]).max() < 1e-4
