"""`stno-train`: train (or only validate) an ST-VSR model from the Hydra configs in `conf/`.

    stno-train experiment=quickstart            # tiny STNO on the embedded sample, CPU
    stno-train model=stno_base data=vimeo_septuplet data.root=/data/vimeo_septuplet trainer=gpu
    stno-train model=bicubic_blend              # validate the baseline only
    stno-train hydra.run.dir=outputs/my_run     # run again with the same dir: resumes
    stno-train resume=outputs/my_run            # continue that run (in its own directory)
    stno-train init_ckpt=outputs/my_run/checkpoints/last.ckpt   # fine-tune: weights only
    stno-train -m model.optimizer.lr=2e-4,5e-4  # a sweep: multirun/<date>/<time>/summary.md

Each run writes to its own directory (`paths.output_dir`); checkpoints go to
`<output_dir>/checkpoints/` (`last.ckpt`, best by validation Y-PSNR). If `last.ckpt` exists
when a run starts, training resumes from it at its global step. Every run ends by writing
`<output_dir>/result.json`, which the sweep summary (`stno.cli.sweep`) tabulates.
The run itself is `stno.lit.run.train`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from stno.cli.common import hydra_entry, one_line_errors
from stno.lit import run as library
from stno.lit.runlog import configure_logging


def hydra_job() -> library.Job:
    """The multirun job this process runs, as Hydra knows it (not a multirun: ``Job()``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return library.Job()
    hydra_cfg = HydraConfig.get()
    return library.Job(True, Path(hydra_cfg.sweep.dir), int(hydra_cfg.job.num))


def train(cfg: DictConfig) -> dict[str, float]:
    """``stno.lit.run.train`` with Hydra's ``instantiate`` and this process's Hydra job."""
    return library.train(cfg, hydra.utils.instantiate, hydra_job())


@one_line_errors("stno-train")
def run(cfg: DictConfig) -> float | None:
    """The Hydra task: train, then return `cfg.optimized_metric` (what Optuna maximises)."""
    configure_logging()
    return library.optimized_metric(cfg, train(cfg))


def main() -> Any:
    return hydra_entry("train", run)


if __name__ == "__main__":
    main()
