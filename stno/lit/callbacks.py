"""Lightning callbacks of `stno-train`: the final checkpoint, progress lines for log files, and
(re-exported) the weight average and validation samples of `STNOLitModule`."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.callbacks.progress import ProgressBar

from stno.lit.ema import EMAWeights
from stno.lit.samples import ValidationSamples

__all__ = ["EMAWeights", "LastCheckpoint", "LogProgressBar", "ValidationSamples", "progress_bar"]

log = logging.getLogger("stno.train")


class LastCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` whose `last.ckpt` always holds the final step of training.

    Lightning writes `last.ckpt` every `every_n_train_steps` steps only, so a run whose
    `max_steps` is not a multiple would end with a stale file. This one also saves after the
    step that reaches `max_steps` (a checkpoint like the periodic ones: resuming from it with a
    larger `max_steps` continues exactly), and when training stops for any other reason
    (`max_epochs`, early stopping) at a step not saved yet.

    The file is always `last.ckpt`: Lightning's version counter (`last-v1.ckpt` when a
    `last.ckpt` it did not write itself exists: a run resumed in a moved run directory, or with
    another `every_n_train_steps`) is off unless asked for.
    """

    def __init__(self, *args: Any, enable_version_counter: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, enable_version_counter=enable_version_counter, **kwargs)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        super().on_train_batch_end(trainer, *args)
        if 0 < trainer.max_steps <= trainer.global_step:
            self._save_final(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save_final(trainer)

    def _save_final(self, trainer: pl.Trainer) -> None:
        if not self.save_last or self._should_skip_saving_checkpoint(trainer):
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def progress_bar(refresh_rate: int = 10, log_interval_s: float = 30.0) -> ProgressBar:
    """Progress bars on a terminal, else (output redirected to a file) a `LogProgressBar`."""
    if sys.stderr.isatty():
        return TQDMProgressBar(refresh_rate=refresh_rate)
    return LogProgressBar(log_interval_s=log_interval_s)


class LogProgressBar(ProgressBar):
    """Progress for log files: one line at most every `log_interval_s` seconds, one per validation.

    Lines go to the `stno.train` logger (console and `train.log` under `stno-train`), or to
    stderr where logging is not configured.
    """

    def __init__(self, log_interval_s: float = 30.0) -> None:
        super().__init__()
        self.log_interval_s = float(log_interval_s)
        self._enabled = True
        self._last_line = 0.0
        self._started = 0.0
        self._start_step = 0

    def enable(self) -> None:
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def _say(self, message: str) -> None:
        if not self._enabled or not self.trainer.is_global_zero:
            return
        if logging.getLogger().handlers:
            log.info(message)
        else:
            print(message, file=sys.stderr, flush=True)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = self._last_line = time.monotonic()
        self._start_step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, *_: Any) -> None:
        now = time.monotonic()
        last_step = 0 < trainer.max_steps <= trainer.global_step
        if now - self._last_line < self.log_interval_s and not last_step:
            return
        self._last_line = now
        step, total = trainer.global_step, trainer.max_steps
        rate = (step - self._start_step) / max(now - self._started, 1e-9)
        metrics = self.get_metrics(trainer, trainer.lightning_module)
        shown = ", ".join(
            f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}"
            for name, value in metrics.items()
            if name != "v_num"
        )
        left = f", {(total - step) / rate / 60:.1f} min left" if total > 0 and rate > 0 else ""
        self._say(f"step {step}/{total if total > 0 else '?'}: {shown} ({rate:.2f} steps/s{left})")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        shown = ", ".join(
            f"{name} {float(metrics[name]):.3f}"
            for name in ("val/psnr_y", "val/bicubic_psnr_y", "val/ssim_y")
            if name in metrics
        )
        # Outside fit (the final validation, in the main process under ddp_spawn) the step is unknown.
        where = f"at step {trainer.global_step}" if trainer.state.fn == "fit" else "(final)"
        self._say(f"validation {where}: {shown}")
