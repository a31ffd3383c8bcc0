"""An evaluation run of `stno-eval`, from its composed config (`conf/eval.yaml`): the protocol,
the benchmark's frames, the model, the scoring loop, and the reports it writes."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from stno.errors import ConfigError
from stno.evaluation.benchmarks import make_protocol, open_source
from stno.evaluation.evaluator import evaluate
from stno.evaluation.report import markdown_table, metrics_document, write_reports
from stno.inference.runtime import load_model_from_config

__all__ = ["evaluate_from_config"]

# Builds an object from a config with a `_target_` (Hydra's `hydra.utils.instantiate`).
Instantiate = Callable[..., Any]


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


def evaluate_from_config(cfg: DictConfig, instantiate: Instantiate) -> dict[str, Any]:
    """Run the evaluation an `eval.yaml` config describes; returns the metrics.json document.

    ``instantiate`` builds the benchmark's frame source from its ``_target_`` config (the entry
    point passes Hydra's).
    """
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
    source = open_source(bench, instantiate)
    model = load_model_from_config(cfg, default_precision="fp32")
    net, info, device, precision_line = model.net, model.info, model.device, model.precision_line
    model_name = model.name
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
