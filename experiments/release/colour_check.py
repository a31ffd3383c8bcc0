"""Colour cast of a model on the report clips: per-channel mean of its outputs vs the ground truth.

    python experiments/release/colour_check.py <folder with bikes.mp4 and carphone_pristine.mp4> [ckpt]

Runs the `stno-eval` protocol (`benchmark=video`, x4 space, x2 time: every frame of each clip is an
output) with the shipped model (or `ckpt`), and prints, per clip, the mean R, G, B of the 8-bit
outputs and of the ground truth, and their difference in 8-bit levels.
"""

from __future__ import annotations

import sys

import torch

from stno.evaluation import evaluate, make_protocol
from stno.evaluation.benchmarks import Protocol, limit_source, video_or_frames
from stno.io.checkpoint import network_for


class Recorder(torch.nn.Module):
    """Passes calls to ``net`` and keeps the per-channel sums of the 8-bit outputs it scores."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.outputs: list[torch.Tensor] = []

    def forward(self, frames, times, out_size, max_queries=None):
        out = self.net(frames, times, out_size, max_queries=max_queries)
        self.outputs.append(torch.round(out[0].clamp(0, 1) * 255).mean(dim=(-2, -1)))
        return out


def main() -> None:
    root = sys.argv[1]
    net, info = network_for(None, sys.argv[2] if len(sys.argv) > 2 else None)
    protocol: Protocol = make_protocol("video", space_scale=4, time_scale=2)
    print(f"model: {info['path']} (step {info['global_step']})")
    print("| clip | channel | model mean | ground truth mean | difference (8-bit levels) |")
    print("|---|---|---:|---:|---:|")
    source = video_or_frames(root)
    for name, _count in source.sequences:
        one = limit_source(source, root, sequences=[name])
        recorder = Recorder(net)
        result = evaluate(recorder, one, protocol)
        # every output frame of every window (a frame shared by two windows counts twice)
        model = torch.cat(recorder.outputs).mean(dim=0)
        truth = source.read(name, sorted({f.index for f in result.frames})).float()
        truth = truth[..., : truth.shape[-2] // 4 * 4, : truth.shape[-1] // 4 * 4].mean(dim=(0, 2, 3))
        for channel, label in enumerate("RGB"):
            m, t = float(model[channel]), float(truth[channel])
            print(f"| {name} | {label} | {m:.2f} | {t:.2f} | {m - t:+.2f} |")


if __name__ == "__main__":
    main()
