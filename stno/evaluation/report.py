"""Aggregate per-frame scores and write ``metrics.json`` / ``metrics.md``."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stno.errors import DataError
from stno.io.files import write_text_atomic

__all__ = [
    "METRIC_NAMES",
    "AVERAGE_DEFINITION",
    "aggregate",
    "metrics_document",
    "markdown_table",
    "write_reports",
]

METRIC_NAMES = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")
# With `compare`: the bicubic_blend baseline's scores on the same frames, and the model's gain.
BASELINE_NAMES = ("bicubic_psnr_y", "bicubic_ssim_y", "gain_psnr_y", "gain_ssim_y")

AVERAGE_DEFINITION = (
    "mean over sequences of the per-sequence mean of per-frame values "
    "(average_over_frames: mean over all scored frames)"
)

# Sequences listed one per row in metrics.md and on screen (Vimeo-T has 7824; all are in the JSON).
MAX_TABLE_ROWS = 40


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def aggregate(frames: Sequence[dict[str, Any]]) -> tuple[dict, dict, dict]:
    """Per-frame dicts (``sequence``, metric keys) -> (per-sequence, average, average_over_frames).

    per-sequence: ``{name: {metric: mean, "frames": n}}`` in first-seen order; ``average``:
    mean over sequences of those means; ``average_over_frames``: mean over all frames.
    """
    if not frames:
        raise DataError("no frames were scored")
    keys = [*METRIC_NAMES, *(key for key in BASELINE_NAMES if key in frames[0])]
    grouped: dict[str, list[dict]] = {}
    for frame in frames:
        grouped.setdefault(frame["sequence"], []).append(frame)
    sequences = {
        name: {
            **{key: _mean([f[key] for f in items]) for key in keys},
            "frames": len(items),
        }
        for name, items in grouped.items()
    }
    average = {key: _mean([s[key] for s in sequences.values()]) for key in keys}
    over_frames = {key: _mean([f[key] for f in frames]) for key in keys}
    average["frames"] = over_frames["frames"] = len(frames)
    return sequences, average, over_frames


def _json_value(value):
    """JSON has no infinity/NaN: non-finite numbers (PSNR of identical frames) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_value(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value


def metrics_document(
    model: str,
    checkpoint: str | None,
    protocol: dict[str, Any],
    frames: Sequence[dict[str, Any]],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``metrics.json`` content (schema of issue 4)."""
    sequences, average, over_frames = aggregate(frames)
    document = {
        "model": model,
        "checkpoint": checkpoint,
        "protocol": dict(protocol),
        "average_definition": AVERAGE_DEFINITION,
        "average": average,
        "average_over_frames": over_frames,
        "sequences": sequences,
        "frames": list(frames),
    }
    if extra:
        document.update(extra)
    return document


def _fmt(value: float, digits: int) -> str:
    if value is None:
        return "inf"
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def _signed(value: float, digits: int) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:+.{digits}f}"


def markdown_table(document: dict[str, Any]) -> str:
    """A paper-style table: one row per sequence, then the average rows."""
    protocol = document["protocol"]
    title = (
        f"{document['model']} on {protocol.get('benchmark', '?')}: x{protocol.get('space_scale', '?'):g} space, "
        f"x{protocol.get('time_scale', '?')} time, crop_border {protocol.get('crop_border', 0)}"
    )
    details = ", ".join(
        f"{key}={protocol[key]}" for key in ("mode", "num_inputs", "selection") if key in protocol
    )
    compare = "gain_psnr_y" in document["average"]
    header = "| sequence | frames | PSNR-Y (dB) | SSIM-Y | PSNR-RGB (dB) | SSIM-RGB |"
    rule = "|---|---:|---:|---:|---:|---:|"
    if compare:
        header += " bicubic_blend PSNR-Y | bicubic_blend SSIM-Y | gain PSNR-Y (dB) | gain SSIM-Y |"
        rule += "---:|---:|---:|---:|"
    lines = [f"**{title}**" + (f" ({details})" if details else ""), "", header, rule]

    def row(name: str, values: dict[str, Any]) -> str:
        text = (
            f"| {name} | {values['frames']} | {_fmt(values['psnr_y'], 2)} | {_fmt(values['ssim_y'], 4)} | "
            f"{_fmt(values['psnr_rgb'], 2)} | {_fmt(values['ssim_rgb'], 4)} |"
        )
        if compare:
            text += (
                f" {_fmt(values['bicubic_psnr_y'], 2)} | {_fmt(values['bicubic_ssim_y'], 4)} | "
                f"{_signed(values['gain_psnr_y'], 2)} | {_signed(values['gain_ssim_y'], 4)} |"
            )
        return text

    sequences = document["sequences"]
    for number, (name, values) in enumerate(sequences.items()):
        if number == MAX_TABLE_ROWS:
            lines.append(
                f"| ... {len(sequences) - MAX_TABLE_ROWS} more (see metrics.json) | | | | | |"
            )
            break
        lines.append(row(name, values))
    lines.append(row("**average** (of sequences)", document["average"]))
    lines.append(row("average over frames", document["average_over_frames"]))
    return "\n".join(lines) + "\n"


def write_reports(document: dict[str, Any], output_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``metrics.json`` and ``metrics.md`` into ``output_dir``; returns their paths."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path = output_dir / "metrics.json"
    md_path = output_dir / "metrics.md"
    write_text_atomic(
        json_path, json.dumps(_json_value(document), indent=1, allow_nan=False) + "\n"
    )
    write_text_atomic(md_path, markdown_table(document))
    return json_path, md_path
