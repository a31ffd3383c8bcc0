"""Validation samples for the eye: `bicubic | model | GT` images (TensorBoard, W&B), a GIF clip (W&B)."""

from __future__ import annotations

import io
from typing import Any

import pytorch_lightning as pl
import torch

__all__ = ["ValidationSamples", "clip_frames", "gif_bytes"]

SAMPLES_KEY = "val/samples_bicubic_model_gt"
CLIP_KEY = "val/clip_bicubic_model_gt"


class ValidationSamples(pl.Callback):
    """Logs the first validation batch as `bicubic | model | GT` on loggers that take images.

    One image per validation: a row per clip (the first `num_samples` of the batch), showing an
    in-between output frame where there is one (that is the hard part). W&B also gets every
    output frame of the first clip as an animated GIF. Other loggers (CSV) get nothing.

    Needs a module whose `validation_step` returns `{"prediction": (B, T_out, 3, H, W)}` and
    that has a `baseline` network (`STNOLitModule`). `STNOLitModule(num_logged_samples=...)`
    (config `model.num_logged_samples`) creates one.
    """

    def __init__(self, num_samples: int = 2) -> None:
        self.num_samples = int(num_samples)

    @torch.no_grad()
    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        loggers = [logger for logger in trainer.loggers if image_kind(logger) is not None]
        if batch_idx != 0 or dataloader_idx != 0 or not trainer.is_global_zero or not loggers:
            return
        prediction, target = outputs["prediction"], batch["hr"]
        count = min(self.num_samples, target.shape[0])
        if count == 0:
            return
        lr, times = batch["lr"], batch["times"].tolist()
        baseline = pl_module.baseline(lr, times, tuple(target.shape[-2:]))
        # Show a synthesised (in-between) frame when there is one.
        frame = 1 if target.shape[1] > lr.shape[1] else 0
        rows = [
            torch.cat([baseline[i, frame], prediction[i, frame], target[i, frame]], dim=-1)
            for i in range(count)
        ]
        image = torch.cat(rows, dim=-2).float().clamp(0, 1).cpu()  # (3, count*H, 3*W)
        step = trainer.global_step
        for logger in loggers:
            if image_kind(logger) == "tensorboard":
                logger.experiment.add_image(SAMPLES_KEY, image, step)
            else:
                logger.log_image(key=SAMPLES_KEY, images=[image], step=step)
                clip = wandb_clip(baseline[0], prediction[0], target[0])
                logger.log_metrics({CLIP_KEY: clip}, step=step)


def clip_frames(*clips: torch.Tensor) -> torch.Tensor:
    """Clips (T, 3, H, W) in [0, 1] side by side -> uint8 frames (T, 3, H, n*W)."""
    joined = torch.cat([clip.detach().float().clamp(0, 1).cpu() for clip in clips], dim=-1)
    return (joined * 255).round().to(torch.uint8)


def gif_bytes(frames: torch.Tensor, frame_ms: int = 250) -> bytes:
    """uint8 frames (T, 3, H, W) -> an animated GIF that loops (PIL; no video encoder needed)."""
    from PIL import Image

    images = [Image.fromarray(frame.permute(1, 2, 0).numpy()) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(
        buffer, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0
    )
    return buffer.getvalue()


def wandb_clip(baseline: torch.Tensor, prediction: torch.Tensor, target: torch.Tensor) -> Any:
    """One validation clip (bicubic | model | GT, every output frame) as a `wandb.Video` GIF.

    A GIF written by PIL, because `wandb.Video` encodes numpy arrays with moviepy (not a
    dependency of STNO).
    """
    import wandb

    frames = clip_frames(baseline, prediction, target)
    return wandb.Video(io.BytesIO(gif_bytes(frames)), format="gif")


def image_kind(logger: Any) -> str | None:
    """`"tensorboard"` or `"wandb"` for loggers that take images, else None."""
    name = type(logger).__name__
    if name == "TensorBoardLogger":
        return "tensorboard"
    if name == "WandbLogger":
        return "wandb"
    return None
