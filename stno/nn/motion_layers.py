"""Convolutional building blocks of the motion stage (:mod:`stno.nn.motion`): the feature pyramid,
the side-channel residual block of the flow decoders, the depthwise MLP of the attention blocks,
and one coarse-to-fine decoder step, and the cross-frame Galerkin attention block."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn

from stno.errors import ConfigError
from stno.ops.warping import coordinate_grid, corner_aligned_grid

from .attention import HeadLayerNorm, galerkin_attend

__all__ = [
    "CrossFrameMotionBlock",
    "DepthwiseMlp",
    "FeaturePyramid",
    "FlowDecoder",
    "SideChannelResBlock",
    "conv_prelu",
]


def conv_prelu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.PReLU(cout))


class FeaturePyramid(nn.Module):
    """Three levels of two 3x3 convs + PReLU each: (N, 3, h, w) -> maps at 1/2, 1/4, 1/8."""

    def __init__(self, channels: Sequence[int] = (36, 54, 72)):
        super().__init__()
        levels, cin = [], 3
        for c in channels:
            levels.append(nn.Sequential(conv_prelu(cin, c, stride=2), conv_prelu(c, c)))
            cin = c
        self.levels = nn.ModuleList(levels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for level in self.levels:
            x = level(x)
            out.append(x)
        return out


class SideChannelResBlock(nn.Module):
    """Residual block whose last ``side`` channels get extra 3x3 convs (IFRNet style).

    The side channels carry the coarse flow estimate and intermediate features; refining them
    separately is cheap and sharpens the flow decoder.
    """

    def __init__(self, channels: int, side: int = 24):
        super().__init__()
        self.side = min(side, channels)
        self.conv1 = conv_prelu(channels, channels)
        self.side1 = conv_prelu(self.side, self.side)
        self.conv2 = conv_prelu(channels, channels)
        self.side2 = conv_prelu(self.side, self.side)
        self.conv3 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.act = nn.PReLU(channels)

    def _refine_side(self, x: torch.Tensor, conv: nn.Module) -> torch.Tensor:
        main, side = x[:, : -self.side], x[:, -self.side :]
        return torch.cat([main, conv(side)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._refine_side(self.conv1(x), self.side1)
        y = self._refine_side(self.conv2(y), self.side2)
        return self.act(x + self.conv3(y))


class DepthwiseMlp(nn.Module):
    """Token MLP with a depthwise 3x3 conv between the two linear maps (positional mixing)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = rearrange(self.fc1(x), "n (y x) c -> n c y x", y=h, x=w)
        x = rearrange(self.dwconv(x), "n c y x -> n (y x) c")
        return self.fc2(self.act(x))


