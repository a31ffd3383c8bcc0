"""Fine-tuning: start a new run from the network weights of a checkpoint (nothing else of it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stno.io.checkpoint import CheckpointError, _prefixed, _read_checkpoint

# Bookkeeping entries an EMA wrapper may keep next to the averaged weights.
_EMA_BOOKKEEPING = ("n_averaged", "num_updates", "decay", "step")
# How many key names of each kind the report lists before "... and N more".
_REPORT_KEYS = 12


def _checkpoint_weights(
    checkpoint: dict[str, Any], use_ema: bool
) -> tuple[dict[str, torch.Tensor], str]:
    """The network weights of a checkpoint without their `net.` / `ema.` prefix, and which ones."""
    state_dict = checkpoint["state_dict"]
    if use_ema:
        ema = {
            key: value
            for key, value in _prefixed(state_dict, "ema.").items()
            if key not in _EMA_BOOKKEEPING
        }
        if ema:
            return ema, "ema"
    weights = _prefixed(state_dict, "net.")
    if not weights:
        raise CheckpointError(
            "the checkpoint has no network weights (no `net.` keys in its state_dict)"
        )
    return weights, "net"


def _key_lines(title: str, keys: list[str]) -> list[str]:
    if not keys:
        return []
    lines = [f"  {title}: {len(keys)}"]
    lines += [f"    {key}" for key in keys[:_REPORT_KEYS]]
    if len(keys) > _REPORT_KEYS:
        lines.append(f"    ... and {len(keys) - _REPORT_KEYS} more")
    return lines


def load_initial_weights(
    net: nn.Module,
    ckpt_path: str | os.PathLike,
    strict: bool = True,
    use_ema: bool = True,
) -> str:
    """Copy the network weights of `ckpt_path` into `net` (safe loading, `weights_only=True`).

    Only weights are taken: no optimizer state, no step counter, no schedule. The EMA weights
    (`ema.`) are used when the checkpoint has them and `use_ema`, else `net.`.

    Args:
        net: the freshly built network of the new run.
        ckpt_path: a checkpoint written by `stno-train` (or `stno.io.checkpoint.save_network_checkpoint`).
        strict: every weight of `net` must be in the checkpoint with the same shape, and nothing
            else; False loads what fits and reports the rest.

    Returns:
        A readable report (several lines): what was loaded, and with `strict=False` the missing,
        unexpected and shape-mismatched keys.

    Raises:
        CheckpointNotFoundError / CheckpointError: no such file, not an STNO checkpoint, or (strict)
        weights that do not fit `net`.
    """
    path = Path(ckpt_path).expanduser()
    checkpoint = _read_checkpoint(path)
    weights, kind = _checkpoint_weights(checkpoint, use_ema)
    own = net.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    mismatched = sorted(
        f"{key}: checkpoint {tuple(weights[key].shape)}, model {tuple(own[key].shape)}"
        for key in set(own) & set(weights)
        if tuple(weights[key].shape) != tuple(own[key].shape)
    )
    if strict and (missing or unexpected or mismatched):
        counts = ", ".join(
            f"{len(keys)} {name}"
            for name, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("with another shape", mismatched),
            )
            if keys
        )
        example = (missing or unexpected or mismatched)[0]
        raise CheckpointError(
            f"init_ckpt={path}: its weights do not fit the model ({counts}, e.g. {example}); "
            "pass init_strict=false to load only the weights that fit"
        )
    mismatched_keys = {line.split(":")[0] for line in mismatched}
    fitting = {
        key: value for key, value in weights.items() if key in own and key not in mismatched_keys
    }
    net.load_state_dict(fitting, strict=False)
    preset = (checkpoint.get("hyper_parameters") or {}).get("preset")
    lines = [
        f"Initial weights from {path} ({kind} weights"
        + (f" of {preset}" if preset else "")
        + f", trained {checkpoint.get('global_step', 0)} steps): loaded {len(fitting)} of "
        f"{len(own)} tensors; step counter and optimizer start fresh"
    ]
    lines += _key_lines("missing in the checkpoint (kept at initialisation)", missing)
    lines += _key_lines("unexpected in the checkpoint (ignored)", unexpected)
    lines += _key_lines("shape differs (kept at initialisation)", mismatched)
    return "\n".join(lines)
