"""`stno-eval`: score a checkpoint (or the bicubic_blend baseline) on a benchmark protocol.

Examples:
    stno-eval ckpt_path=outputs/2026-01-01/12-00-00/checkpoints/last.ckpt benchmark.root=/data/Vid4
    stno-eval preset=bicubic_blend benchmark=gopro benchmark.root=/data/GoPro benchmark.selection=center
    stno-eval ckpt_path=last.ckpt benchmark=video benchmark.root=clip.mp4 space_scale=6 time_scale=4

Writes `<output_dir>/metrics.json` (per frame, per sequence, averages and every protocol
setting), `<output_dir>/metrics.md` (the table, also printed) and `config.yaml`. The run itself is
`stno.evaluation.run.evaluate_from_config`.
"""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig

from stno.cli.common import PRESET_ALIAS, hydra_entry, one_line_errors
from stno.evaluation import run as library


def evaluate_from_config(cfg: DictConfig) -> dict[str, Any]:
    """``stno.evaluation.run.evaluate_from_config`` with Hydra's ``instantiate``."""
    return library.evaluate_from_config(cfg, hydra.utils.instantiate)


@one_line_errors("stno-eval")
def run(cfg: DictConfig) -> float | None:
    """The Hydra task; returns the average Y-PSNR."""
    return evaluate_from_config(cfg)["average"]["psnr_y"]


def main() -> Any:
    return hydra_entry("eval", run, PRESET_ALIAS)


if __name__ == "__main__":
    main()
