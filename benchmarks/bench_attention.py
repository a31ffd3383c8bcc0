"""Galerkin vs softmax attention: time and extra peak memory at 1K-64K tokens (CPU).

    python benchmarks/bench_attention.py            # prints a markdown table

The setting is the motion stage's: 128 channels, 8 heads, self-attention over N tokens
(a whole feature map of N pixels). Softmax attention forms the N x N matrix per head and is
skipped where that matrix alone would exceed ``--softmax-limit-gb``.
"""

from __future__ import annotations

import argparse

from measure import machine_line, run_case

SETUP = """
from stno.nn import {cls}
torch.manual_seed(0)
attn = {cls}(dim=128, heads=8).eval()
x = torch.randn(1, {n}, 128)
"""
CALL = """
with torch.no_grad():
    attn(x)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    parser.add_argument("--softmax-limit-gb", type=float, default=6.0)
    args = parser.parse_args()

    print(f"# Attention benchmark ({machine_line()})\n")
    print("| tokens | Galerkin s | Galerkin MiB | softmax s | softmax MiB |")
    print("|---:|---:|---:|---:|---:|")
    previous = None
    for n in args.tokens:
        g = run_case(SETUP.format(cls="GalerkinAttention", n=n), CALL, repeats=7)
        matrix_gb = 8 * n * n * 4 / 1e9
        if matrix_gb <= args.softmax_limit_gb:
            s = run_case(SETUP.format(cls="SoftmaxAttention", n=n), CALL, repeats=1)
            soft = f"{s['seconds']:.4f} | {s['extra_peak_mib']:.0f}"
        else:
            soft = f"skipped | (N x N x 8 heads = {matrix_gb:.0f} GB)"
        growth = "" if previous is None else f" (x{g['seconds'] / previous:.1f} time)"
        print(f"| {n} | {g['seconds']:.4f}{growth} | {g['extra_peak_mib']:.0f} | {soft} |")
        previous = g["seconds"]


if __name__ == "__main__":
    main()
