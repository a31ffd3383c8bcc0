"""Where `stno-infer`'s time goes: seconds per output frame in each stage of the network.

Runs `stno.inference.upscale_video` (what `stno-infer` calls) with the shipped stno_tiny in bf16
on a clip made from the embedded sample at 320x180 -> 1280x720, x2 time, with timers around the
motion stage, the recurrence, the synthesised frames' propagation and the decoder. The stages run
inside the real pipeline (reader and writer threads share the cores), so they add up to about
the whole.

    python benchmarks/bench_infer_stages.py                 # 25 inputs, window 6
    python benchmarks/bench_infer_stages.py --frames 60 --window 12
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from stno.data import VideoWriter, read_video_frames, sample_video_path
from stno.inference import upscale_video
from stno.inference.runtime import WithPrecision
from stno.io.checkpoint import load_pretrained
from stno.ops.imresize import imresize


def timed(owner, name: str, key: str, totals: dict) -> None:
    function = getattr(owner, name)

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        result = function(*args, **kwargs)
        totals[key] = totals.get(key, 0.0) + time.perf_counter() - started
        return result

    setattr(owner, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--window", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work:
        clip = Path(work) / "input.mp4"
        frames = read_video_frames(sample_video_path(), count=args.frames).float() / 255
        with VideoWriter(clip, fps=25) as writer:
            writer.write(imresize(frames, out_size=(180, 320)).clamp(0, 1))
        net, _ = load_pretrained("stno_tiny")
        totals: dict[str, float] = {}
        timed(net.motion, "forward", "motion", totals)
        timed(net.propagation, "_recurrence", "recurrence", totals)
        timed(net.propagation, "_synthesised", "synthesised frames", totals)
        timed(net, "_decode", "decoder", totals)
        summary = upscale_video(
            WithPrecision(net, "bf16"),
            clip,
            Path(work) / "out.mp4",
            out_size=(720, 1280),
            time_scale=2,
            window=args.window,
            progress=False,
        )
    count = summary["output_frames"]
    print(
        f"# {args.frames} inputs -> {count} outputs, window {args.window}, {args.threads} threads"
    )
    print("| stage | s / output frame |")
    print("|---|---:|")
    for key, seconds in totals.items():
        print(f"| {key} | {seconds / count:.3f} |")
    print(f"| whole `upscale_video` | {summary['seconds_per_output_frame']:.3f} |")


if __name__ == "__main__":
    main()
