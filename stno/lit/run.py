"""A training run of `stno-train`, from its composed config: resume policy, DDP and W&B settings
that depend on how the run was started, fit, final validation, and `result.json`.

The entry point (`stno.cli.train`) composes the config with Hydra and calls :func:`train` with
Hydra's ``instantiate`` and the multirun job it runs in; nothing here imports Hydra.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only

from stno.errors import CheckpointNotFoundError
from stno.io.checkpoint import load_initial_weights, remove_orphan_temporaries
from stno.lit.module import STNOLitModule
from stno.lit.results import write_result
from stno.lit.resume import (
    LAST_CHECKPOINT,
    check_resume_checkpoint,
    checkpoint_global_step,
    find_resume_checkpoint,
    resolve_resume_target,
)
from stno.lit.runlog import check_wandb_login, finish_wandb, say, silence_known_messages

__all__ = [
    "Job",
    "instantiate_group",
    "instantiate_model",
    "optimized_metric",
    "prepare_run_config",
    "train",
]

# Builds an object from a config with a `_target_` (Hydra's `hydra.utils.instantiate`).
Instantiate = Callable[..., Any]


@dataclass(frozen=True)
class Job:
    """Where a run stands in a sweep: a multirun job (its sweep directory and number), or not."""

    multirun: bool = False
    sweep_dir: Path | None = None
    number: int | None = None


def instantiate_model(model_cfg: DictConfig, instantiate: Instantiate) -> STNOLitModule:
    """Build the LightningModule; its `net` stays a plain dict (the module builds the network)."""
    settings = OmegaConf.to_container(model_cfg, resolve=True)
    net_config = settings.pop("net")
    make_model = instantiate(OmegaConf.create(settings), _partial_=True)
    return make_model(net=net_config)


def instantiate_group(group_cfg: DictConfig | None, instantiate: Instantiate) -> list[Any]:
    """Instantiate every `_target_` entry of a callbacks/logger group (a dict of named configs)."""
    if not group_cfg:
        return []
    return [
        instantiate(entry)
        for entry in group_cfg.values()
        if isinstance(entry, DictConfig) and "_target_" in entry
    ]


def prepare_run_config(cfg: DictConfig, job: Job | None = None) -> DictConfig:
    """Settings that depend on how the run was started (resume dir, multirun, W&B group).

    - `resume=<run dir>` continues in that directory (checkpoints, logs, result.json).
    - In a multirun, subprocess DDP (`strategy: ddp`) would start the whole sweep again in
      every extra process: use spawned processes (`ddp_spawn`) instead.
    - `model.freeze_motion_steps` with DDP: parameters without gradients must be allowed.
    - W&B: group = the sweep (or task name), run name = the job; files under the run directory.
    """
    cfg = cfg.copy()
    with open_dict(cfg):
        if cfg.get("resume"):
            _, run_dir = resolve_resume_target(cfg.resume, Path(cfg.paths.output_dir))
            if run_dir is not None:
                cfg.paths.output_dir = str(run_dir)
        job = job or Job()
        multirun, sweep_dir, job_num = job.multirun, job.sweep_dir, job.number
        strategy = cfg.trainer.get("strategy")
        if (
            multirun
            and isinstance(strategy, str)
            and strategy.startswith("ddp")
            and "spawn" not in strategy
        ):
            cfg.trainer.strategy = strategy.replace("ddp", "ddp_spawn", 1)
            say(
                f"Multirun job: trainer.strategy={strategy} -> {cfg.trainer.strategy} (one process tree per job)"
            )
        strategy = cfg.trainer.get("strategy")
        if cfg.model.get("freeze_motion_steps") and strategy in ("ddp", "ddp_spawn"):
            # A frozen stage gets no gradients; DDP must be told to expect unused parameters.
            cfg.trainer.strategy = f"{strategy}_find_unused_parameters_true"
            say(f"model.freeze_motion_steps: trainer.strategy={cfg.trainer.strategy}")
        wandb_cfg = (cfg.get("logger") or {}).get("wandb")
        if wandb_cfg is not None:
            if wandb_cfg.get("group") is None:
                wandb_cfg.group = (
                    f"{sweep_dir.parent.name}_{sweep_dir.name}" if multirun else cfg.task_name
                )
            if wandb_cfg.get("name") is None:
                wandb_cfg.name = (
                    f"{wandb_cfg.group}-{job_num}" if multirun else Path(cfg.paths.output_dir).name
                )
    return cfg


def _saves_last_checkpoint(trainer: pl.Trainer, checkpoint_dir: Path) -> bool:
    """Whether a ModelCheckpoint callback writes `checkpoint_dir/last.ckpt` when training ends."""
    return any(
        isinstance(callback, ModelCheckpoint)
        and callback.save_last
        and callback.dirpath is not None
        and Path(callback.dirpath).resolve() == checkpoint_dir.resolve()
        for callback in trainer.callbacks
    )


def train(cfg: DictConfig, instantiate: Instantiate, job: Job | None = None) -> dict[str, float]:
    """Train (unless `train=false` or the model has no parameters), then validate once more.

    Returns the final validation metrics (`val/psnr_y`, `val/bicubic_psnr_y`, ...) as floats,
    and writes them with the best validation Y-PSNR, steps and wall time to
    `<output_dir>/result.json` (on the main process).
    """
    started = time.monotonic()
    silence_known_messages()
    cfg = prepare_run_config(cfg, job)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.paths.output_dir)
    checkpoint_dir = output_dir / "checkpoints"
    # Before anything writes files: a resume request with nothing to resume stops here.
    resume_from = find_resume_checkpoint(cfg, checkpoint_dir)
    resume_step = (
        check_resume_checkpoint(resume_from, training=bool(cfg.get("train", True)))
        if resume_from is not None
        else None
    )
    check_wandb_login(cfg)
    if rank_zero_only.rank == 0:
        # A writer killed while saving (kill -9, power loss) leaves its temporary file behind.
        remove_orphan_temporaries(checkpoint_dir)

    datamodule: pl.LightningDataModule = instantiate(cfg.data)
    model = instantiate_model(cfg.model, instantiate)
    # Bad data stops the run here, before loggers and checkpoints write anything.
    training = cfg.get("train", True) and model.has_trainable_parameters
    datamodule.setup("fit" if training else "validate")
    preset = model.hparams.preset or model.hparams.net["_target_"]
    if cfg.get("init_ckpt"):
        if resume_from is not None:
            say(f"Resuming from {resume_from}: init_ckpt={cfg.init_ckpt} is not loaded again")
        else:
            say(initialise_from(model, cfg.init_ckpt, strict=cfg.get("init_strict", True)))
    callbacks = instantiate_group(cfg.get("callbacks"), instantiate)
    loggers = instantiate_group(cfg.get("logger"), instantiate)
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    trained = False
    if cfg.get("train", True) and not model.has_trainable_parameters:
        say(f"{preset} has no trainable parameters: skipping training, validating only")
    elif cfg.get("train", True):
        if resume_from is not None:
            say(f"Resuming from {resume_from} (global step {resume_step})")
            # The checkpoint folder of a resumed run is expected to hold checkpoints.
            warnings.filterwarnings(
                "ignore", message=r"Checkpoint directory .* exists and is not empty"
            )
        if not trainer.fast_dev_run:
            say(f"Checkpoints: {checkpoint_dir.resolve()} (last.ckpt, best by val/psnr_y)")
        trainer.fit(
            model, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None
        )
        trained = True
        if trainer.interrupted:
            say("Training interrupted: start again with the same output directory to resume")
        final_step = trainer.global_step
        if not trainer.fast_dev_run:
            last = checkpoint_dir / LAST_CHECKPOINT
            if not _saves_last_checkpoint(trainer, checkpoint_dir):
                trainer.save_checkpoint(last)
            # Spawned DDP trains in child processes: the main process only sees the checkpoint.
            saved_step = checkpoint_global_step(last) if last.is_file() else None
            final_step = max(final_step, saved_step or 0)
            if saved_step is None:
                say(f"No last checkpoint was written to {last.resolve()}")
            else:
                say(f"Last checkpoint: {last.resolve()} (step {saved_step})")
                if saved_step != final_step:
                    say(
                        f"Warning: {last.name} holds step {saved_step}, training ended at step {final_step}"
                    )

    validated_step = model.validated_step(trainer)
    if (
        trained
        and validated_step is not None
        and int(validated_step) == final_step
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
    save_result(output_dir, trainer, metrics, checkpoint_dir, time.monotonic() - started)
    finish_wandb(loggers)
    return metrics


def initialise_from(model: STNOLitModule, ckpt_path: str, strict: bool = True) -> str:
    """Fine-tuning: the network starts from a checkpoint's weights only (the EMA callback starts
    its average from them)."""
    if not Path(ckpt_path).expanduser().is_file():
        raise CheckpointNotFoundError(
            f"init_ckpt={ckpt_path} does not exist: give a .ckpt file written by stno-train"
        )
    return load_initial_weights(model.net, ckpt_path, strict=bool(strict))


def best_validation_psnr(trainer: pl.Trainer, metrics: dict[str, float]) -> float | None:
    """Best `val/psnr_y` of the run: the best checkpoint's score, or the final validation."""
    scores = [metrics["val/psnr_y"]] if "val/psnr_y" in metrics else []
    for callback in trainer.callbacks:
        if (
            isinstance(callback, ModelCheckpoint)
            and callback.monitor == "val/psnr_y"
            and callback.best_model_score is not None
        ):
            scores.append(float(callback.best_model_score))
    scores = [score for score in scores if math.isfinite(score)]
    return max(scores) if scores else None


