"""`stno-train`: train (or only validate) an ST-VSR model from the Hydra configs in `conf/`.

    stno-train experiment=quickstart            # tiny STNO on the embedded sample, CPU
    stno-train model=stno_base data=vimeo_septuplet data.root=/data/vimeo_septuplet trainer=gpu
    stno-train model=bicubic_blend              # validate the baseline only
    stno-train hydra.run.dir=outputs/my_run     # run again with the same dir: resumes

Each run writes to its own directory (`paths.output_dir`); checkpoints go to
`<output_dir>/checkpoints/` (`last.ckpt`, best by validation Y-PSNR). If `last.ckpt` exists
when a run starts, training resumes from it at its global step.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only

from stno.cli.common import config_dir, one_line_errors
from stno.lit import STNOLitModule

LAST_CHECKPOINT = "last.ckpt"


@rank_zero_only
def say(message: str) -> None:
    """Print one line on the main process only (DDP starts one process per device)."""
    print(message, flush=True)


def instantiate_model(model_cfg: DictConfig) -> STNOLitModule:
    """Build the LightningModule; its `net` stays a plain dict (the module builds the network)."""
    settings = OmegaConf.to_container(model_cfg, resolve=True)
    net_config = settings.pop("net")
    make_model = hydra.utils.instantiate(OmegaConf.create(settings), _partial_=True)
    return make_model(net=net_config)


def instantiate_group(group_cfg: DictConfig | None) -> list[Any]:
    """Instantiate every `_target_` entry of a callbacks/logger group (a dict of named configs)."""
    if not group_cfg:
        return []
    return [
        hydra.utils.instantiate(entry)
        for entry in group_cfg.values()
        if isinstance(entry, DictConfig) and "_target_" in entry
    ]


def checkpoint_global_step(path: Path) -> int:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return int(checkpoint.get("global_step", 0))


def find_resume_checkpoint(cfg: DictConfig, checkpoint_dir: Path) -> Path | None:
    """`ckpt_path` if given, else this run directory's `last.ckpt` if it exists, else None."""
    if cfg.get("ckpt_path"):
        path = Path(cfg.ckpt_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"ckpt_path={cfg.ckpt_path} does not exist: give a .ckpt file written by stno-train"
            )
        return path
    last = checkpoint_dir / LAST_CHECKPOINT
    return last if last.is_file() else None


def _saves_last_checkpoint(trainer: pl.Trainer, checkpoint_dir: Path) -> bool:
    """Whether a ModelCheckpoint callback writes `checkpoint_dir/last.ckpt` when training ends."""
    return any(
        isinstance(callback, ModelCheckpoint)
        and callback.save_last
        and callback.dirpath is not None
        and Path(callback.dirpath).resolve() == checkpoint_dir.resolve()
        for callback in trainer.callbacks
    )


def train(cfg: DictConfig) -> dict[str, float]:
    """Train (unless `train=false` or the model has no parameters), then validate once more.

    Returns the final validation metrics (`val/psnr_y`, `val/bicubic_psnr_y`, ...) as floats.
    """
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.paths.output_dir)
    checkpoint_dir = output_dir / "checkpoints"

    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data)
    model = instantiate_model(cfg.model)
    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False
    )
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    resume_from = find_resume_checkpoint(cfg, checkpoint_dir)
    preset = model.hparams.preset or model.hparams.net["_target_"]
    trained = False
    if cfg.get("train", True) and not model.has_trainable_parameters:
        say(f"{preset} has no trainable parameters: skipping training, validating only")
    elif cfg.get("train", True):
        if resume_from is not None:
            say(f"Resuming from {resume_from} (global step {checkpoint_global_step(resume_from)})")
        if not trainer.fast_dev_run:
            say(f"Checkpoints: {checkpoint_dir.resolve()} (last.ckpt, best by val/psnr_y)")
        trainer.fit(
            model, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None
        )
        trained = True
        if trainer.interrupted:
            say("Training interrupted: start again with the same output directory to resume")
        if not trainer.fast_dev_run:
            if not _saves_last_checkpoint(trainer, checkpoint_dir):
                trainer.save_checkpoint(checkpoint_dir / LAST_CHECKPOINT)
            say(
                f"Last checkpoint: {(checkpoint_dir / LAST_CHECKPOINT).resolve()} (step {trainer.global_step})"
            )

    if (
        trained
        and model.last_validated_step == trainer.global_step
        and "val/psnr_y" in trainer.callback_metrics
    ):
        # Training ended right after a validation of the final weights: no need to repeat it.
        results = [trainer.callback_metrics]
    else:
        validate_from = None if trained or resume_from is None else str(resume_from)
        results = trainer.validate(
            model, datamodule=datamodule, ckpt_path=validate_from, verbose=False
        )
    metrics = {
        name: float(value)
        for name, value in (results[0] if results else {}).items()
        if name.startswith("val/")
    }
    if "val/psnr_y" in metrics:
        say(f"Final validation Y-PSNR of {preset}: {metrics['val/psnr_y']:.2f} dB")
        say(
            f"Final validation Y-PSNR of bicubic_blend: {metrics['val/bicubic_psnr_y']:.2f} dB "
            f"(gain of {preset}: {metrics['val/gain_psnr_y']:+.2f} dB)"
        )
    else:
        say("No validation data configured: no validation Y-PSNR to report")
    return metrics


@one_line_errors("stno-train")
def run(cfg: DictConfig) -> float | None:
    """The Hydra task: train, then return `cfg.optimized_metric` (what Optuna maximises)."""
    metrics = train(cfg)
    name = cfg.get("optimized_metric")
    if not name:
        return None
    value = metrics.get(name)
    return value if value is not None and not math.isnan(value) else None


def main() -> Any:
    hydra_main = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")(
        run
    )
    return hydra_main()


if __name__ == "__main__":
    main()
