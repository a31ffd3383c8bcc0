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
        self.blocks = nn.ModuleList(
            TargetGridGalerkinBlock(hidden, heads) for _ in range(attn_blocks)
        )
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
        """feat: (N, C, h, w); out_size: (H, W); max_queries: target pixels decoded at once over the
        batch (None: all). Returns (N, 3, H, W), unbounded RGB (the caller adds its skip and clamps)."""
        n, c, h, w = feat.shape
        H, W = int(out_size[0]), int(out_size[1])
        geometry = (
            *_axis_neighbours(H, h, feat.device, feat.dtype),
            *_axis_neighbours(W, w, feat.device, feat.dtype),
        )
        cell = torch.tensor(
            [
                2 * h / H * max(H / h / self.max_train_scale, 1.0),
                2 * w / W * max(W / w / self.max_train_scale, 1.0),
            ],
            device=feat.device,
            dtype=feat.dtype,
        )
        feat_last = feat.permute(0, 2, 3, 1)  # channels last: gathered rows feed nn.Linear directly
        group, rows, cols = _tiling(n, H, W, max_queries)
        frames_out = []
        for f0 in range(0, n, group):
            tiles = [(r, cc) for r in range(0, H, rows) for cc in range(0, W, cols)]

            def lifted(tile, part=feat_last[f0 : f0 + group]):
                r, cc = tile
                return self._lift(part, geometry, cell, slice(r, r + rows), slice(cc, cc + cols))

            # attention blocks need their statistics over *all* target pixels before any is decoded
            stats = []
            for level, block in enumerate(self.blocks):
                acc = 0
                for tile in tiles:
                    x = lifted(tile).flatten(1, 2)
                    for prev, st in zip(self.blocks[:level], stats):
                        x = prev.apply(x, st, H * W)
                    acc = acc + block.statistics(x)
                stats.append(acc)
            row_blocks = []
            for r in range(0, H, rows):
                row = []
                for cc in range(0, W, cols):
                    x = lifted((r, cc))
                    shape = x.shape[:3]
                    x = x.flatten(1, 2)
                    for block, st in zip(self.blocks, stats):
                        x = block.apply(x, st, H * W)
                    row.append(self.project(x).unflatten(1, shape[1:]))
                row_blocks.append(torch.cat(row, dim=2))
            frames_out.append(torch.cat(row_blocks, dim=1))
        out = torch.cat(frames_out, dim=0).permute(0, 3, 1, 2)
        short = F.interpolate(
            self.shortcut(feat), size=(H, W), mode="bilinear", align_corners=False
        )
        return out + short

    def _lift(self, feat_last, geometry, cell, rows: slice, cols: slice) -> torch.Tensor:
        """Local-ensemble input of a tile of target pixels, lifted: (g, th, tw, hidden)."""
        iy, ry, wy, ix, rx, wx = geometry
        g = feat_last.shape[0]
        th, tw = iy[0, rows].numel(), ix[0, cols].numel()
        parts = []
        for a in (0, 1):
            # separable gather: the rows of neighbour a, then the columns of neighbour b
            picked_rows = feat_last.index_select(1, iy[a, rows])
            for b in (0, 1):
                neighbour = picked_rows.index_select(2, ix[b, cols])
                weight = wy[a, rows].view(1, th, 1, 1) * wx[b, cols].view(1, 1, tw, 1)
                rel = torch.stack(
                    torch.broadcast_tensors(ry[a, rows].view(th, 1), rx[b, cols].view(1, tw)),
                    dim=-1,
                )
                parts += [rel.expand(g, th, tw, 2), neighbour * weight]
        parts.append(cell.expand(g, th, tw, 2))
        return self.lift(torch.cat(parts, dim=-1))


def _tiling(n: int, H: int, W: int, max_queries: int | None) -> tuple[int, int, int]:
    """(frames, rows, cols) of a tile holding at most ``max_queries`` target pixels in all."""
    if not max_queries or n * H * W <= max_queries:
        return n, H, W
    if H * W <= max_queries:
        return max(1, max_queries // (H * W)), H, W
    if W <= max_queries:
        return 1, max(1, max_queries // W), W
    return 1, 1, max(1, max_queries)