@rank_zero_only
def save_result(
    output_dir: Path,
    trainer: pl.Trainer,
    metrics: dict[str, float],
    checkpoint_dir: Path,
    wall_time_s: float,
) -> None:
    """Write `<output_dir>/result.json`: the numbers a sweep summary shows for this run."""
    last = checkpoint_dir / LAST_CHECKPOINT
    # Spawned DDP trains in child processes: the step count is the one saved in last.ckpt.
    steps = max(trainer.global_step, checkpoint_global_step(last) if last.is_file() else 0)
    best = best_validation_psnr(trainer, metrics)
    bicubic = metrics.get("val/bicubic_psnr_y")
    write_result(
        output_dir,
        {
            "best_psnr_y": best,
            "final_psnr_y": metrics.get("val/psnr_y"),
            "bicubic_psnr_y": bicubic,
            # Validation clips are the same every time, so the baseline's score is fixed.
            "gain_psnr_y": None if best is None or bicubic is None else best - bicubic,
            "steps": int(steps),
            "wall_time_s": round(wall_time_s, 1),
            "status": "interrupted" if trainer.interrupted else "done",
            "metrics": metrics,
        },
    )


def optimized_metric(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """`cfg.optimized_metric` of the run's final metrics (what an Optuna sweep maximises)."""
    name = cfg.get("optimized_metric")
    if not name:
        return None
    value = metrics.get(name)
    return value if value is not None and not math.isnan(value) else None
