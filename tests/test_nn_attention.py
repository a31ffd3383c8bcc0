"""Galerkin and softmax attention against direct evaluations of their formulas."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from stno.nn import GalerkinAttention, SoftmaxAttention


def _linear(x, layer):
    return x @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()


def _head_layer_norm(x, norm, eps=1e-5):
    # x: (B, heads, N, d); normalise every token of every head over its d channels
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    w = norm.weight.detach().double().numpy()
    b = norm.bias.detach().double().numpy()
    return (x - mean) / np.sqrt(var + eps) * w + b


def _split_heads(x, heads):
    b, n, c = x.shape
    return x.reshape(b, n, heads, c // heads).transpose(0, 2, 1, 3)


def galerkin_reference(attn: GalerkinAttention, x: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    """out = W_o [ Q (LN(K)^T LN(V)) / N ], in float64 numpy, head by head."""
    h = attn.heads
    q = _split_heads(_linear(x, attn.to_q), h)
    kv = _linear(ctx, attn.to_kv)
    inner = kv.shape[-1] // 2
    k = _head_layer_norm(_split_heads(kv[..., :inner], h), attn.k_norm)
    v = _head_layer_norm(_split_heads(kv[..., inner:], h), attn.v_norm)
    n_keys = ctx.shape[1]
    out = np.zeros_like(q)
    for bi in range(q.shape[0]):
        for hi in range(h):
            out[bi, hi] = q[bi, hi] @ (k[bi, hi].T @ v[bi, hi]) / n_keys
    out = out.transpose(0, 2, 1, 3).reshape(x.shape[0], x.shape[1], -1)
    return _linear(out, attn.to_out)


@pytest.mark.parametrize("n_query,n_key", [(7, 7), (5, 11), (13, 3)])
def test_galerkin_equals_formula(n_query, n_key):
    torch.manual_seed(0)
    attn = GalerkinAttention(dim=24, heads=3, context_dim=10)
    # give the per-head norms non-trivial affine parameters so they are really tested
    with torch.no_grad():
        for norm in (attn.k_norm, attn.v_norm):
            norm.weight.normal_()
            norm.bias.normal_()
    x = torch.randn(2, n_query, 24, dtype=torch.float64)
    ctx = torch.randn(2, n_key, 10, dtype=torch.float64)
    got = attn.double()(x, ctx).detach().numpy()
    want = galerkin_reference(attn, x.numpy(), ctx.numpy())
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_galerkin_self_attention_and_chunked_statistics():
    torch.manual_seed(1)
    attn = GalerkinAttention(dim=16, heads=4).double()
    x = torch.randn(1, 50, 16, dtype=torch.float64)
    full = attn(x)
    np.testing.assert_allclose(
        full.detach().numpy(), galerkin_reference(attn, x.numpy(), x.numpy()), atol=1e-9
    )
    # K^T V is a sum over tokens: statistics of chunks add up to the whole
    stats = attn.statistics(x[:, :20]) + attn.statistics(x[:, 20:])
    chunked = torch.cat(
        [attn.attend(x[:, :31], stats, 50), attn.attend(x[:, 31:], stats, 50)], dim=1
    )
    torch.testing.assert_close(chunked, full)


def test_softmax_attention_equals_formula():
    torch.manual_seed(2)
    attn = SoftmaxAttention(dim=12, heads=2).double()
    x = torch.randn(1, 6, 12, dtype=torch.float64)
    ctx = torch.randn(1, 9, 12, dtype=torch.float64)
    q = _split_heads(_linear(x.numpy(), attn.to_q), 2)
    kv = _linear(ctx.numpy(), attn.to_kv)
    k, v = _split_heads(kv[..., :12], 2), _split_heads(kv[..., 12:], 2)
    logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(6)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out = (weights @ v).transpose(0, 2, 1, 3).reshape(1, 6, 12)
    np.testing.assert_allclose(attn(x, ctx).detach().numpy(), _linear(out, attn.to_out), atol=1e-9)


def test_galerkin_on_a_256x256_map_fits_in_ordinary_memory():
    """65,536 tokens: an N x N attention matrix alone would be 17 GB in float32."""
    script = textwrap.dedent(
        """
        import resource, torch
        from stno.nn import GalerkinAttention
        torch.manual_seed(0)
        attn = GalerkinAttention(dim=64, heads=8)
        x = torch.randn(1, 256 * 256, 64)
        with torch.no_grad():
            y = attn(x)
        assert y.shape == (1, 65536, 64) and torch.isfinite(y).all()
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    peak_mib = int(out.stdout.strip().splitlines()[-1])
    assert peak_mib < 2048, f"peak memory {peak_mib} MiB"
