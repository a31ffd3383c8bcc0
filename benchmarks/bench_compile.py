"""torch.compile (CPU, inductor) of the continuous decoder of stno_tiny: compile time and speed.

    python benchmarks/bench_compile.py

2 LR frames 176x320 -> 704x1280, one timestamp, random weights, 2 threads: the eager call, then
the same call with ``net.decoder`` compiled (first call includes compilation). Needs a C++
compiler for inductor.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf" / "model" / "stno_tiny.yaml"


def timed(call, label: str) -> None:
    with torch.no_grad():
        start = time.perf_counter()
        call()
        first = time.perf_counter() - start
        times = []
        for _ in range(2):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    print(f"{label}: first call {first:.1f} s, then {min(times):.2f} s", flush=True)


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    net = instantiate(OmegaConf.load(CONF).net).eval()
    frames = torch.rand(1, 2, 3, 176, 320)

    def call():
        return net(frames, [0.5], (704, 1280), max_queries=65536)

    timed(call, "eager")
    net.decoder = torch.compile(net.decoder)
    timed(call, "compiled decoder")


if __name__ == "__main__":
    main()