class FlowDecoder(nn.Module):
    """conv + side-channel residual block + 2x transposed conv: one coarse-to-fine step."""

    def __init__(self, in_channels: int, width: int, out_channels: int):
        super().__init__()
        self.body = nn.Sequential(
            conv_prelu(in_channels, width),
            SideChannelResBlock(width, 24),
            nn.ConvTranspose2d(width, out_channels, 4, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class CrossFrameMotionBlock(nn.Module):
    """Whole-frame cross-frame Galerkin attention with a coordinate (motion) branch.

    Input: ``frames`` (B, F, C, h, w), F >= 2 frames in time order. Frame i attends to frame i+1
    (as the first frame of pair i) and to frame i-1 (as the second frame of pair i-1). The key/value
    statistics of each frame are computed once and shared by both pairs.

    Returns, for the P = F-1 pairs: appearance features of the first and second frame of each
    pair, (B, P, dim, h, w) each, and their motion features, (B, P, motion_dim, h, w) each.

    Switches that restore the reference code's behaviour (all off by default):
        unbiased_std: the per-head layer norms of keys, values and coordinates divide by the
            unbiased standard deviation plus eps (see :class:`HeadLayerNorm`).
        linspace_coords: the coordinate branch embeds a ``linspace(-1, 1)`` grid over the map
            (:func:`corner_aligned_grid`) instead of pixel centres.
        reference_wiring: the attention result reaches the output only through the MLP,
            ``out = x + MLP(LN2(2 LN1(x) + O(A + LN1(x))))``, instead of the pre-norm block
            ``y = x + O(A + LN1(x)); out = y + MLP(LN2(y))``.
    """

    def __init__(
        self,
        in_channels: int,
        dim: int = 128,
        heads: int = 8,
        mlp_ratio: float = 4.0,
        unbiased_std: bool = False,
        linspace_coords: bool = False,
        reference_wiring: bool = False,
    ):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"attention dim {dim} must be divisible by heads {heads}")
        self.heads, self.dim = heads, dim
        self.linspace_coords = linspace_coords
        self.reference_wiring = reference_wiring
        d = dim // heads
        # overlapping patch embedding: a stride-1 3x3 conv keeps the full resolution
        self.embed = nn.Conv2d(in_channels, dim, 3, 1, 1)
        self.embed_norm = nn.LayerNorm(dim)
        self.norm1 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.k_norm = HeadLayerNorm(heads, d, unbiased_std=unbiased_std)
        self.v_norm = HeadLayerNorm(heads, d, unbiased_std=unbiased_std)
        self.coord_embed = nn.Linear(2, dim)
        self.coord_norm = HeadLayerNorm(heads, d, unbiased_std=unbiased_std)
        self.out_proj = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.motion_proj = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = DepthwiseMlp(dim, int(dim * mlp_ratio))

    def forward(self, frames: torch.Tensor):
        b, f, _, h, w = frames.shape
        n = h * w
        x = self.embed(rearrange(frames, "b f c y x -> (b f) c y x"))
        x = self.embed_norm(rearrange(x, "m c y x -> m (y x) c"))
        xn = self.norm1(x)

        heads = self.heads
        q = rearrange(self.to_q(xn), "(b f) n (h d) -> b f h n d", b=b, h=heads)
        k, v = rearrange(
            self.to_kv(xn), "(b f) n (two h d) -> two (b f) h n d", b=b, two=2, h=heads
        )
        k, v = self.k_norm(k), self.v_norm(v)
        grid = corner_aligned_grid if self.linspace_coords else coordinate_grid
        coords = grid(h, w, frames.device, x.dtype).reshape(1, n, 2)
        coord_raw = self.coord_embed(coords)  # (1, n, dim), the same grid for every frame
        coord_v = self.coord_norm(rearrange(coord_raw, "o n (h d) -> o h n d", h=heads))
        # per-frame sums over its own tokens, shared by the two pairs the frame belongs to
        kv_stats = rearrange(k.transpose(-2, -1) @ v, "(b f) h d e -> b f h d e", b=b)
        kc_stats = rearrange(k.transpose(-2, -1) @ coord_v, "(b f) h d e -> b f h d e", b=b)

        def pair_side(q_side, stats_kv, stats_kc, tokens, tokens_norm):
            # q_side (b, p, h, n, d); stats from the *other* frame of each pair
            q_flat = rearrange(q_side, "b p h n d -> (b p) h n d")
            app = galerkin_attend(q_flat, rearrange(stats_kv, "b p h d e -> (b p) h d e"), n)
            app = rearrange(app, "m h n d -> m n (h d)")
            moved = galerkin_attend(q_flat, rearrange(stats_kc, "b p h d e -> (b p) h d e"), n)
            moved = rearrange(moved, "m h n d -> m n (h d)")
            if self.reference_wiring:
                mixed = 2 * tokens_norm + self.out_proj(app + tokens_norm)
                app = tokens + self.mlp(self.norm2(mixed), h, w)
            else:
                app = tokens + self.out_proj(app + tokens_norm)
                app = app + self.mlp(self.norm2(app), h, w)
            # attended coordinate minus own coordinate: a learned displacement cue
            motion = self.motion_proj(moved - coord_raw)
            to_map = "(b p) (y x) c -> b p c y x"
            return (rearrange(app, to_map, b=b, y=h), rearrange(motion, to_map, b=b, y=h))

        x = rearrange(x, "(b f) n c -> b f n c", b=b)
        xn = rearrange(xn, "(b f) n c -> b f n c", b=b)
        first_app, first_motion = pair_side(
            q[:, :-1],
            kv_stats[:, 1:],
            kc_stats[:, 1:],
            rearrange(x[:, :-1], "b p n c -> (b p) n c"),
            rearrange(xn[:, :-1], "b p n c -> (b p) n c"),
        )
        second_app, second_motion = pair_side(
            q[:, 1:],
            kv_stats[:, :-1],
            kc_stats[:, :-1],
            rearrange(x[:, 1:], "b p n c -> (b p) n c"),
            rearrange(xn[:, 1:], "b p n c -> (b p) n c"),
        )
        return first_app, second_app, first_motion, second_motion
