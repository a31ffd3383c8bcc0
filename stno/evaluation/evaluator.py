"""Run a network over a benchmark protocol and score every selected frame.

One device, a plain torch loop: each window of the protocol reads its HR frames, makes the LR
inputs (``stno.data.make_lr``: MATLAB bicubic, 8-bit), runs the network's one-pass
multi-timestamp call with ``max_queries`` chunking, and scores the window's selected frames
with ``stno.ops.metrics.frame_metrics`` (Y and RGB, 8-bit, ``crop_border``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stno.data import FrameSource, VideoWriter, make_lr, write_png_frames
from stno.errors import ConfigError
from stno.ops.metrics import frame_metrics

from .benchmarks import Protocol
from .report import METRIC_NAMES

__all__ = ["FrameScore", "EvaluationResult", "evaluate", "side_by_side", "comparison_panel"]


@dataclass
class FrameScore:
    """Metrics of one scored output frame."""

    sequence: str
    index: int
    window: int
    metrics: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "index": self.index,
            "window": self.window,
            **self.metrics,
        }


@dataclass
class EvaluationResult:
    """Every scored frame, in evaluation order, with run statistics."""

    frames: list[FrameScore] = field(default_factory=list)
    sequence_names: list[str] = field(default_factory=list)
    seconds: float = 0.0
    network_seconds: float = 0.0
    output_frames: int = 0


def _safe_name(name: str) -> str:
    return name.replace("/", "_").replace("\\", "_")


def side_by_side(images: Iterable[torch.Tensor], gap: int = 4) -> torch.Tensor:
    """(3, h, w) images in [0, 1] -> one (3, h, sum(w) + gaps) image with white gaps."""
    images = list(images)
    height = images[0].shape[-2]
    white = torch.ones(3, height, gap, dtype=images[0].dtype)
    parts = []
    for i, image in enumerate(images):
        if i:
            parts.append(white)
        parts.append(image)
    return torch.cat(parts, dim=-1)


def comparison_panel(
    images: list[torch.Tensor], labels: list[str], crop: int = 160, zoom: int = 2
) -> torch.Tensor:
    """Labelled side-by-side centre crops of (3, H, W) images in [0, 1], each above a ``zoom``x
    nearest-neighbour enlargement of its own centre (detail is what differs): (3, h, w)."""
    columns = []
    for image, label in zip(images, labels, strict=True):
        view = _center_crop(image.float().clamp(0, 1), crop)
        detail = _center_crop(view, max(1, crop // zoom))
        detail = detail.repeat_interleave(zoom, dim=-2).repeat_interleave(zoom, dim=-1)
        width = max(view.shape[-1], detail.shape[-1])
        stacked = torch.cat(
            [
                _pad_to_width(_with_label(view, label), width),
                torch.ones(3, 4, width),
                _pad_to_width(detail, width),
            ],
            dim=-2,
        )
        columns.append(stacked)
    height = max(c.shape[-2] for c in columns)
    columns = [
        torch.cat([c, torch.ones(3, height - c.shape[-2], c.shape[-1])], -2) for c in columns
    ]
    return side_by_side(columns)


def _with_label(image: torch.Tensor, text: str, height: int = 14) -> torch.Tensor:
    """(3, h, w) in [0, 1] with a white strip of ``height`` px above it, ``text`` written in it."""
    import numpy as np
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (image.shape[-1], height), "white")
    ImageDraw.Draw(strip).text((2, 1), text, fill="black")
    strip = torch.from_numpy(np.asarray(strip).copy()).permute(2, 0, 1).float() / 255
    return torch.cat([strip, image], dim=-2)


def _pad_to_width(image: torch.Tensor, width: int) -> torch.Tensor:
    return torch.cat([image, torch.ones(3, image.shape[-2], width - image.shape[-1])], dim=-1)


def _center_crop(frames: torch.Tensor, size: int) -> torch.Tensor:
    height, width = frames.shape[-2:]
    crop_h, crop_w = min(size, height), min(size, width)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return frames[..., top : top + crop_h, left : left + crop_w]


@torch.no_grad()
def evaluate(
    net: nn.Module,
    source: FrameSource,
    protocol: Protocol,
    crop_border: int = 0,
    max_queries: int | None = None,
    device: str | torch.device = "cpu",
    output_dir: str | Path | None = None,
    save_frames: bool = False,
    save_video: bool = False,
    video_fps: float = 25.0,
    save_comparisons: bool = False,
    num_comparisons: int = 4,
    comparison_crop: int = 160,
    progress: bool = False,
    compare: bool = False,
) -> EvaluationResult:
    """Evaluate ``net`` on every sequence of ``source`` with ``protocol``.

    Args:
        net: ``net(frames (1, T, 3, h, w), times, (H, W), max_queries) -> (1, O, 3, H, W)`` in [0, 1].
        source: the benchmark's frames (``.sequences``, ``.read``).
        protocol: windows, timestamps and space scale (``make_protocol``).
        crop_border: pixels removed on every side before scoring.
        max_queries: target pixels decoded at once (memory bound; same result as unchunked).
        output_dir: where ``save_frames`` (``frames/<seq>/<index>.png``), ``save_video``
            (``videos/<seq>.mp4``) and ``save_comparisons`` (``comparisons/*.png``:
            bicubic+blend | model | ground truth, centre crops with labels and a 2x zoom of
            their centre) write.
        compare: also score the ``bicubic_blend`` baseline on the same frames: each frame gets
            ``bicubic_psnr_y``, ``bicubic_ssim_y`` and the model's ``gain_psnr_y``, ``gain_ssim_y``.
    Returns:
        :class:`EvaluationResult` with one :class:`FrameScore` per scored frame.
    """
    from stno.nn import BicubicBlend

    if crop_border < 0:
        raise ConfigError(f"crop_border must be >= 0, got {crop_border}")
    if max_queries is not None and int(max_queries) < 1:
        raise ConfigError(f"max_queries must be a positive integer or null, got {max_queries}")
    if (save_frames or save_video or save_comparisons) and output_dir is None:
        raise ConfigError("save_frames/save_video/save_comparisons need an output_dir")
    output_dir = Path(output_dir) if output_dir is not None else None
    device = torch.device(device)
    net = net.to(device).eval()
    baseline = BicubicBlend() if save_comparisons or compare else None
    result = EvaluationResult()
    started = time.perf_counter()
    sequences = list(source.sequences)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        plan = {name: protocol.windows(count) for name, count in sequences}
        bar = tqdm(total=sum(len(w) for w in plan.values()), unit="window", desc="stno-eval")
    comparisons_done = 0
    for sequence_number, (name, count) in enumerate(sequences):
        windows = protocol.windows(count)
        result.sequence_names.append(name)
        last_written = -1
        writer = None
        if save_video:
            (output_dir / "videos").mkdir(parents=True, exist_ok=True)
            writer = VideoWriter(output_dir / "videos" / f"{_safe_name(name)}.mp4", fps=video_fps)
        # the writer renames its temporary file only when the sequence completes
        with writer if writer is not None else contextlib.nullcontext():
            for window_number, window in enumerate(windows):
                hr = source.read(name, list(window.outputs)).float() / 255.0
                hr, lr = make_lr(hr, protocol.space_scale)
                lr_inputs = lr[[i - window.first for i in window.inputs]]
                lr_inputs = lr_inputs.unsqueeze(0).to(device)
                out_size = tuple(hr.shape[-2:])
                tic = time.perf_counter()
                prediction = net(lr_inputs, protocol.times, out_size, max_queries=max_queries)[0]
                result.network_seconds += time.perf_counter() - tic
                result.output_frames += prediction.shape[0]
                if prediction.shape[0] != len(window.outputs):
                    raise RuntimeError(
                        f"network returned {prediction.shape[0]} frames for a window of {len(window.outputs)}"
                    )
                positions = [i - window.first for i in window.scored]
                scored = prediction[positions].float().cpu()
                metrics = frame_metrics(scored, hr[positions], crop_border=crop_border)
                bicubic_all = None
                if compare:
                    bicubic_all = baseline(lr_inputs.cpu(), protocol.times, out_size)[0]
                    reference = frame_metrics(
                        bicubic_all[positions], hr[positions], crop_border=crop_border
                    )
                for k, index in enumerate(window.scored):
                    values = {key: float(metrics[key][k]) for key in METRIC_NAMES}
                    if compare:
                        for key in ("psnr_y", "ssim_y"):
                            values[f"bicubic_{key}"] = float(reference[key][k])
                            values[f"gain_{key}"] = values[key] - values[f"bicubic_{key}"]
                    result.frames.append(FrameScore(name, index, window_number, values))
                if save_frames:
                    _write_indexed(scored, window.scored, output_dir / "frames" / name)
                if writer is not None:
                    for k, index in enumerate(window.scored):
                        if index > last_written:  # GoPro windows share boundary frames
                            writer.write(scored[k])
                            last_written = index
                if (
                    save_comparisons
                    and comparisons_done < num_comparisons
                    and window_number == len(windows) // 2
                ):
                    middle = positions[len(positions) // 2]
                    if bicubic_all is None:
                        bicubic_all = baseline(lr_inputs.cpu(), protocol.times, out_size)[0]
                    panel = comparison_panel(
                        [bicubic_all[middle], prediction[middle].float().cpu(), hr[middle]],
                        ["bicubic+blend", "model", "ground truth"],
                        comparison_crop,
                    )
                    index = window.first + middle
                    write_png_frames(
                        panel.unsqueeze(0),
                        output_dir / "comparisons",
                        name_format=f"{sequence_number:03d}_{_safe_name(name)}_{index:08d}.png",
                    )
                    comparisons_done += 1
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    result.seconds = time.perf_counter() - started
    return result


def _write_indexed(frames: torch.Tensor, indices: Iterable[int], folder: Path) -> None:
    for frame, index in zip(frames, indices, strict=True):
        write_png_frames(frame.unsqueeze(0), folder, name_format=f"{index:08d}.png")
