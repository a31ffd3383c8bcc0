"""The inference fast paths give the same result as the general (autograd) paths."""

import pytest
import torch
import torch.nn.functional as F

from stno.nn import ContinuousDecoder
from stno.nn.propagation import ResidualTrunk


def _tiled(decoder, feat, size, skip=None, max_queries=None):
    """The tiled path: taken whenever autograd records (here: parameters require grad)."""
    with torch.enable_grad():
        return decoder(feat, size, max_queries=max_queries, skip=skip).detach()


@pytest.mark.parametrize("size", [(36, 52), (31, 40), (11, 13), (40, 7), (9, 13), (27, 39)])
@pytest.mark.parametrize("band_pixels", [1, 60, 500, 20480])
def test_band_decoding_equals_tiled_decoding(size, band_pixels):
    torch.manual_seed(0)
    decoder = ContinuousDecoder(in_channels=6, hidden=16).double()
    decoder.band_pixels = band_pixels
    feat = torch.randn(3, 6, 9, 13, dtype=torch.float64)
    skip = torch.rand(3, 3, 9, 13, dtype=torch.float64)
    want = _tiled(decoder, feat, size, skip)
    with torch.no_grad():
        got = decoder(feat, size, skip=skip)
        chunked = decoder(feat, size, max_queries=17, skip=skip)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(chunked, want, rtol=1e-10, atol=1e-10)


def test_skip_is_added_bilinearly_upsampled():
    torch.manual_seed(1)
    decoder = ContinuousDecoder(in_channels=4, hidden=8).double()
    feat = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    skip = torch.rand(2, 3, 5, 6, dtype=torch.float64)
    with torch.no_grad():
        got = decoder(feat, (17, 23), skip=skip)
        want = decoder(feat, (17, 23)) + F.interpolate(
            skip, size=(17, 23), mode="bilinear", align_corners=False
        )
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_band_decoding_under_bf16_autocast_is_close_to_fp32():
    torch.manual_seed(2)
    decoder = ContinuousDecoder(in_channels=8, hidden=32).eval()
    feat = torch.randn(2, 8, 12, 20) * 0.3
    with torch.no_grad():
        full = decoder(feat, (48, 80))
        with torch.autocast("cpu", torch.bfloat16):
            half = decoder(feat.bfloat16(), (48, 80))
    assert half.dtype == torch.float32
    assert (half - full).abs().max() < 0.02


@pytest.mark.parametrize("slopes", [1, 8])  # one PReLU slope (in place) or one per channel
def test_inference_trunk_equals_training_trunk(slopes):
    torch.manual_seed(3)
    trunk = ResidualTrunk(7, 8, 2)
    for block in trunk.body[2:]:
        block.act = torch.nn.PReLU(slopes, init=0.1)
        block.act.weight.data.uniform_(-0.5, 0.5)
    parts = [torch.randn(2, 3, 10, 14), torch.randn(2, 4, 10, 14)]
    with torch.no_grad():
        fast = trunk(parts)
    slow = trunk(parts).detach()
    assert fast.is_contiguous(memory_format=torch.channels_last)  # what the decoder reads
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_inference_trunk_under_bf16_autocast_equals_training_trunk():
    torch.manual_seed(4)
    trunk = ResidualTrunk(7, 8, 2)
    parts = [torch.randn(1, 3, 9, 11), torch.randn(1, 4, 9, 11).bfloat16()]
    with torch.autocast("cpu", torch.bfloat16):
        with torch.no_grad():
            fast = trunk(parts)
        slow = trunk(parts).detach()
    assert fast.dtype == slow.dtype == torch.bfloat16
    torch.testing.assert_close(fast.float(), slow.float(), rtol=2e-2, atol=2e-2)
