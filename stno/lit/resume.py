"""Resume policy of `stno-train`: which checkpoint a run continues from, checked before anything
is written (`resume=`, `ckpt_path=`, or the run directory's own `last.ckpt`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from stno.errors import CheckpointError, CheckpointNotFoundError, ConfigError
from stno.io.checkpoint import read_checkpoint, read_training_checkpoint

__all__ = [
    "LAST_CHECKPOINT",
    "check_resume_checkpoint",
    "checkpoint_global_step",
    "find_resume_checkpoint",
    "resolve_resume_target",
]

LAST_CHECKPOINT = "last.ckpt"


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
        checkpoint = read_training_checkpoint(path) if training else read_checkpoint(Path(path))
    except CheckpointError as error:
        raise CheckpointError(f"cannot {'resume' if training else 'validate'}: {error}") from error
    return int(checkpoint.get("global_step", 0))


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
