"""Re-create the embedded sample ``city_sample.mp4`` from the CC0 clip ``cityCC0.mpg``.

    python -m stno.assets.make_sample /path/to/cityCC0.mpg

Decodes the source sequentially (seeking in this MPEG-2 file returns corrupt frames), keeps
frames ``--start`` .. ``--stop - 1`` (0-based; the shot ends at frame 114, a cut follows),
downscales them by MATLAB bicubic (antialiased, which also removes most MPEG-2 block noise)
and encodes them with H.264 (libx264, yuv420p, CRF 18) at the source frame rate.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stno.io.video import VideoWriter, probe_video, read_video_frames
from stno.ops.imresize import imresize

DEFAULT_OUTPUT = Path(__file__).with_name("city_sample.mp4")


def make_sample(
    source: Path,
    output: Path = DEFAULT_OUTPUT,
    start: int = 55,
    stop: int = 115,
    size: tuple[int, int] = (270, 480),
    crf: int = 18,
) -> Path:
    """Write frames ``start..stop-1`` of ``source`` at ``size`` (H, W) to ``output``; returns it."""
    _count, fps, _hw = probe_video(source)
    frames = read_video_frames(source, start=start, count=stop - start)
    small = imresize(frames.float() / 255.0, out_size=size).clamp(0, 1)
    with VideoWriter(output, fps=fps, crf=crf, pad_odd=False) as writer:
        writer.write(small)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="cityCC0.mpg")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--start", type=int, default=55)
    parser.add_argument("--stop", type=int, default=115)
    parser.add_argument("--height", type=int, default=270)
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--crf", type=int, default=18)
    args = parser.parse_args()
    path = make_sample(
        args.source, args.output, args.start, args.stop, (args.height, args.width), args.crf
    )
    count, fps, hw = probe_video(path)
    print(
        f"wrote {path}: {count} frames, {hw[1]}x{hw[0]}, {fps:g} fps, {path.stat().st_size} bytes"
    )


if __name__ == "__main__":
    main()
