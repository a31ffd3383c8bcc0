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
`<output_dir>/result.json` (best and final validation Y-PSNR, gain over bicubic_blend, steps,
wall time), which the sweep summary (`stno.cli.sweep`) tabulates.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only

from stno.cli.common import one_line_errors
from stno.errors import CheckpointNotFoundError, ConfigError
from stno.io.checkpoint import (
    CheckpointError,
    _read_checkpoint,
    read_training_checkpoint,
    remove_orphan_temporaries,
)
from stno.io.configs import config_dir
from stno.lit import STNOLitModule
from stno.lit.finetune import load_initial_weights
from stno.lit.module import VALIDATED_STEP
from stno.lit.results import write_result

LAST_CHECKPOINT = "last.ckpt"

log = logging.getLogger("stno.train")
# Set by `configure_logging` (the `stno-train` command): `say` logs (console and train.log).
_LOG_LINES = False


@rank_zero_only
def say(message: str) -> None:
    """One line on the main process only (DDP starts one process per device): logged by the
    `stno-train` command (console and `train.log`), printed when `train` is called directly."""
    if _LOG_LINES:
        log.info(message)
    else:
        print(message, flush=True)


class _DropTips(logging.Filter):
    """Lightning's advertisements ("Tip: try installing litlogger ...") are not run information."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip: For seamless" not in record.getMessage()


def configure_logging() -> None:
    """Lightning's messages into the run's log (Hydra's handlers: console and `train.log`),
    and known harmless messages silenced where they come from."""
    global _LOG_LINES
    _LOG_LINES = bool(logging.getLogger().handlers)
    for name in ("pytorch_lightning", "lightning_fabric"):
        lightning_log = logging.getLogger(name)
        if _LOG_LINES:
            # Lightning adds its own console handler when imported before logging is set up.
            for handler in list(lightning_log.handlers):
                lightning_log.removeHandler(handler)
            lightning_log.propagate = True
    silence_known_messages()


def silence_known_messages() -> None:
    """Messages that say nothing about the run: Lightning's tips, a deprecation inside it."""
    rank_zero_log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _DropTips) for f in rank_zero_log.filters):
        rank_zero_log.addFilter(_DropTips())
    # ClipDataModule resumes mid-epoch exactly (its state_dict), which Lightning cannot see.
    warnings.filterwarnings(
        "ignore", message=r"You're resuming from a checkpoint that ended before"
    )
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=DeprecationWarning)


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
    """Global step stored in a checkpoint this run wrote."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return int(checkpoint.get("global_step", 0))


def check_resume_checkpoint(path: Path, training: bool = True) -> int:
    """Read a checkpoint to resume from safely, before anything is written; its global step.

    A file that is not a training checkpoint of stno-train, or that safe loading refuses (it
    holds objects that could run code), is a one-line error here, not a traceback in Lightning.
    """
    try:
        checkpoint = read_training_checkpoint(path) if training else _read_checkpoint(Path(path))
    except CheckpointError as error:
        raise CheckpointError(f"cannot {'resume' if training else 'validate'}: {error}") from error
    return int(checkpoint.get("global_step", 0))


def check_wandb_login(cfg: DictConfig) -> None:
    """`logger=wandb` online needs W&B credentials: without them say how to log in or go offline.

    Checked before the run starts (W&B would stop it later with a traceback, or wait for a
    login prompt). Credentials: `WANDB_API_KEY`, `WANDB_IDENTITY_TOKEN_FILE`, or a netrc entry
    for the W&B host (what `wandb login` writes).
    """
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if (
        wandb_cfg is None
        or wandb_cfg.get("offline")
        or wandb_cfg.get("mode") in ("offline", "disabled")
    ):
        return
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return
    if os.environ.get("WANDB_DISABLED", "").lower() in ("true", "1"):
        return
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return
    import netrc
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        if netrc.netrc(os.environ.get("NETRC")).authenticators(host):
            return
    except (OSError, netrc.NetrcParseError):
        pass
    raise ConfigError(
        "logger=wandb: not logged in to Weights & Biases; run `wandb login` (or set WANDB_API_KEY), "
        "or log offline with logger.wandb.offline=true and upload later with `wandb sync`"
    )


def resolve_resume_target(
    resume: Any, output_dir: Path, option: str = "resume"
) -> tuple[Path, Path | None]:
    """What `resume=` asks for -> (checkpoint to resume from, run directory to continue in).

    `resume=true` (or `last`): this run directory's `last.ckpt`; `resume=<run dir>`: that run's
    `checkpoints/last.ckpt`, and the run continues in that directory; `resume=<file.ckpt>`:
    that checkpoint, the run writes to its own (new) directory. Nothing to resume is an error.
    """
    if resume is True or str(resume).lower() in ("true", "last"):
        last = output_dir / "checkpoints" / LAST_CHECKPOINT
        if not last.is_file():
            raise ConfigError(
                f"{option}={resume}: nothing to resume, {last} does not exist; give resume=<run dir "
                f"or .ckpt>, or drop {option}= to start a new run"
            )
        return last, None
    path = Path(str(resume)).expanduser()
    if path.is_dir():
        for candidate in (path / "checkpoints" / LAST_CHECKPOINT, path / LAST_CHECKPOINT):
            if candidate.is_file():
                run_dir = (
                    candidate.parent.parent if candidate.parent.name == "checkpoints" else None
                )
                return candidate, run_dir
        raise ConfigError(
            f"resume={resume}: nothing to resume, no checkpoints/{LAST_CHECKPOINT} in that folder; "
            "give a run directory of stno-train or a .ckpt file"
        )
    if path.is_file():
        return path, None
    raise ConfigError(
        f"resume={resume}: nothing to resume, no such run directory or checkpoint; "
        "drop resume= to start a new run"
    )


def find_resume_checkpoint(cfg: DictConfig, checkpoint_dir: Path) -> Path | None:
    """`resume`/`ckpt_path` if given, else this run directory's `last.ckpt` if it exists, else None."""
    if cfg.get("resume"):
        return resolve_resume_target(cfg.resume, checkpoint_dir.parent)[0]
    if cfg.get("ckpt_path"):
        if str(cfg.ckpt_path) == "last":
            # Lightning's `ckpt_path=last` silently starts from scratch in a new run directory.
            return resolve_resume_target("last", checkpoint_dir.parent, "ckpt_path")[0]
        path = Path(cfg.ckpt_path).expanduser()
        if not path.is_file():
            raise CheckpointNotFoundError(
                f"ckpt_path={cfg.ckpt_path} does not exist: give a .ckpt file written by stno-train"
            )
        return path
    last = checkpoint_dir / LAST_CHECKPOINT
    return last if last.is_file() else None


