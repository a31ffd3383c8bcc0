"""Sweep results: each `stno-train` job writes `result.json`; a multirun ends with a table of them.

    stno-train -m experiment=quickstart model.optimizer.lr=2e-4,5e-4
    # -> multirun/<date>/<time>/{0,1}/result.json and multirun/<date>/<time>/summary.{csv,md}

`SweepSummary` is a Hydra callback (`hydra.callbacks` in `conf/hydra/default.yaml`): when a
multirun ends it reads every job's `result.json` and `.hydra/overrides.yaml` and writes one row
per job. `python -m stno.cli.sweep <sweep dir>` writes the same table again (e.g. after a crash).
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

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
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RESULT_FILE
    temporary = folder / f".{RESULT_FILE}.{os.getpid()}.tmp"
    temporary.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, path)
    return path


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
    with open(csv_path, "w", newline="") as handle:
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
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


class SweepSummary(Callback):
    """Hydra callback: when a multirun (basic or Optuna sweeper) ends, tabulate its jobs."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        csv_path, md_path = write_summary(sweep_dir)
        print(f"Sweep summary: {md_path.resolve()} (and {csv_path.name})", flush=True)
        print(md_path.read_text(), flush=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m stno.cli.sweep SWEEP_DIR`: (re)write the summary of a finished sweep."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        print(
            "usage: python -m stno.cli.sweep SWEEP_DIR (a multirun/<date>/<time> folder)",
            file=sys.stderr,
        )
        return 2
    _, md_path = write_summary(args[0])
    print(md_path.read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
