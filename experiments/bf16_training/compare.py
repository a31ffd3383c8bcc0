"""Validation gain against training CPU time for runs made with `cpu_clock.CPUClock`.

    python experiments/bf16_training/compare.py <run dir> [<run dir> ...]

Reads each run's `csv/version_*/metrics.csv` and prints, per validation, the step, the training
CPU seconds (validation excluded), Y-PSNR and the gain over bicubic_blend; then the gain of each
run interpolated at the CPU times of the first run's validations (equal CPU time).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path


def curve(run_dir: Path) -> list[tuple[int, float, float, float]]:
    """(step, training CPU seconds, val Y-PSNR, val gain) at each validation of a run."""
    rows = [row for path in sorted(run_dir.glob("csv/version_*/metrics.csv")) for row in csv.DictReader(open(path))]
    clock = {int(r["step"]): float(r["train/cpu_seconds"]) for r in rows if r.get("train/cpu_seconds")}
    points = []
    for r in rows:
        if r.get("val/gain_psnr_y"):
            step = int(r["step"]) + 1  # Lightning logs validation at the step before the count
            if step in clock:
                points.append((step, clock[step], float(r["val/psnr_y"]), float(r["val/gain_psnr_y"])))
    return points


def at(points: list[tuple[int, float, float, float]], seconds: float) -> float | None:
    """Gain at `seconds` of CPU time, linearly between validations (None outside the run)."""
    for (_, s0, _, g0), (_, s1, _, g1) in zip(points, points[1:]):
        if s0 <= seconds <= s1:
            return g0 + (g1 - g0) * (seconds - s0) / (s1 - s0)
    return None


def main(run_dirs: list[str]) -> None:
    curves = {Path(d).name: curve(Path(d)) for d in run_dirs}
    for name, points in curves.items():
        print(f"\n{name}\n\n| step | training CPU s | s/step | val Y-PSNR (dB) | gain (dB) |\n|---:|---:|---:|---:|---:|")
        for step, seconds, psnr, gain in points:
            print(f"| {step} | {seconds:.0f} | {seconds / step:.2f} | {psnr:.2f} | {gain:+.2f} |")
    first = next(iter(curves.values()))
    names = list(curves)
    print("\nGain at equal training CPU time\n")
    print("| CPU s | " + " | ".join(names) + " |\n|---:|" + "---:|" * len(names))
    for _, seconds, _, _ in first:
        cells = [at(curves[n], seconds) for n in names]
        print(f"| {seconds:.0f} | " + " | ".join("" if c is None else f"{c:+.2f}" for c in cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
