"""Attention over token sets: Galerkin-type (softmax-free, linear cost) and ordinary softmax.

Galerkin attention (Cao, "Choose a Transformer: Fourier or Galerkin", 2021) normalises keys and
values per head with a layer norm and computes ``Q (K^T V) / N``. The ``d x d`` matrix ``K^T V``
is a sum over the N key tokens, so cost and memory are O(N d^2) and no N x N matrix is formed.
Because ``K^T V`` is a plain sum it can be accumulated over chunks of tokens, which the
continuous decoder uses to decode any number of target pixels in bounded memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from stno.errors import ConfigError

__all__ = [
    "HeadLayerNorm",
    "GalerkinAttention",
    "SoftmaxAttention",
    "galerkin_attend",
]


class HeadLayerNorm(nn.Module):
    """Layer norm over the channel axis of each head, with a separate affine map per head.

    Input and output: (B, heads, N, d).

    Args:
        unbiased_std: divide by the unbiased standard deviation plus ``eps``,
            ``(x - mean) / (std_{d-1} + eps)``, as the reference code does, instead of
            ``(x - mean) / sqrt(var + eps)`` (off: the usual layer norm).
    """

    def __init__(self, heads: int, dim_head: int, eps: float = 1e-5, unbiased_std: bool = False):
        super().__init__()
        self.eps = eps
        self.unbiased_std = unbiased_std
        self.weight = nn.Parameter(torch.ones(heads, 1, dim_head))
        self.bias = nn.Parameter(torch.zeros(heads, 1, dim_head))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unbiased_std:
            x = (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + self.eps)
        else:
            x = F.layer_norm(x, x.shape[-1:], eps=self.eps)
        return x * self.weight + self.bias


def galerkin_attend(
    q: torch.Tensor, stats: torch.Tensor, count: int | torch.Tensor
) -> torch.Tensor:
    """Apply accumulated Galerkin statistics to queries.

    Args:
        q: (B, heads, Nq, d) queries.
        stats: (B, heads, d, e) the sum over key tokens of ``k^T v``.
        count: number of key tokens the sum ran over (the N in ``/ N``).
    Returns:
        (B, heads, Nq, e).
    """
    return q @ (stats / count)


class _MultiHeadProjections(nn.Module):
    """The Q, K/V and output projections that both attention kinds share."""

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        dim_head: int | None = None,
        context_dim: int | None = None,
        qkv_bias: bool = True,
    ):
        super().__init__()
        dim_head = dim_head or dim // heads
        if dim_head * heads == 0:
            raise ConfigError(f"dim={dim} and heads={heads} give no channels per head")
        inner = dim_head * heads
        self.heads = heads
        self.dim_head = dim_head
        self.to_q = nn.Linear(dim, inner, bias=qkv_bias)
        self.to_kv = nn.Linear(context_dim or dim, 2 * inner, bias=qkv_bias)
        self.to_out = nn.Linear(inner, dim)
        self.head_layers()

    def head_layers(self) -> None:
        """Layers of an attention kind that act per head (built once heads and widths are known)."""

    def queries(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, dim) -> (B, heads, N, d)."""
        return rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.heads)

    def raw_keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, M, context_dim) -> keys and values, each (B, heads, M, d)."""
        return rearrange(self.to_kv(context), "b m (two h d) -> two b h m d", two=2, h=self.heads)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, heads, N, d) -> output projection (B, N, dim)."""
        return self.to_out(rearrange(x, "b h n d -> b n (h d)"))


class GalerkinAttention(_MultiHeadProjections):
    """Multi-head softmax-free attention: ``out = W_o [Q (LN(K)^T LN(V)) / N]``.

    Works as self-attention (``context=None``) or cross-attention, where the query and context
    token sets may have different sizes. Memory and time are linear in the token counts.

    Args:
        dim: channels of the query tokens (and of the output).
        heads: number of heads; ``dim_head = dim // heads`` unless given.
        context_dim: channels of the context tokens (default ``dim``).
        qkv_bias: bias in the Q/K/V projections.
    """

    def head_layers(self) -> None:
        self.k_norm = HeadLayerNorm(self.heads, self.dim_head)
        self.v_norm = HeadLayerNorm(self.heads, self.dim_head)

    def keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, M, context_dim) -> normalised keys and values, each (B, heads, M, d)."""
        k, v = self.raw_keys_values(context)
        return self.k_norm(k), self.v_norm(v)

    def statistics(self, context: torch.Tensor) -> torch.Tensor:
        """Sum over the context tokens of ``k^T v``: (B, M, C) -> (B, heads, d, d).

        Sums of chunks add up to the sum over all tokens, which makes chunked evaluation exact.
        """
        k, v = self.keys_values(context)
        return k.transpose(-2, -1) @ v

    def attend(
        self, x: torch.Tensor, stats: torch.Tensor, count: int | torch.Tensor
    ) -> torch.Tensor:
        """Output for queries ``x`` (B, N, dim) given precomputed statistics over ``count`` tokens."""
        out = galerkin_attend(self.queries(x), stats, count)
        return self.merge_heads(out)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, N, dim) queries; context: (B, M, context_dim) or None for self-attention.

        Returns (B, N, dim).
        """
        context = x if context is None else context
        return self.attend(x, self.statistics(context), context.shape[1])


class SoftmaxAttention(_MultiHeadProjections):
    """Ordinary multi-head ``softmax(Q K^T / sqrt(d)) V`` behind the same interface.

    It forms the N x M attention matrix explicitly (O(N M) memory); it exists for comparisons
    with :class:`GalerkinAttention`.
    """

    @property
    def scale(self) -> float:
        return self.dim_head**-0.5

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        q = self.queries(x)
        k, v = self.raw_keys_values(context)
        weights = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        return self.merge_heads(weights @ v)
