"""An exponential moving average of the network's weights, which validation uses: a callback."""

from __future__ import annotations

import copy
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from stno.errors import ConfigError

__all__ = ["EMAWeights"]

# Checkpoint keys: the network's weights under `net.`, their average under `ema.` (what
# `stno.io.checkpoint.load_network` selects for evaluation, inference and export).
NET, EMA = "net", "ema"


class EMAWeights(pl.Callback):
    """Keeps an exponential moving average of `pl_module.net`; validation runs with it.

    After every optimizer step `average = decay * average + (1 - decay) * net`, with a warm-up
    (`decay` at step s is at most `(1 + s) / (10 + s)`) so that a short run is not dominated by
    its first weights. The average starts from the network's weights when training starts
    (after `init_ckpt` weights were loaded into `net`), unless a checkpoint restored it.

    The average is saved with the module's weights, under `ema.` in its `state_dict`: every
    checkpoint has the live weights under `net.` and the average under `ema.` (the layout of
    checkpoints written before this callback existed, which resume into it unchanged). Hooks on
    the module's `state_dict` / `load_state_dict` do this, so it also holds for weights-only
    checkpoints, `load_from_checkpoint` and the weights spawned DDP processes send back.

    Validation (sanity check included) copies the average into `net` and the live weights
    back at its end; a checkpoint saved in between still gets the live weights under `net.`.

    `STNOLitModule(ema_decay=...)` (config `model.ema_decay`) creates and attaches one.
    """

    def __init__(self, decay: float) -> None:
        if not 0.0 < float(decay) < 1.0:
            raise ConfigError(f"ema_decay must be in (0, 1) or null, got {decay}")
        self.decay = float(decay)
        self.average: nn.Module | None = None
        self._module: pl.LightningModule | None = None
        self._started = False  # the average holds a state to continue from
        self._live: dict[str, torch.Tensor] | None = None  # live weights during validation

    def attach(self, pl_module: pl.LightningModule) -> EMAWeights:
        """Average `pl_module.net`, saved and loaded with the module's state (once per module)."""
        if self._module is pl_module:
            return self
        if self._module is not None:
            raise ValueError("an EMAWeights callback averages the weights of one module only")
        self._module = pl_module
        self.average = copy.deepcopy(_net(pl_module)).requires_grad_(False)
        pl_module._register_state_dict_hook(self._add_average)
        pl_module._register_load_state_dict_pre_hook(self._take_average, with_module=True)
        return self

    # ---- the average in the module's state_dict -------------------------------------------

    def _add_average(
        self, module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any
    ) -> None:
        if self._live is not None:  # saved during validation: `net` holds the average now
            state_dict.update({f"{prefix}{NET}.{key}": value for key, value in self._live.items()})
        for key, value in self.average.state_dict().items():
            state_dict[f"{prefix}{EMA}.{key}"] = value.detach()

    def _take_average(
        self,
        module: nn.Module,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: Any,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        head = f"{prefix}{EMA}."
        averaged = {
            key[len(head) :]: state_dict.pop(key)
            for key in list(state_dict)
            if key.startswith(head)
        }
        if not averaged:
            return  # a checkpoint without an average: it starts from the weights when training does
        result = self.average.load_state_dict(averaged, strict=False)
        missing_keys.extend(head + key for key in result.missing_keys)
        unexpected_keys.extend(head + key for key in result.unexpected_keys)
        self._started = True

    # ---- training and validation ----------------------------------------------------------

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.attach(pl_module)
        if stage == "fit":
            # A fresh fit starts a new average; restoring a checkpoint (after setup) continues one.
            self._started = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(pl_module)

    @torch.no_grad()
    def on_train_batch_end(self, trainer: pl.Trainer, *_: Any) -> None:
        pl_module = trainer.lightning_module  # on_train_start has started the average
        step = trainer.global_step
        decay = min(self.decay, (1.0 + step) / (10.0 + step))
        net = _net(pl_module)
        for averaged, current in zip(self.average.parameters(), net.parameters(), strict=True):
            averaged.lerp_(current.detach().to(averaged.dtype), 1.0 - decay)
        for averaged, current in zip(self.average.buffers(), net.buffers(), strict=True):
            averaged.copy_(current)

    @torch.no_grad()
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(pl_module)
        if self._live is None:
            net = _net(pl_module)
            self._live = {key: value.clone() for key, value in net.state_dict().items()}
            net.load_state_dict(self.average.state_dict())

    @torch.no_grad()
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._live is not None:
            _net(pl_module).load_state_dict(self._live)
            self._live = None

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self.on_validation_end(trainer, pl_module)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.average.to(pl_module.device)  # back to the CPU with the module after a GPU run

    @torch.no_grad()
    def _start(self, pl_module: pl.LightningModule) -> None:
        """On the module's device; from the network's weights if nothing was restored."""
        self.average.to(pl_module.device)
        if not self._started:
            self.average.load_state_dict(_net(pl_module).state_dict())
            self._started = True


def _net(pl_module: pl.LightningModule) -> nn.Module:
    return getattr(pl_module, NET)
