"""Continuous decoder: LR feature maps to RGB at any target size (SRNO / LIIF lineage).

For each target pixel: the 4 nearest LR feature vectors (local ensemble), each with its relative
coordinate, weighted by the area of the diagonally opposite neighbour's rectangle over the total
(bilinear weights; along an axis whose two neighbours coincide at the border, 1/2 each),
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
    # a target centre that falls exactly on an LR centre (odd integer scales) takes the pair
    # starting there, whatever the float rounding of ``pos``
    low = torch.floor(pos + 1e-4)
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
        feat_last = feat.permute(0, 2, 3, 1)  # channels last: projections are plain matmuls
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
        return out.add_(short)  # ``out`` is a fresh tensor: no extra full-size copy

    def _lift(self, feat_last, geometry, cell, rows: slice, cols: slice) -> torch.Tensor:
        """Lifted local-ensemble input of a tile of target pixels: (g, th, tw, hidden).

        The lift is linear in its input ``[rel_k, w_k f_k for the 4 neighbours k, cell]``, so it is
        evaluated term by term instead of building that (4C + 10)-wide input per target pixel:
        features are projected on the few LR pixels the tile touches and the projected vectors
        gathered and weighted; the relative-coordinate terms separate into a row and a column part.
        """
        iy, ry, wy, ix, rx, wx = geometry
        c = feat_last.shape[-1]
        weight = self.lift.weight  # (hidden, 4 (C + 2) + 2): per neighbour [ry, rx, features], cell
        row_idx, col_idx = iy[:, rows], ix[:, cols]
        top, left = int(row_idx.min()), int(col_idx.min())
        slab = feat_last[:, top : int(row_idx.max()) + 1, left : int(col_idx.max()) + 1]
        rows_blend = []
        row_term = col_term = 0
        for a in (0, 1):
            cols_blend = []
            for b in (0, 1):
                start = (2 * a + b) * (c + 2)
                projected = slab @ weight[:, start + 2 : start + 2 + c].T  # (g, sh, sw, hidden)
                # separable gather: the rows of neighbour a, then the columns of neighbour b
                rows_a = projected.index_select(1, row_idx[a] - top)
                cols_blend.append(rows_a.index_select(2, col_idx[b] - left))
                row_term = row_term + ry[a, rows].unsqueeze(-1) * weight[:, start]
                col_term = col_term + rx[b, cols].unsqueeze(-1) * weight[:, start + 1]
            # the two weights of an axis sum to 1, so the weighted sum is a lerp (one fused op)
            rows_blend.append(torch.lerp(*cols_blend, wx[1, cols].view(1, 1, -1, 1)))
        blended = torch.lerp(*rows_blend, wy[1, rows].view(1, -1, 1, 1))
        constant = weight[:, -2:] @ cell + self.lift.bias
        return blended + (row_term.unsqueeze(1) + col_term.unsqueeze(0) + constant)


def _tiling(n: int, H: int, W: int, max_queries: int | None) -> tuple[int, int, int]:
    """(frames, rows, cols) of a tile holding at most ``max_queries`` target pixels in all."""
    if not max_queries or n * H * W <= max_queries:
        return n, H, W
    if H * W <= max_queries:
        return max(1, max_queries // (H * W)), H, W
    if W <= max_queries:
        return 1, max(1, max_queries // W), W
    return 1, 1, max(1, max_queries)
