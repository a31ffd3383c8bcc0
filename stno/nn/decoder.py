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

This file is longer than our ~300-line guide on purpose: one operator has three decoding paths
(tiles with global attention statistics, bands of target rows for inference, sampled pixels for
training) that must compute the same function; they are kept side by side to be read against
each other, and tests/test_decoder_speed_paths.py checks them against each other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stno.errors import ConfigError
from stno.ops.warping import full_precision, pixel_centers

from .attention import GalerkinAttention
from .native import decode_frame, decode_kernel

__all__ = ["ContinuousDecoder", "TargetGridGalerkinBlock", "sample_at_pixels"]


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
        pixels: torch.Tensor | None = None,
        skip: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """feat: (N, C, h, w); out_size: (H, W); max_queries: target pixels decoded at once over the
        batch (None: all). Returns (N, 3, H, W), unbounded RGB (the caller clamps).

        ``skip``: an optional (N, 3, h, w) image added bilinearly upsampled (the network's image
        residual). Bilinear upsampling is linear, so it is added to the RGB shortcut at LR and
        the two are upsampled together.

        With ``pixels`` (N, Q) flat indices ``y * W + x`` of target pixels, only those are decoded
        (sampled-query training): returns (N, 3, Q), equal to the full decoding at those pixels.

        Without attention blocks and without autograd (inference), the grid is decoded by
        ``_decode_bands`` (same result up to float rounding, faster); otherwise in tiles of at
        most ``max_queries`` pixels, below.
        """
        n, c, h, w = feat.shape
        H, W = int(out_size[0]), int(out_size[1])
        exact = full_precision(feat[:0]).dtype  # coordinates: float32, or float64 in float64 runs
        geometry = (
            *_axis_neighbours(H, h, feat.device, exact),
            *_axis_neighbours(W, w, feat.device, exact),
        )
        cell = torch.tensor(
            [
                2 * h / H * max(H / h / self.max_train_scale, 1.0),
                2 * w / W * max(W / w / self.max_train_scale, 1.0),
            ],
            device=feat.device,
            dtype=exact,
        )
        if pixels is not None:
            return self._decode_points(feat, (H, W), geometry, cell, pixels, skip)
        if not self.blocks and not (torch.is_grad_enabled() and _needs_grad(self, feat)):
            return self._decode_bands(feat, (H, W), geometry, cell, skip, max_queries)
        feat_last = feat.permute(0, 2, 3, 1)  # channels last: projections are plain matmuls
        weight, bias = self._lift_weights()
        group, rows, cols = _tiling(n, H, W, max_queries)
        out = None
        for f0 in range(0, n, group):
            part = feat_last[f0 : f0 + group]
            tiles = [(r, cc) for r in range(0, H, rows) for cc in range(0, W, cols)]

            def lifted(tile, part=part):
                r, cc = tile
                span = (slice(r, r + rows), slice(cc, cc + cols))
                return self._lift(part, geometry, cell, weight, bias, *span)

            # attention blocks need their statistics over *all* target pixels before any is decoded
            stats = []
            for level, block in enumerate(self.blocks):
                acc = 0
                for tile in tiles:
                    x = lifted(tile).flatten(1, 2)
                    for prev, st in zip(self.blocks[:level], stats, strict=True):
                        x = prev.apply(x, st, H * W)
                    acc = acc + block.statistics(x)
                stats.append(acc)
            for r, cc in tiles:
                x = lifted((r, cc))
                shape = x.shape[:3]
                x = x.flatten(1, 2)
                for block, st in zip(self.blocks, stats, strict=True):
                    x = block.apply(x, st, H * W)
                rgb = self._to_rgb(x, lifted_by_first_layer=not self.blocks).unflatten(1, shape[1:])
                if out is None:  # one output tensor, filled tile by tile: no concatenation copies
                    out = rgb.new_empty(n, H, W, 3)
                out[f0 : f0 + group, r : r + rows, cc : cc + cols] = rgb
        out = out.permute(0, 3, 1, 2)
        short = self._lr_image(feat, skip, bias=False)
        short = F.interpolate(short, size=(H, W), mode="bilinear", align_corners=False)
        return out.add_(short)  # ``out`` is a fresh tensor: no extra full-size copy

    # Target pixels of a band in the inference path (see ``_decode_bands``): small enough that a
    # band's intermediates stay in the CPU's caches, large enough that the per-operation overhead
    # stays small (measured on 2 cores at 1280x720: 16k-20k pixels is the fastest).
    band_pixels = 20480

    def _decode_bands(self, feat, out_size, geometry, cell, skip, max_queries) -> torch.Tensor:
        """Inference path (no autograd, no attention blocks): the same map as the tiled path of
        ``forward`` up to float rounding, with a fraction of its memory traffic.

        Target rows are decoded band by band. A band is the set of target rows whose upper LR
        neighbour lies in a few consecutive LR rows; its intermediates go to buffers reused from
        band to band (they stay in cache, and nothing is allocated per band):

        1. once per frame, at LR size: the features' part of the lift for each neighbour
           position (a, b), ``P_ab = f W_ab^T`` (one batched matmul);
        2. x-pass on the band's LR rows (plus the one below, the lower neighbour of its last
           target rows): gather ``P_a0`` and ``P_a1`` at each target column's two LR columns,
           lerp with the x-weights, add the column terms (relative x, cell, bias);
        3. y-pass: gather each target row's upper row of the a = 0 result and lower row of the
           a = 1 result, lerp with the y-weights, add the row term (relative y): the MLP's
           first layer at every target pixel of the band;
        4. GELU in place, and the last layer accumulated (``addmm_``) into the output, which
           was first filled with the bilinear upsampling of the LR image (RGB shortcut + skip +
           the last layer's bias: the weights of a bilinear blend sum to one, so a constant
           passes through).

        The old path instead materialised every gathered copy and intermediate at the size of a
        65536-pixel tile (8-16 MiB each, out of cache) and allocated them per tile.

        Everything after the LR projections runs in float32 (float64 for float64 inputs), also
        under bfloat16 autocast: on a CPU, float32 lerps and adds are faster than bfloat16 ones
        (no conversions), the band's data lives in cache so its size costs little, and the
        result is closer to float32 inference than the old bfloat16 path's.
        """
        iy, ry, wy, ix, rx, wx = geometry
        n, c, h, w = feat.shape
        H, W = out_size
        weight, bias = self._lift_weights()
        hidden = weight.shape[0]
        last = self.project[2]
        lr_image = self._lr_image(feat, skip, bias=True)
        exact = lr_image.dtype
        row_term, col_term = self._coordinate_terms(
            geometry, cell, weight, bias, slice(None), slice(None)
        )
        with torch.autocast(feat.device.type, enabled=False):
            col_term = col_term.to(exact).view(1, W, hidden)
            row_term = row_term.to(exact).unsqueeze(1)  # (H, 1, hidden)
            x_weight = wx[1].to(exact).view(1, W, 1)
            y_weight = wy[1].to(exact).view(H, 1)
            project_weight = last.weight.to(exact)  # (3, hidden)
        stride = c + 2  # the lift's input per neighbour: 2 relative coordinates, c features
        blocks = torch.stack([weight[:, k * stride + 2 : k * stride + 2 + c] for k in range(4)])
        feat_last = feat.permute(0, 2, 3, 1).reshape(n, h * w, c)
        low = torch.get_autocast_dtype(feat.device.type)
        if torch.is_autocast_enabled(feat.device.type) and low in (torch.bfloat16, torch.float16):
            feat_last, blocks = feat_last.to(low), blocks.to(low)  # the autocast matmul, by hand
        else:
            blocks = blocks.to(feat_last.dtype)
        blocks = blocks.transpose(1, 2)  # (4, c, hidden)
        with torch.autocast(feat.device.type, enabled=False):
            out = F.interpolate(lr_image, size=(H, W), mode="bilinear", align_corners=False)

        if self._native_pass(feat, exact):
            # the same per-pixel map in compiled C, nothing materialised (stno/nn/native.py)
            projected = torch.empty(4, hidden, h * w, dtype=blocks.dtype, device=feat.device)
            channels_first = blocks.transpose(1, 2)  # (4, hidden, c)
            geo = (iy, y_weight.view(H), ix, x_weight.view(W), w)
            # laid out once as the C pass reads them (decode_frame would copy them every frame)
            col_by_channel = col_term.view(W, hidden).T.contiguous()
            terms = (row_term.view(H, hidden), col_by_channel, project_weight.contiguous())
            for f in range(n):
                torch.matmul(channels_first, feat_last[f].T, out=projected)
                decode_frame(decode_kernel(), projected, geo, *terms, out[f])
            return out

        # bands: LR rows [lo, lo + q) give the target rows whose upper neighbour is among them
        rows = max(1, min(self.band_pixels, max_queries or self.band_pixels) // W)
        q = max(1, round(rows * h / H))
        iy0, iy1 = iy[0].tolist(), iy[1].tolist()
        bands, r0 = [], 0
        while r0 < H:
            r1 = r0 + 1
            while r1 < H and iy0[r1] < iy0[r0] + q and r1 - r0 < max(rows, 1) * 4:
                r1 += 1
            bands.append((r0, r1, iy0[r0], iy1[r1 - 1]))
            r0 = r1
        most = max(hi - lo + 1 for _, _, lo, hi in bands)
        longest = max(r1 - r0 for r0, r1, _, _ in bands)
        new = lambda *shape: torch.empty(shape, dtype=exact, device=feat.device)  # noqa: E731
        neighbour = new(4, h * w, hidden)  # P_ab, (a, b) = (0, 0), (0, 1), (1, 0), (1, 1)
        projected = neighbour
        if blocks.dtype != exact:
            projected = torch.empty_like(neighbour, dtype=blocks.dtype)
        gathered = [new(most * W, hidden) for _ in range(2)]
        blended = [new(most * W, hidden) for _ in range(2)]
        top, bottom = new(longest, W * hidden), new(longest, W * hidden)

        for f in range(n):
            torch.matmul(feat_last[f], blocks, out=projected)
            if projected is not neighbour:  # bfloat16 projections, blended in float32
                neighbour.copy_(projected)
            for r0, r1, lo, hi in bands:
                m, k = hi - lo + 1, r1 - r0
                lr_rows = torch.arange(lo * w, (hi + 1) * w, w, device=feat.device).view(m, 1)
                for a in (0, 1):
                    pair = [
                        torch.index_select(
                            neighbour[2 * a + b],
                            0,
                            (lr_rows + ix[b]).view(-1),
                            out=gathered[b][: m * W],
                        ).view(m, W, hidden)
                        for b in (0, 1)
                    ]
                    x = torch.lerp(*pair, x_weight, out=blended[a][: m * W].view(m, W, hidden))
                    x.add_(col_term)
                upper = torch.index_select(
                    blended[0][: m * W].view(m, W * hidden), 0, iy[0, r0:r1] - lo, out=top[:k]
                )
                lower = torch.index_select(
                    blended[1][: m * W].view(m, W * hidden), 0, iy[1, r0:r1] - lo, out=bottom[:k]
                )
                mixed = torch.lerp(upper, lower, y_weight[r0:r1], out=upper).view(k, W, hidden)
                lifted = mixed.add_(row_term[r0:r1])
                torch.ops.aten.gelu_(lifted, approximate=self.project[1].approximate)
                rgb = out[f, :, r0:r1].view(3, k * W)  # (3, k W) view of the NCHW output
                rgb.addmm_(project_weight, lifted.view(k * W, hidden).T)
        return out

    # Inference on CPU may use the compiled per-pixel pass (stno/nn/native.py) when it is
    # available; False: always the torch band path.
    native = True

    def _native_pass(self, feat: torch.Tensor, exact: torch.dtype) -> bool:
        return (
            self.native
            and feat.device.type == "cpu"
            and exact == torch.float32
            and self.project[1].approximate == "none"
            and decode_kernel() is not None
        )

    def _lift_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of the linear map applied to the local-ensemble input of a pixel.

        Without attention blocks nothing separates the lift from the first layer of the pointwise
        MLP, so the two linear maps are applied as one (``W1 W_lift``): the hidden-to-hidden
        product over every target pixel is never computed.
        """
        if self.blocks:
            return self.lift.weight, self.lift.bias
        first = self.project[0]
        with torch.autocast(first.weight.device.type, enabled=False):
            return first.weight @ self.lift.weight, first.weight @ self.lift.bias + first.bias

    def _lr_image(self, feat: torch.Tensor, skip: torch.Tensor | None, bias: bool) -> torch.Tensor:
        """The LR image that is added bilinearly upsampled: RGB shortcut (+ skip) (+ the last
        layer's bias, for the inference path), full precision: (N, 3, h, w)."""
        image = full_precision(self.shortcut(feat))
        with torch.autocast(feat.device.type, enabled=False):
            if skip is not None:
                image = image + full_precision(skip)
            if bias:
                image = image + self.project[2].bias.to(image.dtype).view(1, -1, 1, 1)
        return image

    def _decode_points(self, feat, out_size, geometry, cell, pixels, skip=None) -> torch.Tensor:
        """Decode the target pixels ``pixels`` (N, Q) only: (N, 3, Q).

        Builds the local-ensemble input ``[ry_a, rx_b, w_ab f_ab for the 4 neighbours, cell]`` of
        each sampled pixel explicitly (Q is small in training) and lifts it with one matmul.
        """
        if self.blocks:
            raise ConfigError(
                "sampled-query decoding needs global attention statistics over every target "
                "pixel; it is not available with decoder attention blocks (set train_queries=null)"
            )
        iy, ry, wy, ix, rx, wx = geometry
        n, c, h, w = feat.shape
        H, W = out_size
        ys, xs = pixels.div(W, rounding_mode="floor"), pixels.remainder(W)
        flat = feat.flatten(2)  # (N, C, h*w)
        parts = []
        for a in (0, 1):
            for b in (0, 1):
                index = iy[a][ys] * w + ix[b][xs]  # (N, Q) LR pixel of neighbour (a, b)
                gathered = flat.gather(2, index.unsqueeze(1).expand(-1, c, -1))
                weighted = gathered * (wy[a][ys] * wx[b][xs]).unsqueeze(1).to(gathered.dtype)
                parts += [ry[a][ys].unsqueeze(1), rx[b][xs].unsqueeze(1), weighted]
        parts.append(cell.view(1, 2, 1).expand(n, -1, pixels.shape[1]))
        lift_input = torch.cat([p.to(feat.dtype) for p in parts], dim=1).transpose(1, 2)
        out = self._to_rgb(self.lift(lift_input)).transpose(1, 2)  # (N, 3, Q)
        return out + sample_at_pixels(self._lr_image(feat, skip, bias=False), out_size, pixels)

    def _to_rgb(self, x: torch.Tensor, lifted_by_first_layer: bool = False) -> torch.Tensor:
        """Pointwise projection (..., hidden) -> (..., 3); ``lifted_by_first_layer``: ``x`` already
        went through the MLP's first linear layer (see ``_lift_weights``). The last layer runs in
        float32, so that a bfloat16 autocast run keeps the image itself at full precision."""
        hidden = self.project[1](x if lifted_by_first_layer else self.project[0](x))
        with torch.autocast(x.device.type, enabled=False):
            return self.project[2](full_precision(hidden))

    @staticmethod
    def _coordinate_terms(geometry, cell, weight, bias, rows: slice, cols: slice):
        """The parts of the lift that do not depend on the features: (row term (th, out), column
        term (tw, out)), in the coordinates' precision. The relative coordinates of neighbour
        (a, b) are (ry_a, rx_b), so the row term gathers the y-coordinate columns of the weight
        and the column term the x-coordinate columns, the cell size and the bias."""
        iy, ry, wy, ix, rx, wx = geometry
        c = (weight.shape[1] - 2) // 4 - 2
        exact = ry.dtype
        with torch.autocast(weight.device.type, enabled=False):
            row_term = sum(
                ry[a, rows].unsqueeze(-1) * (weight[:, s] + weight[:, s + c + 2])
                for a, s in ((0, 0), (1, 2 * (c + 2)))
            ).to(exact)
            col_term = sum(
                rx[b, cols].unsqueeze(-1) * (weight[:, s + 1] + weight[:, s + 2 * (c + 2) + 1])
                for b, s in ((0, 0), (1, c + 2))
            )
            col_term = (col_term + weight[:, -2:] @ cell.to(weight.dtype) + bias).to(exact)
        return row_term, col_term

    def _lift(self, feat_last, geometry, cell, weight, bias, rows: slice, cols: slice):
        """Lifted local-ensemble input of a tile of target pixels: (g, th, tw, out).

        ``weight`` (out, 4 (C + 2) + 2) and ``bias`` act on ``[rel_k, w_k f_k for the 4 neighbours
        k, cell]``. The map is linear, so it is evaluated term by term instead of building that
        input per target pixel, and separably: features are projected on the LR pixels the tile
        touches, blended along x on the LR rows (gather + lerp at LR-rows x target-columns size),
        then along y (gather + lerp at target size); the relative-coordinate terms split into a
        column part, added on the LR rows, and a row part.
        """
        iy, ry, wy, ix, rx, wx = geometry
        c = feat_last.shape[-1]
        row_idx, col_idx = iy[:, rows], ix[:, cols]
        top, left = int(row_idx.min()), int(col_idx.min())
        slab = feat_last[:, top : int(row_idx.max()) + 1, left : int(col_idx.max()) + 1]
        row_term, col_term = self._coordinate_terms(geometry, cell, weight, bias, rows, cols)
        blended_rows = []
        for a in (0, 1):
            neighbours = []
            for b in (0, 1):
                start = (2 * a + b) * (c + 2)
                projected = slab @ weight[:, start + 2 : start + 2 + c].T  # (g, sh, sw, out)
                neighbours.append(projected.index_select(2, col_idx[b] - left))
            dtype = neighbours[0].dtype
            # the two weights of an axis sum to 1, so the weighted sum is a lerp (one fused op)
            on_lr_rows = torch.lerp(*neighbours, wx[1, cols].view(1, 1, -1, 1).to(dtype))
            on_lr_rows += col_term.to(dtype)  # the weights along y sum to 1 too
            blended_rows.append(on_lr_rows.index_select(1, row_idx[a] - top))
        dtype = blended_rows[0].dtype
        blended = torch.lerp(*blended_rows, wy[1, rows].view(1, -1, 1, 1).to(dtype))
        return blended.add_(row_term.unsqueeze(1).to(dtype))


def sample_at_pixels(image: torch.Tensor, out_size: tuple[int, int], pixels: torch.Tensor):
    """Bilinear upsampling of ``image`` (N, C, h, w) to ``out_size``, read at ``pixels`` only.

    ``pixels``: (N, Q) flat indices ``y * W + x``. Returns (N, C, Q), equal to
    ``F.interpolate(image, out_size, mode="bilinear", align_corners=False)`` at those pixels.
    """
    H, W = out_size
    ys, xs = pixels.div(W, rounding_mode="floor"), pixels.remainder(W)
    image = full_precision(image)
    grid = torch.stack(
        [
            pixel_centers(W, image.device, image.dtype)[xs],
            pixel_centers(H, image.device, image.dtype)[ys],
        ],
        dim=-1,
    ).unsqueeze(1)  # (N, 1, Q, 2) in (x, y) order
    with torch.autocast(image.device.type, enabled=False):
        sampled = F.grid_sample(
            image, grid, mode="bilinear", padding_mode="border", align_corners=False
        )
    return sampled.squeeze(2)


def _needs_grad(module: nn.Module, x: torch.Tensor) -> bool:
    return x.requires_grad or any(p.requires_grad for p in module.parameters())


def _tiling(n: int, H: int, W: int, max_queries: int | None) -> tuple[int, int, int]:
    """(frames, rows, cols) of a tile holding at most ``max_queries`` target pixels in all."""
    if not max_queries or n * H * W <= max_queries:
        return n, H, W
    if H * W <= max_queries:
        return max(1, max_queries // (H * W)), H, W
    if W <= max_queries:
        return 1, max(1, max_queries // W), W
    return 1, 1, max(1, max_queries)
