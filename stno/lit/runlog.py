"""What a training run says, and where: its log lines (console and `train.log`), Lightning's
messages routed there (known noise silenced), and the W&B login check and run end."""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_only

from stno.errors import ConfigError

__all__ = [
    "check_wandb_login",
    "configure_logging",
    "finish_wandb",
    "say",
    "silence_known_messages",
]

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


@rank_zero_only
def finish_wandb(loggers: list[Any]) -> None:
    """End the W&B run so that the next job of a multirun starts its own run."""
    if any(type(logger).__name__ == "WandbLogger" for logger in loggers):
        import wandb

        wandb.finish()
