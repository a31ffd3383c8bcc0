"""Motion stage: intermediate-frame synthesis with whole-frame Galerkin cross-attention.

For every pair of neighbouring LR frames (I0, I1) and every requested timestamp t it estimates
the flows t->0 and t->1, an occlusion mask and a residual, and synthesises the LR frame at t.
It also returns the flows 0->1 and 1->0 that the propagation stage warps its hidden state with.

Design (IFRNet / EMA-VFI lineage, as in the STNO paper):
- a 3-level conv pyramid (1/2, 1/4, 1/8) per frame;
- at 1/8 and 1/4, cross-frame Galerkin attention over the *whole* feature map: queries from one
  frame, keys and values from the other. A second branch attends over an embedding of pixel
  coordinates and subtracts the query's own embedding: "where does this pixel go" as a feature;
- coarse-to-fine decoders: 1/8 -> 1/4 -> 1/2 -> full LR size.

Everything that does not depend on t (the pyramids and the 1/8 attention, whose keys/values per
frame are shared by the two pairs a frame belongs to) is computed once per clip; the decoders
run once for all timestamps, which are folded into the batch axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from einops import rearrange, repeat
from torch import nn

from stno.ops.warping import (
    backward_warp,
    full_precision,
    resize_flow,
)

from .motion_layers import CrossFrameMotionBlock, FeaturePyramid, FlowDecoder

__all__ = ["FeaturePyramid", "CrossFrameMotionBlock", "MotionEstimator", "MotionEstimate"]


@dataclass
class MotionEstimate:
    """Result of :class:`MotionEstimator` for P = B*(T-1) pairs and n timestamps.

    Shapes (LR size h, w; pixels; flows in (x, y) order):
        frames: (n, P, 3, h, w) synthesised frames in [0, 1];
        flow_t0, flow_t1: (n, P, 2, h, w) flows from the frame at t to frame 0 / frame 1;
        flow_01, flow_10: (P, 2, h, w) flows 0->1 and 1->0 (taken at t = 0.5, see MotionEstimator);
        mask: (n, P, 1, h, w) occlusion mask in [0, 1], the weight of warped frame 0 in the blend;
        flow_01_per_t, flow_10_per_t: None, or (n, P, 2, h, w) the 0<->1 flows estimated at each
            timestamp (``flows_at_t``): the propagation then runs once per timestamp.
    """

    frames: torch.Tensor
    flow_t0: torch.Tensor
    flow_t1: torch.Tensor
    flow_01: torch.Tensor
    flow_10: torch.Tensor
    mask: torch.Tensor
    flow_01_per_t: torch.Tensor | None = None
    flow_10_per_t: torch.Tensor | None = None


class MotionEstimator(nn.Module):
    """Estimates flows and synthesises intermediate LR frames for all pairs and timestamps.

    Args:
        pyramid_channels: channels at 1/2, 1/4, 1/8.
        decoder_widths: widths of the decoders at 1/2, 1/4, 1/8.
        residual_channels: channels of the learned residual fused with the warped frames.
        attn_dim, heads, mlp_ratio: the cross-frame attention blocks at 1/8 and 1/4.

    The 0<->1 flows used by the propagation are always read from the t = 0.5 estimate (the
    estimate is added to the batch when 0.5 is not requested), so the output at any timestamp
    does not depend on which other timestamps are requested in the same call.

    Switches that restore the reference code's behaviour (all off by default; see also
    :class:`CrossFrameMotionBlock`):
        pair_centring: subtract the mean brightness of each frame *pair* (the reference) rather
            than of the whole clip; a frame's pyramid is then computed once per pair it is in.
        flows_at_t: estimate the 0<->1 flows at each requested timestamp (the reference, which
            runs one timestamp per pass) rather than at t = 0.5. The result carries them per
            timestamp; the input frames use those of the requested timestamp nearest 0.5 (the
            first of two equally near), and t = 0.5 when no timestamp is requested.
        synthesis_prelu: the synthesis head is ``clamp(PReLU(conv([merge, res])))`` (the
            reference) instead of ``clamp(merge + conv([merge, res]))``. With PReLU slopes >= 0
            the two are the same function (``conv`` minus the identity on ``merge``), which is
            how ``stno-convert`` folds the reference's head into ours.
    """

    def __init__(
        self,
        pyramid_channels: Sequence[int] = (36, 54, 72),
        decoder_widths: Sequence[int] = (108, 162, 144),
        residual_channels: int = 29,
        attn_dim: int = 128,
        heads: int = 8,
        mlp_ratio: float = 4.0,
        *,
        pair_centring: bool = False,
        flows_at_t: bool = False,
        synthesis_prelu: bool = False,
        **block_switches: bool,
    ):
        super().__init__()
        c1, c2, c3 = pyramid_channels
        w1, w2, w3 = decoder_widths
        a = attn_dim
        self.pair_centring = pair_centring
        self.flows_at_t = flows_at_t
        self.pyramid = FeaturePyramid(pyramid_channels)
        self.attn8 = CrossFrameMotionBlock(c3, a, heads, mlp_ratio, **block_switches)
        self.attn4 = CrossFrameMotionBlock(c2, a, heads, mlp_ratio, **block_switches)
        # 8 flow channels: t->0, 1->0, t->1, 0->1
        self.decoder8 = FlowDecoder(4 * a + 2 * c3 + 1, w3, 8 + c2)
        self.decoder4 = FlowDecoder(c2 + 2 * (c2 + a) + 2 * (2 + a), w2, 8 + c1)
        self.decoder2 = FlowDecoder(c1 + 2 * c1 + 4, w1, 8 + 1 + residual_channels)
        # a correction of the mask-blended warped frames; a plain conv, because an activation
        # before the final clamp to [0, 1] would have no gradient on its negative side
        self.fuse = nn.Conv2d(3 + residual_channels, 3, 3, 1, 1)
        # only built when asked for, so other presets keep their weights
        self.fuse_act = nn.PReLU(3) if synthesis_prelu else None

    def forward(self, frames: torch.Tensor, times: Sequence[float]) -> MotionEstimate:
        """frames: (B, T, 3, h, w) in [0, 1], h and w multiples of 8; times: n floats in (0, 1)."""
        b, t_in = frames.shape[:2]
        h, w = frames.shape[-2:]
        per_t_flows = self.flows_at_t and len(times) > 0
        if per_t_flows:
            all_times = list(times)
            mid = min(range(len(times)), key=lambda i: abs(times[i] - 0.5))
        else:
            all_times = list(times) if 0.5 in times else [*times, 0.5]
            mid = all_times.index(0.5)
        n = len(all_times)

        def first(x):  # first frame of every pair: (b, t, ...) -> (b*p, ...)
            return rearrange(x[:, :-1], "b p ... -> (b p) ...")

        def second(x):
            return rearrange(x[:, 1:], "b p ... -> (b p) ...")

        if self.pair_centring:
            # one offset per pair: each frame is centred (and its pyramid computed) once per pair
            frame_mean = frames.mean(dim=(2, 3, 4), keepdim=True)
            offset = (first(frame_mean) + second(frame_mean)) / 2
            img0, img1 = first(frames) - offset, second(frames) - offset
            f0_2, f0_4, f0_8 = self.pyramid(img0)
            f1_2, f1_4, f1_8 = self.pyramid(img1)
            a0, a1, m0, m1 = self._attend_pairs(self.attn8, f0_8, f1_8, b)
        else:
            # one brightness offset per clip, so every frame's pyramid is computed once and shared
            # by the two pairs it belongs to; it is added back to the synthesised frames
            clip_mean = frames.mean(dim=(1, 2, 3, 4), keepdim=True)
            centred = frames - clip_mean
            levels = self.pyramid(rearrange(centred, "b t c y x -> (b t) c y x"))
            f_2, f_4, f_8 = (rearrange(f, "(b t) c y x -> b t c y x", b=b) for f in levels)
            offset = repeat(clip_mean.reshape(b, 1, 1, 1), "b c y x -> (b p) c y x", p=t_in - 1)

            img0, img1 = first(centred), second(centred)
            # whole-frame attention at 1/8 over all frames at once: t-independent, keys/values per
            # frame
            a0, a1, m0, m1 = (rearrange(y, "b p ... -> (b p) ...") for y in self.attn8(f_8))
            f0_8, f1_8 = first(f_8), second(f_8)
            f0_4, f1_4 = first(f_4), second(f_4)
            f0_2, f1_2 = first(f_2), second(f_2)

        tmap = torch.tensor(all_times, device=frames.device, dtype=frames.dtype)
        tmap = repeat(tmap, "n -> (n m) 1 y x", m=img0.shape[0], y=h // 8, x=w // 8)
        tw = tmap[:, :1, :1, :1]

        def per_t(x):  # fold the timestamps into the batch: (m, ...) -> (n*m, ...)
            return repeat(x, "m ... -> (n m) ...", n=n)

        x8 = torch.cat(
            [
                tw * per_t(m0),
                (1 - tw) * per_t(m1),
                per_t(f0_8),
                per_t(a0),
                per_t(f1_8),
                per_t(a1),
                tmap,
            ],
            1,
        )
        out = self.decoder8(x8)
        flows, feat = full_precision(out[:, :8]), out[:, 8:]

        f0_4n, f1_4n = per_t(f0_4), per_t(f1_4)
        w0 = backward_warp(f0_4n, flows[:, 0:2])
        w1 = backward_warp(f1_4n, flows[:, 4:6])
        a0, a1, m0, m1 = self._attend_pairs(self.attn4, w0, w1, b * n)
        out = self.decoder4(
            torch.cat([feat, w0, a0, w1, a1, flows[:, 0:2], m0, flows[:, 4:6], m1], 1)
        )
        flows, feat = out[:, :8] + resize_flow(flows), out[:, 8:]

        f0_2n, f1_2n = per_t(f0_2), per_t(f1_2)
        w0 = backward_warp(f0_2n, flows[:, 0:2])
        w1 = backward_warp(f1_2n, flows[:, 4:6])
        out = self.decoder2(torch.cat([feat, w0, w1, flows[:, 0:2], flows[:, 4:6]], 1))
        flows = out[:, :8] + resize_flow(flows)
        mask = torch.sigmoid(out[:, 8:9])
        residual = out[:, 9:]

        warped0 = backward_warp(per_t(img0), flows[:, 0:2])
        warped1 = backward_warp(per_t(img1), flows[:, 4:6])
        merged = mask * warped0 + (1 - mask) * warped1
        merged = merged + repeat(offset, "m c y x -> (n m) c y x", n=n)
        if self.fuse_act is not None:
            synth = self.fuse_act(self.fuse(torch.cat([merged, residual], 1))).clamp(0, 1)
        else:
            synth = (merged + self.fuse(torch.cat([merged, residual], 1))).clamp(0, 1)

        split = "(n m) c y x -> n m c y x"
        flows = rearrange(flows, split, n=n)
        keep = [i for i in range(n) if all_times[i] in times]
        keep_idx = torch.tensor(keep, device=frames.device, dtype=torch.long)
        return MotionEstimate(
            frames=rearrange(synth, split, n=n)[keep_idx],
            flow_t0=flows[keep_idx, :, 0:2],
            flow_t1=flows[keep_idx, :, 4:6],
            flow_01=flows[mid, :, 6:8],
            flow_10=flows[mid, :, 2:4],
            mask=rearrange(mask, split, n=n)[keep_idx],
            flow_01_per_t=flows[:, :, 6:8] if per_t_flows else None,
            flow_10_per_t=flows[:, :, 2:4] if per_t_flows else None,
        )

    @staticmethod
    def _attend_pairs(
        block: CrossFrameMotionBlock, first: torch.Tensor, second: torch.Tensor, groups: int
    ):
        """Run a cross-frame block on M pairs given as two (M, C, h, w) stacks."""
        pairs = torch.stack([first, second], dim=1)  # (M, 2, C, h, w): each pair its own clip
        a0, a1, m0, m1 = block(pairs)
        squeeze = "m 1 c y x -> m c y x"
        return (
            rearrange(a0, squeeze),
            rearrange(a1, squeeze),
            rearrange(m0, squeeze),
            rearrange(m1, squeeze),
        )
