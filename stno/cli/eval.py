"""`stno-eval`: score a checkpoint (or the bicubic_blend baseline) on a benchmark protocol.

Examples:
    stno-eval ckpt_path=outputs/2026-01-01/12-00-00/checkpoints/last.ckpt benchmark.root=/data/Vid4
    stno-eval model=bicubic_blend benchmark=gopro benchmark.root=/data/GoPro benchmark.selection=center
    stno-eval ckpt_path=last.ckpt benchmark=video benchmark.root=clip.mp4 space_scale=6 time_scale=4

Writes `<output_dir>/metrics.json` (per frame, per sequence, averages and every protocol
setting), `<output_dir>/metrics.md` (the table, also printed) and `config.yaml`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from stno.cli.common import one_line_errors
from stno.errors import ConfigError
from stno.io.configs import config_dir


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _default_output_dir(benchmark: str) -> Path:
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    base = Path("outputs") / "eval" / benchmark / stamp
    path, n = base, 1
    while path.exists():  # two runs started in the same second get their own folders
        path = base.with_name(f"{stamp}_{n}")
        n += 1
    return path


def model_preset(cfg: DictConfig) -> str | None:
    """The preset asked for with `model=NAME` (the model config's `preset`), or None."""
    model = cfg.get("model")
    if not model:
        return None
    return model.get("preset") or None


def evaluate_from_config(cfg: DictConfig) -> dict[str, Any]:
    """Run the evaluation described by an `eval.yaml` config; returns the metrics.json document."""
    from stno.evaluation import (
        evaluate,
        make_protocol,
        markdown_table,
        metrics_document,
        open_source,
        write_reports,
    )
    from stno.inference.runtime import at_precision
    from stno.io.checkpoint import network_for, resolve_device, set_threads

    bench = cfg.benchmark
    name = bench.name
    crop_border = int(cfg.crop_border)
    if crop_border < 0:
        raise ConfigError(f"crop_border must be >= 0, got {crop_border}")
    protocol = make_protocol(
        name,
        space_scale=cfg.space_scale,
        time_scale=cfg.time_scale,
        times=list(cfg.times) if cfg.get("times") else None,
        mode=bench.get("mode", "window"),
        num_inputs=int(bench.get("num_inputs", 4)),
        selection=bench.get("selection", "average"),
        stride=bench.get("stride"),
    )
    source = open_source(
        name,
        bench.root,
        list_file=bench.get("list_file"),
        split=bench.get("split"),
        sequences=list(bench.sequences) if bench.get("sequences") else None,
        max_frames=bench.get("max_frames"),
    )
    device = resolve_device(cfg.device)
    set_threads(cfg.get("num_threads"))
    net, info = network_for(
        model_preset(cfg), cfg.ckpt_path, device=device, use_ema=bool(cfg.use_ema)
    )
    net, precision_line = at_precision(net, cfg.get("precision", "fp32"), device)
    model_name = info["preset"] or info["net_config"]["_target_"]
    if info.get("shipped"):
        _say(f"stno-eval: no ckpt_path: the shipped weights {info['path']}")
    output_dir = Path(cfg.output_dir) if cfg.output_dir else _default_output_dir(name)
    output_dir.mkdir(parents=True, exist_ok=True)
    _say(
        f"stno-eval: {model_name} on {name} ({len(source.sequences)} sequences, x{protocol.space_scale:g} space, "
        f"x{protocol.settings['time_scale']} time) on {device}, {precision_line} -> {output_dir}"
    )
    result = evaluate(
        net,
        source,
        protocol,
        crop_border=crop_border,
        max_queries=cfg.max_queries,
        device=device,
        output_dir=output_dir,
        save_frames=bool(cfg.save_frames),
        save_video=bool(cfg.save_video),
        video_fps=float(cfg.video_fps),
        save_comparisons=bool(cfg.save_comparisons),
        num_comparisons=int(cfg.num_comparisons),
        progress=bool(cfg.progress),
        compare=bool(cfg.get("compare", True)) and info["preset"] != "bicubic_blend",
    )
    settings = dict(protocol.settings)
    settings.update(
        crop_border=crop_border,
        root=str(bench.root),
        sequences=[name for name, _count in source.sequences],
        max_frames=bench.get("max_frames"),
        metrics="8-bit outputs; Y = BT.601 studio range (MATLAB rgb2ycbcr); PSNR data range 255; "
        "SSIM 11x11 Gaussian sigma 1.5",
    )
    for key in ("list_file", "split"):
        if bench.get(key) is not None:
            settings[key] = bench.get(key)
    document = metrics_document(
        model_name,
        info["path"],
        settings,
        [frame.as_dict() for frame in result.frames],
        extra={
            "weights": info["weights"],
            "num_parameters": info["num_parameters"],
            "max_queries": cfg.max_queries,
            "precision": precision_line,
            "device": str(device),
            "seconds": round(result.seconds, 3),
            "network_seconds_per_output_frame": round(
                result.network_seconds / max(result.output_frames, 1), 4
            ),
        },
    )
    write_reports(document, output_dir)
    # unresolved: the model group refers to trainer settings that stno-eval does not have
    OmegaConf.save(cfg, output_dir / "config.yaml", resolve=False)
    print(markdown_table(document), end="", flush=True)
    _say(f"stno-eval: wrote {output_dir / 'metrics.json'} and {output_dir / 'metrics.md'}")
    return document


@one_line_errors("stno-eval")
def run(cfg: DictConfig) -> float | None:
    """The Hydra task; returns the average Y-PSNR."""
    document = evaluate_from_config(cfg)
    return document["average"]["psnr_y"]


def main() -> Any:
    hydra_main = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="eval")(
        run
    )
    return hydra_main()


if __name__ == "__main__":
    main()
