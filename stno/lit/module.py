"""The LightningModule that trains and validates an ST-VSR network (STNO or a baseline)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanMetric

from stno.errors import ConfigError
from stno.lit.ema import EMAWeights
from stno.lit.hparams import build_from_config, plain_container
from stno.lit.samples import ValidationSamples
from stno.ops.metrics import frame_metrics

# Metrics of the model, and of the bicubic_blend baseline on the same clips.
MODEL_METRICS = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")
BASELINE_METRICS = ("psnr_y", "ssim_y")
# Global step of the latest validation, kept in `trainer.callback_metrics` under this name.
VALIDATED_STEP = "stno/validated_step"

__all__ = [
    "VALIDATED_STEP",
    "STNOLitModule",
    "build_from_config",
    "charbonnier_loss",
    "plain_container",
]


def charbonnier_loss(
    prediction: torch.Tensor, target: torch.Tensor, eps: float = 1e-3
) -> torch.Tensor:
    """Mean of `sqrt((prediction - target)^2 + eps^2)` over every element (computed in fp32)."""
    difference = prediction.float() - target.float()
    return torch.sqrt(difference * difference + eps * eps).mean()


class STNOLitModule(pl.LightningModule):
    """Trains `net` with the Charbonnier loss and validates it against `bicubic_blend`.

    Batches are dicts from `stno.data.collate_clips`: `lr` (B, T_in, 3, h, w) in [0, 1],
    `hr` (B, T_out, 3, H, W) in [0, 1], `times` (k,) shared timestamps in (0, 1).

    Args:
        net: network config, `{"_target_": "stno.nn.STNO", **constructor kwargs}`.
        preset: model config name (`stno_tiny`, `stno_base`, `bicubic_blend`), kept in checkpoints.
        optimizer: factory `optimizer(params=...)` (a Hydra `_partial_`); None for baselines.
        scheduler: factory `scheduler(optimizer=...)` or None.
        scheduler_interval: step the scheduler every `"step"` or every `"epoch"`.
        loss_eps: Charbonnier epsilon.
        ema_decay: keep an exponential moving average of the weights (e.g. 0.999), saved under
            `ema.`; validation uses it (the `EMAWeights` callback). None: off.
        compile: run the training forward through `torch.compile` (GPU; off on CPU).
        val_max_queries: bound on target pixels decoded at once in validation (memory).
        val_crop_border: pixels removed on each side before validation metrics.
        num_logged_samples: clips shown as images (bicubic | model | GT) per validation, on
            loggers that take images (TensorBoard, W&B); W&B also gets the first clip as a video
            (the `ValidationSamples` callback). 0: none.
        freeze_motion_steps: keep the motion stage (`net.motion`) fixed for the first N optimizer
            steps (fine-tuning: adapt the rest of the network first). 0: never frozen.
        train_queries: decode only this many random target pixels of every output frame per
            training step and take the loss on those (LIIF/SRNO practice: the decoder's cost no
            longer grows with the patch area). None: decode every pixel. The draw is a function
            of (seed, global step), so a resumed run draws the same pixels.
        seed: seed of the pixel draws.
    """

    def __init__(
        self,
        net: Mapping[str, Any],
        preset: str | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str = "step",
        loss_eps: float = 1e-3,
        ema_decay: float | None = None,
        compile: bool = False,
        val_max_queries: int | None = None,
        val_crop_border: int = 0,
        num_logged_samples: int = 2,
        freeze_motion_steps: int = 0,
        train_queries: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if scheduler_interval not in ("step", "epoch"):
            raise ConfigError(
                f"scheduler_interval must be 'step' or 'epoch', got {scheduler_interval!r}"
            )
        if train_queries is not None and int(train_queries) < 1:
            raise ConfigError(
                f"train_queries must be a positive integer or null, got {train_queries}"
            )
        if int(freeze_motion_steps) < 0:
            raise ConfigError(f"freeze_motion_steps must be >= 0, got {freeze_motion_steps}")
        net_config = plain_container(net)
        # Only plain containers go into checkpoints, so they load with torch.load(weights_only=True).
        self.save_hyperparameters(
            {
                "net": net_config,
                "preset": preset,
                "scheduler_interval": scheduler_interval,
                "loss_eps": float(loss_eps),
                "ema_decay": ema_decay,
                "compile": bool(compile),
                "val_max_queries": val_max_queries,
                "val_crop_border": int(val_crop_border),
                "num_logged_samples": int(num_logged_samples),
                "freeze_motion_steps": int(freeze_motion_steps),
                "train_queries": None if train_queries is None else int(train_queries),
                "seed": int(seed),
            }
        )
        self.net: nn.Module = build_from_config(net_config)
        if freeze_motion_steps and not isinstance(getattr(self.net, "motion", None), nn.Module):
            raise ConfigError(
                f"freeze_motion_steps={freeze_motion_steps} needs a network with a motion stage "
                f"(net.motion); {net_config['_target_']} has none: set model.freeze_motion_steps=0"
            )
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        # Callbacks of this module (`configure_callbacks`); the EMA one saves with its weights.
        self._callbacks: list[pl.Callback] = []
        if ema_decay is not None:
            ema = EMAWeights(ema_decay)
            if self.has_trainable_parameters:
                self._callbacks.append(ema.attach(self))
        if num_logged_samples:
            self._callbacks.append(ValidationSamples(num_logged_samples))
        self._compiled_net: Callable | None = None
        # The baseline has no weights worth saving: keep it out of state_dict (not a submodule).
        self._baseline: list[nn.Module] = [build_from_config({"_target_": "stno.nn.BicubicBlend"})]
        self.val_metrics = nn.ModuleDict({name: MeanMetric() for name in MODEL_METRICS})
        self.val_baseline_metrics = nn.ModuleDict({name: MeanMetric() for name in BASELINE_METRICS})
        self.val_loss = MeanMetric()
        self._baseline_scores: dict[tuple, dict[str, torch.Tensor]] = {}
        # Global step of the latest finished validation (lets stno-train skip a repeat at the end).
        self.last_validated_step: int | None = None

    def validated_step(self, trainer: pl.Trainer) -> int | None:
        """Global step of the latest finished validation under ``trainer``, or None: the record
        in ``trainer.callback_metrics`` (which spawned DDP workers send back to the main
        process), else the module's own."""
        step = trainer.callback_metrics.get(VALIDATED_STEP)
        return int(step) if step is not None else self.last_validated_step

    @property
    def has_trainable_parameters(self) -> bool:
        return any(parameter.requires_grad for parameter in self.net.parameters())

    @property
    def ema(self) -> nn.Module | None:
        """The moving average of `net` that the `EMAWeights` callback keeps; None when off."""
        for callback in self._callbacks:
            if isinstance(callback, EMAWeights):
                return callback.average
        return None

    def configure_callbacks(self) -> list[pl.Callback]:
        # The same instances every time (fit, then validate), added once to a trainer.
        attached = self._trainer.callbacks if self._trainer is not None else []
        return [callback for callback in self._callbacks if callback not in attached]

    def forward(
        self, frames: torch.Tensor, times, out_size, max_queries: int | None = None
    ) -> torch.Tensor:
        """(B, T, 3, h, w) in [0, 1] -> (B, T + (T-1) len(times), 3, H, W), with `net`."""
        return self.net(frames, times, out_size, max_queries=max_queries)

    def baseline(self, frames: torch.Tensor, times, out_size) -> torch.Tensor:
        """The output of bicubic_blend, the reference of every validation."""
        return self._baseline[0](frames, times, out_size)

    # ---- training -------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        if self.hparams.compile and stage == "fit" and self._compiled_net is None:
            self._compiled_net = torch.compile(self.net)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        net = self._compiled_net or self.net
        lr, hr = batch["lr"], batch["hr"]
        times, out_size = batch["times"].tolist(), tuple(hr.shape[-2:])
        pixels = self._draw_pixels(hr)
        if pixels is None:
            prediction = net(lr, times, out_size)
        else:
            prediction = net(lr, times, out_size, pixels=pixels)
            hr = hr.flatten(3).gather(3, pixels.unsqueeze(2).expand(-1, -1, hr.shape[2], -1))
        loss = charbonnier_loss(prediction, hr, self.hparams.loss_eps)
        batch_size = lr.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log("train/scale", float(batch.get("scale", 0.0)), batch_size=batch_size)
        return loss

    def _draw_pixels(self, hr: torch.Tensor) -> torch.Tensor | None:
        """(B, O, Q) distinct random target pixels per output frame, or None (decode all)."""
        queries = self.hparams.get("train_queries")
        b, o, _, height, width = hr.shape
        if queries is None or queries >= height * width:
            return None
        # a function of (seed, rank, step): resume draws the same pixels, DDP ranks differ
        generator = torch.Generator().manual_seed(
            hash((self.hparams.get("seed", 0), self.global_rank, self.global_step)) % 2**62
        )
        scores = torch.rand(b * o, height * width, generator=generator)
        pixels = scores.topk(queries, dim=1, sorted=False).indices
        return pixels.view(b, o, queries).to(hr.device)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.hparams.freeze_motion_steps:
            # No gradient, so the optimizer (Adam, weight decay included) leaves these weights alone.
            frozen = self.global_step < self.hparams.freeze_motion_steps
            self.net.motion.requires_grad_(not frozen)

    def configure_optimizers(self) -> Any:
        parameters = [parameter for parameter in self.net.parameters() if parameter.requires_grad]
        if not parameters:
            raise ConfigError(
                f"model {self.hparams.preset or self.hparams.net['_target_']} has no trainable "
                "parameters: validate it with `stno-train model=bicubic_blend train=false`"
            )
        if self.optimizer_factory is None:
            raise ConfigError(
                "no optimizer configured: set model.optimizer (e.g. torch.optim.Adam)"
            )
        optimizer = self.optimizer_factory(params=parameters)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.hparams.scheduler_interval},
        }

    # ---- validation -----------------------------------------------------------------------

    def on_validation_start(self) -> None:
        self._baseline[0].to(self.device)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """Metrics of `net` (the EMA weights when EMA is on) and of the baseline on one batch."""
        lr, hr = batch["lr"], batch["hr"]
        times = batch["times"].tolist()
        out_size = tuple(hr.shape[-2:])
        prediction = self.net(lr, times, out_size, max_queries=self.hparams.val_max_queries)
        batch_size = lr.shape[0]
        self.val_loss.update(
            charbonnier_loss(prediction, hr, self.hparams.loss_eps), weight=batch_size
        )

        target = hr.flatten(0, 1).float()
        crop = self.hparams.val_crop_border
        model_scores = frame_metrics(
            prediction.flatten(0, 1).float().clamp(0, 1), target, crop_border=crop
        )
        # the baseline's scores on a clip never change: computed at the first validation only
        key = None
        if "name" in batch and "start" in batch:
            key = (tuple(batch["name"]), tuple(batch["start"]), tuple(times), out_size, crop)
        baseline_scores = self._baseline_scores.get(key) if key is not None else None
        if baseline_scores is None:
            baseline = self.baseline(lr, times, out_size)
            baseline_scores = frame_metrics(
                baseline.flatten(0, 1).float().clamp(0, 1), target, crop_border=crop
            )
            baseline_scores = {name: baseline_scores[name].float() for name in BASELINE_METRICS}
            if key is not None:
                self._baseline_scores[key] = baseline_scores
        for name in MODEL_METRICS:
            self.val_metrics[name].update(model_scores[name].float())
        for name in BASELINE_METRICS:
            self.val_baseline_metrics[name].update(baseline_scores[name])
        return {"prediction": prediction}

    def on_validation_epoch_end(self) -> None:
        # compute() syncs the running means across DDP ranks; every rank then logs the same value.
        values = {f"val/{name}": metric.compute() for name, metric in self.val_metrics.items()}
        for name, metric in self.val_baseline_metrics.items():
            values[f"val/bicubic_{name}"] = metric.compute()
        values["val/gain_psnr_y"] = values["val/psnr_y"] - values["val/bicubic_psnr_y"]
        values["val/loss"] = self.val_loss.compute()
        for name, value in values.items():
            self.log(name, value, prog_bar=name in ("val/psnr_y", "val/gain_psnr_y"))
        for metric in [
            *self.val_metrics.values(),
            *self.val_baseline_metrics.values(),
            self.val_loss,
        ]:
            metric.reset()
        if not self.trainer.sanity_checking:
            self.last_validated_step = self.global_step
            # Also in callback_metrics (not logged): spawned DDP sends them back to the main process.
            self.trainer.callback_metrics[VALIDATED_STEP] = torch.tensor(self.global_step)
