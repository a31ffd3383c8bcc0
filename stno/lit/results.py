"""Run results: each `stno-train` run writes `result.json`; a sweep's table is made of them.

    multirun/<date>/<time>/{0,1,...}/result.json  ->  multirun/<date>/<time>/summary.{csv,md}

`write_result` is called at the end of every run (`stno.lit.run.train`); `write_summary` by the
Hydra callback `stno.cli.sweep.SweepSummary` when a multirun ends, or by
`python -m stno.cli.sweep <sweep dir>`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from stno.io.files import atomic_output, write_text_atomic

RESULT_FILE = "result.json"
SUMMARY_COLUMNS = (
    "job",
    "overrides",
    "best_psnr_y",
    "bicubic_psnr_y",
    "gain_psnr_y",
    "final_psnr_y",
    "steps",
    "wall_time_s",
    "status",
)


def write_result(output_dir: str | os.PathLike, result: dict[str, Any]) -> Path:
    """Write `result` as `<output_dir>/result.json` atomically (temporary file, then rename)."""
    return write_text_atomic(
        Path(output_dir) / RESULT_FILE, json.dumps(result, indent=2, sort_keys=True) + "\n"
    )


def _job_overrides(job_dir: Path) -> list[str]:
    """The job's command-line overrides (`.hydra/overrides.yaml`), or [] when absent."""
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    return [str(item) for item in OmegaConf.load(path)]


def _swept_overrides(rows: list[dict[str, Any]]) -> None:
    """Keep in each row's `overrides` only those that differ between jobs (what was swept)."""
    sets = [set(row["overrides"]) for row in rows]
    shared = set.intersection(*sets) if len(sets) > 1 else set()
    for row in rows:
        row["overrides"] = " ".join(item for item in row["overrides"] if item not in shared)


def _job_sort_key(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (sys.maxsize, path.name)


def collect_results(sweep_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """One row per job directory of `sweep_dir` (a folder holding `.hydra/` or `result.json`).

    A job without `result.json` (it failed or is still running) gets `status` = "no result".
    """
    root = Path(sweep_dir)
    job_dirs = sorted(
        (
            child
            for child in root.iterdir()
            if child.is_dir() and ((child / RESULT_FILE).is_file() or (child / ".hydra").is_dir())
        ),
        key=_job_sort_key,
    )
    rows = []
    for job_dir in job_dirs:
        row: dict[str, Any] = {column: None for column in SUMMARY_COLUMNS}
        row["job"] = job_dir.name
        row["overrides"] = _job_overrides(job_dir)
        result_path = job_dir / RESULT_FILE
        if result_path.is_file():
            result = json.loads(result_path.read_text())
            for column in SUMMARY_COLUMNS[2:]:
                if column in result:
                    row[column] = result[column]
            row["status"] = result.get("status", "done")
        else:
            row["status"] = "no result"
        rows.append(row)
    if rows:
        _swept_overrides(rows)
    return rows


def _cell(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def write_summary(sweep_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write `summary.csv` and `summary.md` (one row per job) in `sweep_dir`; return their paths."""
    root = Path(sweep_dir)
    rows = collect_results(root)
    csv_path, md_path = root / "summary.csv", root / "summary.md"
    with atomic_output(csv_path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _cell(value, 4) for key, value in row.items()})
    headers = [
        "job",
        "overrides",
        "best val Y-PSNR (dB)",
        "bicubic_blend (dB)",
        "gain (dB)",
        "final val Y-PSNR (dB)",
        "steps",
        "wall time (s)",
        "status",
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        cells = [
            _cell(row["job"], 0),
            f"`{row['overrides']}`" if row["overrides"] else "",
            _cell(row["best_psnr_y"], 2),
            _cell(row["bicubic_psnr_y"], 2),
            "" if row["gain_psnr_y"] is None else f"{row['gain_psnr_y']:+.2f}",
            _cell(row["final_psnr_y"], 2),
            _cell(row["steps"], 0),
            _cell(row["wall_time_s"], 0),
            _cell(row["status"], 0),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    write_text_atomic(md_path, "\n".join(lines) + "\n")
    return csv_path, md_path
