"""The validation curve of a release run against wall-clock time.

    python experiments/release/curve.py <run dir> <run log (stdout+stderr of stno-train)>

Step and validation figures come from the run's CSV metrics; the wall time of each epoch from the
progress bar lines in the log (the bar prints the elapsed time of the epoch), summed up to the
validation's epoch and interpolated within it.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path


def epoch_seconds(log: str) -> dict[int, tuple[float, int]]:
    """epoch -> (seconds, steps) from the last progress line of each epoch."""
    found: dict[int, tuple[float, int]] = {}
    pattern = re.compile(r"Epoch (\d+):\s+\d+%\S*\s+(\d+)/(\d+) \[(?:(\d+):)?(\d+):(\d+)")
    for line in log.replace("\r", "\n").splitlines():
        match = pattern.search(line)
        if match:
            epoch, done, _total, hours, minutes, seconds = match.groups()
            elapsed = int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)
            found[int(epoch)] = (float(elapsed), int(done))
    return found


def main() -> None:
    run, log = Path(sys.argv[1]), Path(sys.argv[2]).read_text(errors="replace")
    epochs = epoch_seconds(log)
    per_epoch = max(steps for _s, steps in epochs.values())
    rows = list(csv.DictReader(next(run.glob("csv/version_*/metrics.csv")).open()))
    print("| step | wall time (min) | val Y-PSNR (dB) | bicubic_blend (dB) | gain (dB) |")
    print("|---:|---:|---:|---:|---:|")
    for row in rows:
        if not row.get("val/psnr_y"):
            continue
        step = int(row["step"]) + 1
        epoch, within = divmod(step, per_epoch)
        seconds = sum(epochs[e][0] for e in range(epoch) if e in epochs)
        if epoch in epochs and epochs[epoch][1]:
            seconds += epochs[epoch][0] * min(1.0, within / epochs[epoch][1])
        print(
            f"| {step} | {seconds / 60:.0f} | {float(row['val/psnr_y']):.2f} | "
            f"{float(row['val/bicubic_psnr_y']):.2f} | {float(row['val/gain_psnr_y']):+.2f} |"
        )


if __name__ == "__main__":
    main()
