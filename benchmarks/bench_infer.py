"""Benchmark `stno-infer`'s code path on CPU: seconds per output frame and peak memory.

Each case runs in its own Python process (so peak resident memory, ru_maxrss, is that case's
alone) and upscales a short clip made from the embedded sample (resized to the input size)
with `stno.inference.upscale_video`, the function `stno-infer` calls, writing an mp4.
Networks have random weights (speed and memory do not depend on the values), or with
``--shipped`` the weights shipped in the package (stno_tiny cases only).

    python benchmarks/bench_infer.py            # all cases, ~10 min on 2 cores
    python benchmarks/bench_infer.py --only tiny --precision bf16
    STNO_BENCH_THREADS=1 python benchmarks/bench_infer.py --name "tiny x4 x2"

Cases: stno_tiny and stno_base at 320x180 -> 1280x720 (x4 space, x2 time) and x4 space x8
time; peak memory with two chunk sizes (max_queries); peak memory at 2x the output area.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = [
    # name, preset, input frames, input (h, w), out size, time scale, max_queries
    # 25 inputs (1 s at 25 fps): several windows, so the figure is the steady state of a clip
    ("tiny x4 x2", "stno_tiny", 25, (180, 320), (720, 1280), 2, 65536),
    ("tiny x4 x8", "stno_tiny", 13, (180, 320), (720, 1280), 8, 65536),
    # 4 inputs: one window, with the start-up (first calls, pipeline fill) in the figure
    ("tiny x4 x2, 4-frame clip", "stno_tiny", 4, (180, 320), (720, 1280), 2, 65536),
    ("tiny x4 x2, chunk 16k", "stno_tiny", 4, (180, 320), (720, 1280), 2, 16384),
    ("tiny x4 x2, chunk 256k", "stno_tiny", 4, (180, 320), (720, 1280), 2, 262144),
    ("tiny x5.66 x2 (2x area), chunk 64k", "stno_tiny", 4, (180, 320), (1018, 1810), 2, 65536),
    ("base x4 x2", "stno_base", 3, (180, 320), (720, 1280), 2, 65536),
    ("base x4 x8", "stno_base", 2, (180, 320), (720, 1280), 8, 65536),
    ("base x4 x2, chunk 16k", "stno_base", 3, (180, 320), (720, 1280), 2, 16384),
    ("base x5.66 x2 (2x area), chunk 64k", "stno_base", 3, (180, 320), (1018, 1810), 2, 65536),
    ("tiny 720p -> 4K x2", "stno_tiny", 2, (720, 1280), (2160, 3840), 2, 65536),
]


def max_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(spec: dict) -> dict:
    """Child process: make the clip, build the net, upscale, report JSON on stdout."""
    import torch
    from omegaconf import OmegaConf

    from stno.data import VideoWriter, read_video_frames, sample_video_path
    from stno.inference import upscale_video
    from stno.io.configs import config_dir
    from stno.nn import STNO
    from stno.ops.imresize import imresize

    torch.set_num_threads(int(os.environ.get("STNO_BENCH_THREADS", "2")))
    work = Path(spec["work"])
    clip = work / f"input_{spec['frames']}_{spec['in_h']}x{spec['in_w']}.mp4"
    if not clip.exists():
        frames = read_video_frames(sample_video_path(), count=spec["frames"]).float() / 255
        with VideoWriter(clip, fps=25) as writer:
            writer.write(imresize(frames, out_size=(spec["in_h"], spec["in_w"])).clamp(0, 1))
    config = OmegaConf.to_container(
        OmegaConf.load(config_dir() / "model" / f"{spec['preset']}.yaml").net
    )
    config.pop("_target_")
    torch.manual_seed(0)
    net = STNO(**config).eval()
    if spec.get("shipped"):
        from stno.io.checkpoint import load_pretrained

        net, _ = load_pretrained(spec["preset"])
    if spec.get("precision", "fp32") != "fp32":
        from stno.inference.runtime import WithPrecision

        net = WithPrecision(net, spec["precision"])
    rss_before = max_rss_mib()
    started = time.perf_counter()
    summary = upscale_video(
        net,
        clip,
        work / f"out_{os.getpid()}.mp4",
        out_size=spec["out_size"],
        time_scale=spec["time_scale"],
        max_queries=spec["max_queries"],
        progress=False,
    )
    seconds = time.perf_counter() - started
    return {
        "output_frames": summary["output_frames"],
        "seconds": seconds,
        "seconds_per_output_frame": seconds / summary["output_frames"],
        "window": summary["window"],
        "peak_rss_mib": max_rss_mib(),
        "rss_before_run_mib": rss_before,
        "parameters": sum(p.numel() for p in net.parameters()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only cases whose name contains this text")
    parser.add_argument("--name", help="run only the case with exactly this name")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument(
        "--shipped", action="store_true", help="the shipped weights instead of random ones"
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return
    import torch

    threads = int(os.environ.get("STNO_BENCH_THREADS", "2"))
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"# stno-infer on CPU: torch {torch.__version__}, {threads} threads, {os.cpu_count()} cores "
        f"(load average {load} at start), {'shipped' if args.shipped else 'random'} weights, "
        f"mp4 output, precision {args.precision}"
    )
    print()
    print(
        "| case | input frames | output frames | window | s / output frame | peak RSS (MiB) | RSS before run (MiB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as work:
        for name, preset, frames, (in_h, in_w), out_size, time_scale, max_queries in CASES:
            if (args.only and args.only not in name) or (args.name and args.name != name):
                continue
            spec = dict(
                work=work,
                preset=preset,
                frames=frames,
                in_h=in_h,
                in_w=in_w,
                out_size=list(out_size),
                time_scale=time_scale,
                max_queries=max_queries,
                precision=args.precision,
                shipped=args.shipped,
            )
            completed = subprocess.run(
                [sys.executable, __file__, "--case", json.dumps(spec)],
                capture_output=True,
                text=True,
            )
            if completed.returncode != 0:
                print(
                    f"| {name} | failed: {completed.stderr.strip().splitlines()[-1]} | | | | | |",
                    flush=True,
                )
                continue
            result = json.loads(completed.stdout.strip().splitlines()[-1])
            print(
                f"| {name} ({in_w}x{in_h} -> {out_size[1]}x{out_size[0]}, max_queries {max_queries}) | {frames} | "
                f"{result['output_frames']} | {result['window']} | {result['seconds_per_output_frame']:.3f} | {result['peak_rss_mib']:.0f} | "
                f"{result['rss_before_run_mib']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
