"""Peak memory of decoding a whole video (`read_video_frames`) and of scene detection on it.

    python benchmarks/bench_video_memory.py ../shared/data/train-videos/one-by-one-person-detection.mp4

Prints the decoded size and the process's peak resident memory after decoding and after
`detect_scene_cuts` (what a corpus training run does to every video when it starts).
"""

from __future__ import annotations

import resource
import sys

from stno.data.scenes import detect_scene_cuts
from stno.io.video import read_video_frames


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def main() -> None:
    frames = read_video_frames(sys.argv[1])
    decoded = peak_gib()
    cuts = detect_scene_cuts(frames)
    print(
        f"{sys.argv[1]}: {frames.numel() / 1e9:.2f} GB decoded (uint8); peak RSS after decoding "
        f"{decoded:.2f} GiB, after scene detection {peak_gib():.2f} GiB; cuts at {cuts}"
    )


if __name__ == "__main__":
    main()
