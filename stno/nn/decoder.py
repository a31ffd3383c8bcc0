"""Continuous decoder: LR feature maps to RGB at any target size (SRNO / LIIF lineage).

For each target pixel: the 4 nearest LR feature vectors (local ensemble), each with its relative
coordinate, weighted by the area of the opposite neighbour's rectangle (bilinear-like weights),
plus the cell size; a linear lift to ``hidden`` channels; optional Galerkin self-attention blocks
over all target pixels; a pointwise MLP to RGB; plus a bilinearly upsampled RGB shortcut of the
features.

Memory-bounded decoding: target pixels are decoded in chunks of at most ``max_queries`` (over
the whole batch). With attention blocks on, the global statistics ``K^T V`` of block l are first
accumulated over all chunks (a pass over the chunks per block) and then applied, so chunked and
unchunked decoding give the same result up to float rounding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention import GalerkinAttention
from .geometry import pixel_centers

__all__ = ["ContinuousDecoder", "TargetGridGalerkinBlock"]


class TargetGridGalerkinBlock(nn.Module):
    """Pointwise Galerkin self-attention block over the target grid: x + attn(x); x + mlp(x).

    Pointwise (no convolution), so a chunk of target pixels only needs the block's global
    statistics, accumulated beforehand.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attn = GalerkinAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def statistics(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of ``k^T v`` over the tokens of x: (N, Q, dim) -> (N, heads, d, d)."""
        return self.attn.statistics(x)

    def apply(self, x: torch.Tensor, stats: torch.Tensor, count: int) -> torch.Tensor:
        x = x + self.attn.attend(x, stats, count)
        return x + self.mlp(x)


def _axis_neighbours(out_len: int, in_len: int, device, dtype):
    """Per-axis local-ensemble geometry for ``out_len`` target cells over ``in_len`` LR cells.

    Returns (idx, rel, weight), each (2, out_len): the two nearest LR indices (lower, upper,
    clamped to the image), the target's offset from each in LR half-cells, and the weight of
    each (the distance to the *other* neighbour, normalised).
    """
    coord = pixel_centers(out_len, device, dtype)
    pos = (coord + 1) * in_len / 2 - 0.5  # continuous LR index, centres at integers
    low = torch.floor(pos)
    idx = torch.stack([low, low + 1]).clamp_(0, in_len - 1).long()
    centres = pixel_centers(in_len, device, dtype)[idx]
    rel = (coord.unsqueeze(0) - centres) * in_len
    dist = rel.abs()
    weight = dist.flip(0) / (dist.sum(0, keepdim=True) + 1e-9)
    weight = torch.where(dist.sum(0, keepdim=True) > 1e-9, weight, torch.full_like(weight, 0.5))
    return idx, rel, weight


class ContinuousDecoder(nn.Module):
    """Decode (N, C, h, w) features to (N, 3, H, W) RGB for any H >= 1, W >= 1.

    Args:
        in_channels: feature channels C.
        hidden: lifted channels (256 in the paper).
        attn_blocks: Galerkin self-attention blocks over the target grid (0 in STNO's code).
        heads: heads of those blocks.
        max_train_scale: the largest scale seen in training; beyond it the cell size is clamped to
            the trained range (cell scaled by max(scale / max_train_scale, 1)).
    """

    def __init__(
        self,
        in_channels: int = 64,
        hidden: int = 256,
        attn_blocks: int = 0,
        heads: int = 16,
        max_train_scale: float = 4.0,
    ):
        super().__init__()
        self.max_train_scale = max_train_scale
        self.lift = nn.Linear(4 * (in_channels + 2) + 2, hidden)
        self.blocks = nn.ModuleList(TargetGridGalerkinBlock(hidden, heads) for _ in range(attn_blocks))
        self.project = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 3))
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 1), nn.ReLU(), nn.Conv2d(in_channels, 3, 1)
        )

    def forward(
        self,
        feat: torch.Tensor,
        out_size: tuple[int, int],
        max_queries: int | None = None,
    ) -> torch.Tensor:
        """feat: (N, C, h, w); out_size: (H, W); max_queries: target pixels decoded at once
        (None: all). Returns (N, 3, H, W), unbounded RGB (the caller adds its skip and clamps)."""
        n, c, h, w = feat.shape
        H, W = int(out_size[0]), int(out_size[1])
        dev, dt = feat.device, feat.dtype
        iy, ry, wy = _axis_neighbours(H, h, dev, dt)
        ix, rx, wx = _axis_neighbours(W, w, dev, dt)
        cell = torch.tensor(
            [2 * h / H * max(H / h / self.max_train_scale, 1.0), 2 * w / W * max(W / w / self.max_train_scale, 1.0)],
            device=dev, dtype=dt,
        )
        flat = feat.flatten(2)  # (N, C, h*w)
        total = H * W
        chunk = total if not max_queries else max(1, math.ceil(max_queries / n))
        starts = range(0, total, chunk)

        def lifted(start: int) -> torch.Tensor:
            q = torch.arange(start, min(start + chunk, total), device=dev)
            row, col = q // W, q % W
            parts = []
            for a in (0, 1):
                for b in (0, 1):
                    lr_index = iy[a, row] * w + ix[b, col]
                    weight = (wy[a, row] * wx[b, col]).unsqueeze(-1)
                    rel = torch.stack([ry[a, row], rx[b, col]], dim=-1)
                    parts += [rel.expand(n, -1, -1), flat[:, :, lr_index].transpose(1, 2) * weight]
            parts.append(cell.expand(n, q.numel(), 2))
            return self.lift(torch.cat(parts, dim=-1))  # (N, q, hidden)

        stats = []
        for level, block in enumerate(self.blocks):
            acc = 0
            for s in starts:
                x = lifted(s)
                for prev, st in zip(self.blocks[:level], stats):
                    x = prev.apply(x, st, total)
                acc = acc + block.statistics(x)
            stats.append(acc)

        pieces = []
        for s in starts:
            x = lifted(s)
            for block, st in zip(self.blocks, stats):
                x = block.apply(x, st, total)
            pieces.append(self.project(x))
        out = torch.cat(pieces, dim=1).transpose(1, 2).reshape(n, 3, H, W)
        short = F.interpolate(self.shortcut(feat), size=(H, W), mode="bilinear", align_corners=False)
        return out + short
