"""STNO computes only the output frames asked for (``outputs=``) and streams them one at a time."""

import pytest
import torch

from stno.errors import ConfigError
from stno.nn import STNO

SMALL = dict(
    channels=8,
    num_blocks=1,
    pyramid_channels=[4, 6, 8],
    attn_dim=8,
    heads=2,
    mlp_ratio=1.0,
    decoder_widths=[8, 8, 8],
    residual_channels=5,
    decoder_hidden=16,
)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return STNO(**SMALL, image_residual=True).eval()


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(1)
    return torch.rand(1, 4, 3, 13, 17)


TIMES = [0.25, 0.6]  # 4 inputs -> 10 output frames


@pytest.mark.parametrize(
    "outputs", [slice(0, 3), slice(2, 9), slice(5, 10), slice(3, 4), slice(-4, None)]
)
def test_a_slice_of_outputs_equals_the_same_slice_of_all(net, clip, outputs):
    with torch.no_grad():
        full = net(clip, TIMES, (29, 40))
        part = net(clip, TIMES, (29, 40), outputs=outputs)
    assert full.shape[1] == 10
    torch.testing.assert_close(part, full[:, outputs], rtol=1e-5, atol=1e-6)


def test_stream_yields_the_frames_of_forward_one_by_one(net, clip):
    with torch.no_grad():
        full = net(clip, TIMES, (29, 40), outputs=slice(1, 8))
        frames = list(net.stream(clip, TIMES, (29, 40), outputs=range(1, 8)))
    assert [tuple(f.shape) for f in frames] == [(1, 3, 29, 40)] * 7
    torch.testing.assert_close(torch.stack(frames, 1), full, rtol=1e-5, atol=1e-6)


def test_stream_in_bf16_does_not_leave_autocast_on_between_frames(net, clip):
    with torch.no_grad():
        stream = net.stream(clip, TIMES, (29, 40), precision="bf16")
        first = next(stream)
        assert not torch.is_autocast_enabled("cpu")
        rest = list(stream)
        full = net(clip, TIMES, (29, 40), precision="bf16")
    assert first.dtype == torch.float32 and len(rest) == 9
    torch.testing.assert_close(torch.stack([first, *rest], 1), full, rtol=1e-4, atol=1e-4)


def test_reference_switches_keep_partial_outputs_exact():
    # per-timestamp recurrences and the padded decoding path select the same frames
    torch.manual_seed(2)
    net = STNO(**SMALL, flows_at_t=True, reflect_padding=True, pair_centring=True).eval()
    clip = torch.rand(1, 3, 3, 11, 14)
    with torch.no_grad():
        full = net(clip, [0.3, 0.7], (22, 28))
        part = net(clip, [0.3, 0.7], (22, 28), outputs=slice(2, 6))
    torch.testing.assert_close(part, full[:, 2:6], rtol=1e-5, atol=1e-6)


def test_space_only_outputs_select_inputs(net, clip):
    with torch.no_grad():
        full = net(clip, [], (26, 34))
        part = net(clip, [], (26, 34), outputs=slice(1, 3))
    torch.testing.assert_close(part, full[:, 1:3], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("outputs", [slice(4, 4), slice(0, 10, 2), slice(12, 14), "all"])
def test_bad_selections_say_what_is_wrong(net, clip, outputs):
    with pytest.raises(ConfigError, match="outputs"):
        net(clip, TIMES, (29, 40), outputs=outputs)
