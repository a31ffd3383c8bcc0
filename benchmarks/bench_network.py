"""Whole-network CPU benchmark: seconds and extra peak memory of one forward pass.

    python benchmarks/bench_network.py                  # stno_tiny and stno_base
    python benchmarks/bench_network.py --presets stno_tiny

Cases: 2 LR frames of 180x320 to 720x1280 (x4) with one timestamp (3 output frames); with 7
timestamps (x8 in time, 9 output frames) in one call versus 7 calls of one timestamp each
(what a one-t-per-pass network must do). Decoding is chunked (``--max-queries``) so that the
7-timestamp call fits in memory; weights are random (speed does not depend on them).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from measure import machine_line, run_case

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"

SETUP = """
from omegaconf import OmegaConf
from hydra.utils import instantiate
torch.manual_seed(0)
net = instantiate(OmegaConf.load("{conf}").net).eval()
frames = torch.rand(1, 2, 3, 180, 320)
"""
ONE_CALL = """
with torch.no_grad():
    net(frames, {times}, (720, 1280), max_queries={mq})
"""
SEPARATE_CALLS = """
with torch.no_grad():
    for t in {times}:
        net(frames, [t], (720, 1280), max_queries={mq})
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["stno_tiny", "stno_base"])
    parser.add_argument("--max-queries", type=int, default=262144)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    seven = [i / 8 for i in range(1, 8)]
    print(f"# Network benchmark ({machine_line()})\n")
    print("2 LR frames 180x320 -> 720x1280, max_queries =", args.max_queries, "\n")
    print("| preset | case | output frames | seconds | s / output frame | extra peak MiB |")
    print("|---|---|---:|---:|---:|---:|")
    for name in args.presets:
        setup = SETUP.format(conf=CONF / f"{name}.yaml")
        cases = [
            ("1 timestamp", ONE_CALL.format(times=[0.5], mq=args.max_queries), 3),
            ("7 timestamps, one call", ONE_CALL.format(times=seven, mq=args.max_queries), 9),
            ("7 timestamps, 7 calls", SEPARATE_CALLS.format(times=seven, mq=args.max_queries), 9),
        ]
        for label, call, frames_out in cases:
            r = run_case(setup, call, repeats=args.repeats, warmup=False)
            print(
                f"| {name} | {label} | {frames_out} | {r['seconds']:.1f} | "
                f"{r['seconds'] / frames_out:.2f} | {r['extra_peak_mib']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
