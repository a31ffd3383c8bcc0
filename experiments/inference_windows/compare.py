"""Y-PSNR of stno-infer's windowed inference on the dev clips, per window length.

The clip's frames are the ground truth; the input is every other frame, MATLAB-bicubic
downscaled x4 (the benchmarks' degradation). Each window length runs the same windowed
inference as `stno-infer` (``stno.inference.upscale`` windows, the network's ``stream``), in
bf16 with the shipped stno_tiny weights; frames are quantized to 8 bits as a video writer would.
Reports the mean Y-PSNR (dB) over all output frames, inputs and in-between frames separately.

    python experiments/inference_windows/compare.py ../shared/data/dev-videos/bikes.mp4 \
        ../shared/data/dev-videos/carphone_pristine.mp4 --frames 49 --windows 6 12
"""

from __future__ import annotations

import argparse
import time

import torch

from stno.inference.windows import plan_windows
from stno.io.checkpoint import load_pretrained
from stno.io.video import read_video_frames
from stno.ops.imresize import imresize
from stno.ops.metrics import psnr, quantize_8bit, rgb_to_y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="+")
    parser.add_argument("--frames", type=int, default=49, help="ground-truth frames (odd)")
    parser.add_argument("--windows", type=int, nargs="+", default=[6, 12])
    parser.add_argument("--precision", default="bf16")
    args = parser.parse_args()
    torch.set_num_threads(2)
    net, _ = load_pretrained("stno_tiny")
    print("| clip | window | Y-PSNR all | inputs | in-between | s / output frame |")
    print("|---|---:|---:|---:|---:|---:|")
    for video in args.videos:
        truth = read_video_frames(video, count=args.frames).float() / 255
        H, W = (s - s % 4 for s in truth.shape[-2:])
        truth = truth[..., :H, :W]
        lr = imresize(truth[0::2], out_size=(H // 4, W // 4)).clamp(0, 1)
        for window in args.windows:
            outs = []
            started = time.perf_counter()
            with torch.no_grad():
                for plan in plan_windows(lr.shape[0], window, 1):
                    begin = (plan.own_from - plan.first) * 2
                    end = (plan.own_to - plan.first) * 2 + (1 if plan.is_last else 0)
                    clip = lr[plan.first : plan.last + 1].unsqueeze(0)
                    stream = net.stream(
                        clip, [0.5], (H, W), precision=args.precision, outputs=slice(begin, end)
                    )
                    outs += [frame[0] for frame in stream]
            seconds = (time.perf_counter() - started) / len(outs)
            out = torch.stack(outs)
            assert out.shape == truth.shape, (out.shape, truth.shape)
            scores = psnr(rgb_to_y(quantize_8bit(out) / 255), rgb_to_y(truth))
            name = video.rsplit("/", 1)[-1]
            print(
                f"| {name} | {window} | {scores.mean():.3f} | {scores[0::2].mean():.3f} | "
                f"{scores[1::2].mean():.3f} | {seconds:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
