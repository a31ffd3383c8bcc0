"""The decoder's inference pass on CPU: compiled C (stno/nn/native.py) against the torch path.

Decodes one 320x180 feature map of the shipped stno_tiny decoder to 1280x720 (x4), in fp32 and
under bf16 autocast, and prints milliseconds per frame (best of 5) for each path and the largest
difference between the two outputs.

    python benchmarks/bench_decoder_pass.py            # 2 torch threads
    STNO_BENCH_THREADS=1 python benchmarks/bench_decoder_pass.py
"""

from __future__ import annotations

import os
import time

import torch

from stno.io.checkpoint import load_pretrained
from stno.nn.native import native_status


def main() -> None:
    torch.set_num_threads(int(os.environ.get("STNO_BENCH_THREADS", "2")))
    net, _ = load_pretrained("stno_tiny")
    decoder = net.decoder.eval()
    torch.manual_seed(0)
    feat = torch.randn(1, 32, 180, 320)
    skip = torch.rand(1, 3, 180, 320)
    print(f"# decoder pass, 320x180 -> 1280x720, {torch.get_num_threads()} threads")
    print(f"# compiled pass: {native_status()}")
    print()
    print("| precision | torch path (ms) | compiled pass (ms) | speed-up | max abs difference |")
    print("|---|---:|---:|---:|---:|")
    for precision in ("fp32", "bf16"):
        times, outs = {}, {}
        for native in (False, True):
            decoder.native = native
            best = float("inf")
            with torch.no_grad(), torch.autocast("cpu", enabled=precision == "bf16"):
                for _ in range(5):
                    started = time.perf_counter()
                    outs[native] = decoder(feat, (720, 1280), 65536, skip=skip)
                    best = min(best, time.perf_counter() - started)
            times[native] = best * 1000
        decoder.native = True
        difference = (outs[True] - outs[False]).abs().max().item()
        print(
            f"| {precision} | {times[False]:.1f} | {times[True]:.1f} | "
            f"{times[False] / times[True]:.2f}x | {difference:.1e} |"
        )


if __name__ == "__main__":
    main()