def _hydra_runtime() -> tuple[bool, Path | None, int | None]:
    """(is this a multirun job, the sweep directory, the job number) from Hydra, if it runs."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return False, None, None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return False, None, None
    return True, Path(hydra_cfg.sweep.dir), int(hydra_cfg.job.num)


def prepare_run_config(cfg: DictConfig) -> DictConfig:
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
        multirun, sweep_dir, job_num = _hydra_runtime()
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


def train(cfg: DictConfig) -> dict[str, float]:
    """Train (unless `train=false` or the model has no parameters), then validate once more.

    Returns the final validation metrics (`val/psnr_y`, `val/bicubic_psnr_y`, ...) as floats,
    and writes them with the best validation Y-PSNR, steps and wall time to
    `<output_dir>/result.json` (on the main process).
    """
    started = time.monotonic()
    silence_known_messages()
    cfg = prepare_run_config(cfg)
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

    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data)
    model = instantiate_model(cfg.model)
    # Bad data stops the run here, before loggers and checkpoints write anything.
    training = cfg.get("train", True) and model.has_trainable_parameters
    datamodule.setup("fit" if training else "validate")
    preset = model.hparams.preset or model.hparams.net["_target_"]
    if cfg.get("init_ckpt"):
        if resume_from is not None:
            say(f"Resuming from {resume_from}: init_ckpt={cfg.init_ckpt} is not loaded again")
        else:
            say(initialise_from(model, cfg.init_ckpt, strict=cfg.get("init_strict", True)))
    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False
    )
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

    validated_step = trainer.callback_metrics.get(VALIDATED_STEP, model.last_validated_step)
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
    """Fine-tuning: the network (and its EMA copy) starts from a checkpoint's weights only."""
    if not Path(ckpt_path).expanduser().is_file():
        raise CheckpointNotFoundError(
            f"init_ckpt={ckpt_path} does not exist: give a .ckpt file written by stno-train"
        )
    report = load_initial_weights(model.net, ckpt_path, strict=bool(strict))
    if model.ema is not None:
        model.ema.load_state_dict(model.net.state_dict())
    return report


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


@rank_zero_only
def finish_wandb(loggers: list[Any]) -> None:
    """End the W&B run so that the next job of a multirun starts its own run."""
    if any(type(logger).__name__ == "WandbLogger" for logger in loggers):
        import wandb

        wandb.finish()


@one_line_errors("stno-train")
def run(cfg: DictConfig) -> float | None:
    """The Hydra task: train, then return `cfg.optimized_metric` (what Optuna maximises)."""
    configure_logging()
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
