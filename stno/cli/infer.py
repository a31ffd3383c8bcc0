"""`stno-infer`: any video (file or frame folder) to high resolution and high frame rate.

Examples:
    stno-infer input=clip.mp4 output=clip_x4_x2.mp4 ckpt_path=last.ckpt space_scale=4 time_scale=2
    stno-infer input=frames/ output=out_frames model=bicubic_blend out_size=[720,1280] time_scale=4

Streams the input through overlapping windows (memory does not grow with length), writes
exactly (N - 1) * time_scale + 1 frames at input fps * time_scale, and renames the output into
place only when complete.
"""

from __future__ import annotations

import sys
from typing import Any

import hydra
from omegaconf import DictConfig

from stno.cli.common import one_line_errors
from stno.io.configs import config_dir


def infer_from_config(cfg: DictConfig) -> dict[str, Any]:
    """Run the inference described by an `infer.yaml` config; returns the summary."""
    from stno.cli.eval import model_preset
    from stno.inference import upscale_video
    from stno.inference.runtime import at_precision
    from stno.io.checkpoint import network_for, resolve_device, set_threads

    device = resolve_device(cfg.device)
    set_threads(cfg.get("num_threads"))
    net, info = network_for(
        model_preset(cfg), cfg.ckpt_path, device=device, use_ema=bool(cfg.use_ema)
    )
    net, precision_line = at_precision(net, cfg.get("precision", "fp32"), device)
    model_name = info["preset"] or info["net_config"]["_target_"]
    if info.get("shipped"):
        model_name += f" (the shipped weights, {info['path']})"
    source = cfg.input
    if str(source) == "sample":  # the clip embedded in the package
        from stno.data import sample_video_path

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
            f"stno-infer: {model_name} on {device}, {precision_line}", flush=True
        ),
        overwrite=bool(cfg.get("overwrite", False)),
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


@one_line_errors("stno-infer")
def run(cfg: DictConfig) -> None:
    infer_from_config(cfg)


def main() -> Any:
    hydra_main = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="infer")(
        run
    )
    return hydra_main()


if __name__ == "__main__":
    main()
