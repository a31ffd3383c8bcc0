"""The whole STNO network: shapes, gradients, chunked decoding, argument checks, presets."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from stno.nn import STNO, BicubicBlend, ContinuousDecoder, backward_warp

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"


def preset(name: str, **overrides) -> STNO:
    cfg = OmegaConf.load(CONF / f"{name}.yaml").net
    return instantiate(cfg, **overrides)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return preset("stno_tiny", num_blocks=1).eval()


@pytest.mark.parametrize(
    "t_in,times,scale",
    [
        (2, [0.5], 1.0),
        (3, [0.25, 0.5, 0.75], 2.7),
        (4, [0.5], 4.0),
        (2, [0.2, 0.4, 0.9], 6.0),
        (3, [], 4.0),
    ],
)
def test_output_shapes_at_odd_sizes_and_scales(tiny, t_in, times, scale):
    h, w = 37, 53
    out_size = (round(h * scale), round(w * scale))
    frames = torch.rand(2, t_in, 3, h, w)
    with torch.no_grad():
        out = tiny(frames, times, out_size)
    assert out.shape == (2, t_in + (t_in - 1) * len(times), 3, *out_size)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_a_timestamp_does_not_depend_on_the_others_requested(tiny):
    frames = torch.rand(1, 2, 3, 24, 40)
    with torch.no_grad():
        single = tiny(frames, [0.5], (48, 80))
        several = tiny(frames, [0.25, 0.5, 0.75], (48, 80))
    torch.testing.assert_close(several[:, [0, 2, 4]], single, atol=1e-5, rtol=1e-5)


def test_batch_items_are_independent(tiny):
    frames = torch.rand(2, 3, 3, 16, 24)
    with torch.no_grad():
        both = tiny(frames, [0.5], (40, 60))
        first = tiny(frames[:1], [0.5], (40, 60))
    torch.testing.assert_close(both[:1], first, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attn_blocks", [0, 1])
def test_every_parameter_receives_a_gradient(attn_blocks):
    torch.manual_seed(0)
    net = preset("stno_tiny", num_blocks=2, decoder_attn_blocks=attn_blocks, image_residual=False)
    frames = torch.rand(1, 3, 3, 16, 16)
    out = net(frames, [0.3, 0.5], (40, 40))
    out.square().mean().backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, f"parameters without gradient: {dead}"


@pytest.mark.parametrize("attn_blocks", [0, 2])
def test_chunked_decoding_equals_unchunked(attn_blocks):
    torch.manual_seed(0)
    decoder = ContinuousDecoder(in_channels=8, hidden=32, attn_blocks=attn_blocks, heads=4).double()
    feat = torch.randn(3, 8, 9, 13, dtype=torch.float64)
    full = decoder(feat, (31, 40))
    for chunk in (1000, 777, 1):
        if chunk == 1 and attn_blocks:
            continue  # one query at a time is legal but slow with attention passes
        torch.testing.assert_close(
            decoder(feat, (31, 40), max_queries=chunk), full, rtol=1e-10, atol=1e-10
        )


def test_network_chunked_equals_unchunked(tiny):
    frames = torch.rand(1, 2, 3, 21, 19)
    with torch.no_grad():
        torch.testing.assert_close(
            tiny(frames, [0.5], (57, 51), max_queries=500),
            tiny(frames, [0.5], (57, 51)),
            atol=1e-6,
            rtol=1e-6,
        )


def test_decoder_reproduces_constant_features_exactly():
    """Constant features make every neighbour identical: the output is constant at any scale."""
    decoder = ContinuousDecoder(in_channels=4, hidden=16)
    feat = torch.ones(1, 4, 5, 7) * torch.tensor([0.3, -1.0, 2.0, 0.5]).view(1, 4, 1, 1)
    out = decoder(feat, (23, 29))  # scale 4.6 x 4.14, not integer
    interior = out[..., 3:-3, 3:-3]
    # relative coordinates vary per pixel, so only the shortcut part is constant; check finite and
    # that the bilinear shortcut branch is exact by zeroing the MLP's last layer
    with torch.no_grad():
        decoder.project[-1].weight.zero_()
        decoder.project[-1].bias.zero_()
        out = decoder(feat, (23, 29))
    assert torch.isfinite(interior).all()
    torch.testing.assert_close(out, out[..., :1, :1].expand_as(out))


def test_backward_warp_integer_shift():
    x = torch.arange(2 * 6 * 8, dtype=torch.float32).reshape(1, 2, 6, 8)
    flow = torch.zeros(1, 2, 6, 8)
    flow[:, 0] = 2  # sample two pixels to the right
    flow[:, 1] = -1  # and one up
    out = backward_warp(x, flow)
    torch.testing.assert_close(out[:, :, 1:, :-2], x[:, :, :-1, 2:])


@pytest.mark.parametrize(
    "frames_shape,times,out_size,message",
    [
        ((1, 2, 3, 8, 8), [0.5, 0.5], (16, 16), "strictly increasing"),
        ((1, 2, 3, 8, 8), [0.7, 0.3], (16, 16), "strictly increasing"),
        ((1, 2, 3, 8, 8), [1.0], (16, 16), "between 0 and 1"),
        ((1, 2, 3, 8, 8), [0.0], (16, 16), "between 0 and 1"),
        ((1, 2, 3, 8, 8), [-0.5], (16, 16), "between 0 and 1"),
        ((1, 1, 3, 8, 8), [0.5], (16, 16), "at least 2 input frames"),
        ((1, 2, 3, 8, 8), [0.5], (7, 16), "smaller than the input"),
        ((1, 2, 4, 8, 8), [0.5], (16, 16), "shape"),
    ],
)
@pytest.mark.parametrize("model", ["stno", "bicubic"])
def test_bad_arguments_raise_clear_value_errors(
    tiny, frames_shape, times, out_size, message, model
):
    net = tiny if model == "stno" else BicubicBlend()
    with pytest.raises(ValueError, match=message):
        net(torch.rand(frames_shape), times, out_size)


def test_preset_sizes():
    base = sum(p.numel() for p in preset("stno_base").parameters())
    tiny = sum(p.numel() for p in preset("stno_tiny").parameters())
    assert abs(base - 9.37e6) / 9.37e6 < 0.05, base
    assert tiny <= 1.5e6, tiny
    assert preset("stno_base").config["num_blocks"] == 30


def test_bicubic_blend_blends_linearly_in_time():
    frames = torch.stack([torch.full((3, 6, 6), 0.2), torch.full((3, 6, 6), 0.6)]).unsqueeze(0)
    out = BicubicBlend()(frames, [0.25, 0.5], (12, 18))
    assert out.shape == (1, 4, 3, 12, 18)
    expected = torch.tensor([0.2, 0.3, 0.4, 0.6]).view(1, 4, 1, 1, 1).expand_as(out)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_motion_stage_outputs_for_every_pair_and_timestamp(tiny):
    frames = torch.rand(2, 3, 3, 16, 24)  # multiples of 8, as STNO pads them
    with torch.no_grad():
        est = tiny.motion(frames, [0.2, 0.7])  # 0.5 is estimated for the 0<->1 flows, not returned
    pairs = 2 * 2
    assert est.frames.shape == (2, pairs, 3, 16, 24)
    assert est.flow_t0.shape == est.flow_t1.shape == (2, pairs, 2, 16, 24)
    assert est.flow_01.shape == est.flow_10.shape == (pairs, 2, 16, 24)
    assert est.mask.shape == (2, pairs, 1, 16, 24)
    assert 0 <= est.frames.min() and est.frames.max() <= 1
    assert 0 <= est.mask.min() and est.mask.max() <= 1


def decoder_reference(
    decoder: ContinuousDecoder, feat: torch.Tensor, H: int, W: int
) -> torch.Tensor:
    """The continuous decoder written pixel by pixel from its definition (float64, no attention).

    For each target pixel centre: its 4 nearest LR pixel centres (clamped to the image; a centre on
    an LR centre takes the pair starting there), relative
    coordinates in units of LR half-cells, area weights of the diagonally opposite neighbour,
    the cell size (clamped beyond the training scale), the lift, the pointwise MLP; plus the
    bilinear upsampling of the RGB shortcut of the features.
    """
    n, c, h, w = feat.shape
    cell = [2 / H * h * max(H / h / 4.0, 1.0), 2 / W * w * max(W / w / 4.0, 1.0)]
    out = torch.zeros(n, 3, H, W, dtype=torch.float64)
    for Y in range(H):
        y = -1 + (2 * Y + 1) / H
        py = (y + 1) * h / 2 - 0.5
        rows = [min(max(int(np.floor(py + 1e-4)) + d, 0), h - 1) for d in (0, 1)]
        for X in range(W):
            x = -1 + (2 * X + 1) / W
            px = (x + 1) * w / 2 - 0.5
            cols = [min(max(int(np.floor(px + 1e-4)) + d, 0), w - 1) for d in (0, 1)]
            rel = {}
            for a in (0, 1):
                for b in (0, 1):
                    cy = -1 + (2 * rows[a] + 1) / h
                    cx = -1 + (2 * cols[b] + 1) / w
                    rel[a, b] = ((y - cy) * h, (x - cx) * w)
            # area of the diagonally opposite rectangle over the total area; an axis whose two
            # neighbours coincide (image border) splits evenly
            dy = [abs(rel[a, 0][0]) for a in (0, 1)]
            dx = [abs(rel[0, b][1]) for b in (0, 1)]
            wy = [dy[1 - a] / sum(dy) if sum(dy) > 1e-9 else 0.5 for a in (0, 1)]
            wx = [dx[1 - b] / sum(dx) if sum(dx) > 1e-9 else 0.5 for b in (0, 1)]
            parts = []
            for a in (0, 1):
                for b in (0, 1):
                    opposite = wy[a] * wx[b]
                    parts.append(torch.tensor(rel[a, b], dtype=torch.float64).expand(n, 2))
                    parts.append(feat[:, :, rows[a], cols[b]] * opposite)
            parts.append(torch.tensor(cell, dtype=torch.float64).expand(n, 2))
            out[:, :, Y, X] = decoder.project(decoder.lift(torch.cat(parts, dim=1)))
    shortcut = decoder.shortcut(feat)
    return out + torch.nn.functional.interpolate(
        shortcut, size=(H, W), mode="bilinear", align_corners=False
    )


@pytest.mark.parametrize("size", [(11, 13), (14, 9), (40, 7)])
def test_decoder_equals_its_pixelwise_definition(size):
    torch.manual_seed(3)
    decoder = ContinuousDecoder(in_channels=5, hidden=12).double()
    feat = torch.randn(2, 5, 4, 3, dtype=torch.float64)
    with torch.no_grad():
        want = decoder_reference(decoder, feat, *size)
        for chunk in (None, 10):
            torch.testing.assert_close(decoder(feat, size, max_queries=chunk), want)


@pytest.mark.parametrize("size", [(11, 13), (37, 29), (12, 40)])
def test_sampled_query_decoding_equals_full_decoding_at_those_pixels(size):
    torch.manual_seed(4)
    decoder = ContinuousDecoder(in_channels=5, hidden=12).double()
    feat = torch.randn(3, 5, 7, 9, dtype=torch.float64)
    H, W = size
    pixels = torch.stack([torch.randperm(H * W)[:50] for _ in range(3)])
    with torch.no_grad():
        full = decoder(feat, size).flatten(2)
        sampled = decoder(feat, size, pixels=pixels)
    torch.testing.assert_close(sampled, full.gather(2, pixels.unsqueeze(1).expand(-1, 3, -1)))


def test_network_sampled_queries_equal_full_output_at_those_pixels(tiny):
    torch.manual_seed(5)
    frames = torch.rand(2, 3, 3, 13, 17)
    H, W = 41, 50  # x3.15 / x2.94: not integer
    pixels = torch.randint(H * W, (2, 5, 64))  # (B, O, Q), O = 3 inputs + 2 synthesised
    tiny.train()  # sampled queries are for training: no clamp
    try:
        with torch.no_grad():
            full = tiny(frames, [0.5], (H, W)).flatten(3)
            sampled = tiny(frames, [0.5], (H, W), pixels=pixels)
    finally:
        tiny.eval()
    want = full.gather(3, pixels.unsqueeze(2).expand(-1, -1, 3, -1))
    assert sampled.shape == (2, 5, 3, 64)
    torch.testing.assert_close(sampled, want, atol=1e-5, rtol=1e-5)


def test_training_output_is_not_clamped_so_every_parameter_learns_outside_0_1():
    torch.manual_seed(6)
    net = preset("stno_tiny", num_blocks=1).train()
    with torch.no_grad():  # push every output pixel far above 1
        net.decoder.project[-1].bias.fill_(3.0)
    frames = torch.rand(1, 2, 3, 16, 16)
    out = net(frames, [0.5], (32, 32))
    assert out.min() > 1.5  # not clamped in training
    (out - 1).square().mean().backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, f"parameters without gradient: {dead}"
    net.eval()
    with torch.no_grad():
        assert net(frames, [0.5], (32, 32)).max() <= 1  # outputs are clamped in eval mode
