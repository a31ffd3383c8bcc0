"""``bicubic_blend``: the trivial ST-VSR baseline every comparison uses."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn

from stno.ops.imresize import imresize

from .stno import check_video_call

__all__ = ["BicubicBlend"]


class BicubicBlend(nn.Module):
    """MATLAB-bicubic upsampling of every input frame and linear blending in time.

    Same call as :class:`~stno.nn.STNO`: (B, T, 3, h, w) in [0, 1] -> (B, T + (T-1)*n, 3, H, W);
    the frame at t between inputs i and i+1 is ``(1 - t) up(I_i) + t up(I_{i+1})``. Output
    clamped to [0, 1]. No trainable parameters.
    """

    def __init__(self, **_ignored):
        super().__init__()
        self.config: dict = {}

    def forward(
        self, frames: torch.Tensor, times: Sequence[float], out_size, max_queries: int | None = None
    ):
        times, (H, W) = check_video_call(frames, times, out_size)
        b, t = frames.shape[:2]
        up = imresize(rearrange(frames, "b t c y x -> (b t) c y x"), out_size=(H, W))
        up = rearrange(up, "(b t) c y x -> b t c y x", b=b)
        seq = []
        for i in range(t):
            seq.append(up[:, i])
            if i < t - 1:
                seq += [(1 - s) * up[:, i] + s * up[:, i + 1] for s in times]
        return torch.stack(seq, dim=1).clamp(0, 1)
