"""An inference run of `stno-infer`, from its composed config (`conf/infer.yaml`): the model, the
input (`sample`: the clip embedded in the package), `upscale_video`, and what it says."""

from __future__ import annotations

import sys
from typing import Any

from omegaconf import DictConfig

from stno.data import sample_video_path
from stno.inference.runtime import load_model_from_config
from stno.inference.upscale import upscale_video
from stno.nn.native import native_status

__all__ = ["infer_from_config"]


def infer_from_config(cfg: DictConfig) -> dict[str, Any]:
    """Run the inference an `infer.yaml` config describes; returns the summary."""
    model = load_model_from_config(cfg, default_precision="auto")
    net, device, precision_line = model.net, model.device, model.precision_line
    model_name = model.name
    if model.info.get("shipped"):
        model_name += f" (the shipped weights, {model.info['path']})"
    source = cfg.input
    if str(source) == "sample":  # the clip embedded in the package
        source = sample_video_path()
    summary = upscale_video(
        net,
        source,
        cfg.output,
        space_scale=cfg.space_scale,
        time_scale=cfg.time_scale,
        out_size=list(cfg.out_size) if cfg.out_size is not None else None,
        fps=cfg.fps,
        input_fps=cfg.input_fps,
        window=int(cfg.window),
        context=int(cfg.context),
        max_queries=cfg.max_queries,
        device=device,
        progress=bool(cfg.progress),
        # stdout: stderr stays for the progress bar, the summary and a one-line error
        on_start=lambda plan: print(
            f"stno-infer: {model_name} on {device}, {precision_line}, window {plan['window']}"
            + (f", decoder: {native_status()}" if _decodes_on_cpu(net, device) else ""),
            flush=True,
        ),
        overwrite=bool(cfg.get("overwrite", False)),
        video_preset=str(cfg.get("video_preset", "veryfast")),
    )
    h, w = summary["input_size"]
    H, W = summary["output_size"]
    print(
        f"stno-infer: {model_name}: {summary['input_frames']} frames {w}x{h} @ {summary['input_fps']:g} fps -> "
        f"{summary['output_frames']} frames {W}x{H} @ {summary['output_fps']:g} fps in {summary['output']} "
        f"({summary['seconds']:.1f} s, {summary['seconds_per_output_frame']:.3f} s/frame)",
        file=sys.stderr,
        flush=True,
    )
    return summary


def _decodes_on_cpu(net, device) -> bool:
    """Whether the STNO decoder's CPU pass (compiled or torch, see stno.nn.native) runs."""
    return hasattr(net, "stream") and device.type == "cpu"
