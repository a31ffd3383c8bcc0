"""Checkpoints, in one place: reading (``.ckpt`` and ``.safetensors``), weight selection (EMA or
not, wrapper prefixes), checks against the preset asked for, building the network, fine-tuning
weights, writing (atomically), and the weights shipped in the package.

This module is longer than our ~300-line guide on purpose: issue 10 asked for one home for every
checkpoint concern, and its parts share the format and the error messages. Sections below.

Every checkpoint is read without running code stored in it.

Checkpoints are untrusted input: they are read with ``torch.load(..., weights_only=True)``,
which only unpickles tensors and plain containers, and the network class is picked from a
fixed allow-list by the ``_target_`` string, never imported from the file.

Format (what ``stno-train`` writes, see the LightningModule, and ``save_network_checkpoint``):

- ``checkpoint["hyper_parameters"]["net"]``: the net config, ``{"_target_": "stno.nn.STNO", ...kwargs}``;
- ``checkpoint["hyper_parameters"]["preset"]``: the model config name, e.g. ``"stno_tiny"``;
- ``checkpoint["state_dict"]``: network weights under ``net.``, EMA weights (if any) under ``ema.``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

import stno
from stno.errors import CheckpointError, CheckpointNotFoundError
from stno.io.files import atomic_output, remove_orphan_temporaries

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "NETWORK_TARGETS",
    "load_network",
    "build_network",
    "save_network_checkpoint",
    "read_checkpoint",
    "read_training_checkpoint",
    "remove_orphan_temporaries",
    "network_for",
    "load_initial_weights",
    "select_weights",
    "BASELINE_MODEL",
    "DEFAULT_PRETRAINED",
    "shipped_weights",
    "load_pretrained",
    "save_safetensors",
    "export_weights",
]


def _network_classes() -> dict[str, type[nn.Module]]:
    from stno.nn import STNO, BicubicBlend

    return {"stno.nn.STNO": STNO, "stno.nn.BicubicBlend": BicubicBlend}


# The only classes a checkpoint may ask for.
NETWORK_TARGETS = ("stno.nn.STNO", "stno.nn.BicubicBlend")

# Bookkeeping entries an EMA wrapper may keep next to the averaged weights.
_EMA_BOOKKEEPING = ("n_averaged", "num_updates", "decay", "step")


def build_network(net_config: dict[str, Any]) -> nn.Module:
    """Instantiate an allow-listed network from its config ``{"_target_": ..., **kwargs}``."""
    if not isinstance(net_config, dict) or "_target_" not in net_config:
        raise CheckpointError(
            f"net config must be a dict with a '_target_' key, got {net_config!r}"
        )
    target = net_config["_target_"]
    classes = _network_classes()
    if target not in classes:
        raise CheckpointError(
            f"network '{target}' is not an STNO network (allowed: {', '.join(NETWORK_TARGETS)})"
        )
    kwargs = {key: value for key, value in net_config.items() if key != "_target_"}
    try:
        return classes[target](**kwargs)
    except TypeError as error:
        raise CheckpointError(
            f"cannot build {target} from the checkpoint's config: {error}"
        ) from error


def read_checkpoint(path: Path) -> dict:
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint not found: {path} (give ckpt_path=<file.ckpt>)")
    if path.is_dir():
        raise CheckpointError(f"checkpoint path is a folder, not a file: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is an empty file")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (
        Exception
    ) as error:  # torch raises KeyError, RuntimeError, UnpicklingError, ... on bad files
        raise CheckpointError(_refusal(path, error)) from error
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path} is not an STNO checkpoint (no 'state_dict')")
    return checkpoint


def _refusal(path: Path, error: Exception) -> str:
    """Why safe loading refused ``path``, in one line (torch's message spans paragraphs)."""
    found = re.search(r"unsupported (?:global: )?GLOBAL (\S+)", str(error), re.IGNORECASE)
    if found:
        return (
            f"{path} holds Python objects ({found.group(1)}) that could run code when loaded: "
            "safe (weights_only) loading refuses it; STNO checkpoints hold only tensors and plain "
            "values (use one written by stno-train)"
        )
    return f"{path} is not a PyTorch checkpoint (corrupt, truncated, or another kind of file)"


def read_training_checkpoint(path: str | os.PathLike) -> dict:
    """A full training checkpoint of ``stno-train`` (to resume from), read safely.

    Raises:
        CheckpointNotFoundError / CheckpointError: no such file, refused by safe loading, not a
        checkpoint, or a weights-only checkpoint (no optimizer and loop state to resume).
    """
    path = Path(path).expanduser()
    checkpoint = read_checkpoint(path)
    if "optimizer_states" not in checkpoint or "loops" not in checkpoint:
        raise CheckpointError(
            f"{path} holds weights only, no training state to resume (optimizer, step); "
            f"start a new run from its weights with init_ckpt={path}"
        )
    return checkpoint


def _prefixed(state_dict: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {
        key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)
    }


def select_weights(
    checkpoint: dict, use_ema: bool = True, path: Path | None = None
) -> tuple[dict[str, torch.Tensor], str]:
    """The network weights of a checkpoint, without prefixes, and which they are (``"ema"`` or
    ``"net"``): the EMA weights (``ema.``) when there are any and ``use_ema``, else ``net.``.

    EMA wrappers that keep the network as a submodule (``ema.module.*``, ``ema.net.*``) and their
    bookkeeping entries (``n_averaged``, ...) are handled; every reader of weights calls this.
    """
    state_dict = checkpoint["state_dict"]
    if use_ema:
        ema = _prefixed(state_dict, "ema.")
        ema = {key: value for key, value in ema.items() if key not in _EMA_BOOKKEEPING}
        for wrapper in ("module.", "net."):  # EMA wrappers that keep the net as a submodule
            if ema and all(key.startswith(wrapper) for key in ema):
                ema = _prefixed(ema, wrapper)
        if ema:
            return ema, "ema"
    weights = _prefixed(state_dict, "net.")
    if not weights:
        raise CheckpointError(
            f"{path or 'the checkpoint'} has no network weights (no `net.` keys in its state_dict)"
        )
    return weights, "net"


def _describe(preset: str | None, target: str) -> str:
    return f"'{preset}' ({target})" if preset else f"'{target}'"


def load_network(
    ckpt_path: str | os.PathLike,
    expected: str | dict | None = None,
    device: str | torch.device = "cpu",
    use_ema: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """Build the network stored in an STNO checkpoint and load its weights strictly.

    Args:
        ckpt_path: a checkpoint written by ``stno-train`` or ``save_network_checkpoint``.
        expected: the model the caller asked for: a preset name (``"stno_tiny"``), or a net config
            dict (``{"_target_": "stno.nn.STNO", "channels": 32, ...}``) whose entries must match
            the checkpoint's; None accepts any STNO network.
        device: where to put the network.
        use_ema: load the EMA weights (``ema.``) when the checkpoint has them.

    Returns:
        ``(net, info)``: the network in eval mode, and a dict with ``path``, ``preset``,
        ``net_config``, ``weights`` (``"ema"`` or ``"net"``), ``epoch``, ``global_step``,
        ``num_parameters``.

    Raises:
        CheckpointNotFoundError: no such file. CheckpointError: not an STNO checkpoint, another
        model or preset than ``expected``, or weights that do not fit the network.
    """
    path = Path(ckpt_path).expanduser()
    checkpoint = read_checkpoint(path)
    hyper_parameters = checkpoint.get("hyper_parameters") or {}
    net_config = hyper_parameters.get("net") if isinstance(hyper_parameters, dict) else None
    if not isinstance(net_config, dict) or "_target_" not in net_config:
        raise CheckpointError(
            f"{path} is not an STNO checkpoint (no hyper_parameters.net._target_; "
            "it was not written by stno-train)"
        )
    target = net_config["_target_"]
    if target not in NETWORK_TARGETS:
        raise CheckpointError(
            f"{path} holds model '{target}', not an STNO network (allowed: {', '.join(NETWORK_TARGETS)})"
        )
    preset = hyper_parameters.get("preset")
    _check_expected(path, expected, preset, net_config)

    net = build_network(net_config)
    selected, weights = select_weights(checkpoint, use_ema, path)
    own = net.state_dict()
    missing = sorted(set(own) - set(selected))
    unexpected = sorted(set(selected) - set(own))
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"missing {len(missing)} weights (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected weights (e.g. {unexpected[0]})")
        raise CheckpointError(
            f"weights in {path} do not fit its model {_describe(preset, target)}: {'; '.join(detail)}"
        )
    for key, value in selected.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(
                f"weights in {path} do not fit the model {_describe(preset, target)}: "
                f"{key} has shape {tuple(value.shape)} in the checkpoint, {tuple(own[key].shape)} in the network"
            )
    net.load_state_dict(selected, strict=True)
    net.to(device).eval()
    info = {
        "path": str(path),
        "preset": preset,
        "net_config": dict(net_config),
        "weights": weights,
        "epoch": checkpoint.get("epoch"),
        "global_step": checkpoint.get("global_step"),
        "num_parameters": sum(p.numel() for p in net.parameters()),
    }
    return net, info


# ---- fine-tuning: a new run starts from a checkpoint's weights ----------------------------------

# How many key names of each kind the report lists before "... and N more".
_REPORT_KEYS = 12


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
    checkpoint = read_checkpoint(path)
    weights, kind = select_weights(checkpoint, use_ema, path)
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


def _check_expected(path: Path, expected, preset: str | None, net_config: dict) -> None:
    if expected is None:
        return
    target = net_config["_target_"]
    if isinstance(expected, str):
        if preset is not None and expected != preset:
            raise CheckpointError(
                f"preset={expected} was asked for, but checkpoint {path} holds model "
                f"{_describe(preset, target)}; drop preset= or pass preset={preset}"
            )
        if preset is None:
            raise CheckpointError(
                f"preset={expected} was asked for, but checkpoint {path} does not name its preset "
                f"(it holds {target}); drop preset= to use the checkpoint's own config"
            )
        return
    if isinstance(expected, dict):
        differences = [
            f"{key}={value!r} (checkpoint: {net_config.get(key)!r})"
            for key, value in expected.items()
            if key != "max_queries" and net_config.get(key) != value
        ]
        if differences:
            raise CheckpointError(
                f"checkpoint {path} holds model {_describe(preset, target)}, which differs from the "
                f"requested config: {', '.join(differences[:4])}"
            )
        return
    raise TypeError(
        f"expected must be a preset name, a config dict or None, got {type(expected).__name__}"
    )


def _plain(value):
    """Config values as plain python containers (tuples -> lists), as stno-train stores them."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def save_network_checkpoint(
    net: nn.Module, path: str | os.PathLike, preset: str | None = None, ema: nn.Module | None = None
) -> Path:
    """Write a minimal checkpoint of ``net`` in the ``stno-train`` format, atomically.

    Args:
        net: an ``STNO`` or ``BicubicBlend`` (its ``config`` dict holds the constructor kwargs).
        path: destination file; written to a temporary name in the same folder, then renamed.
        preset: model config name stored as ``hyper_parameters.preset`` (e.g. ``"stno_tiny"``).
        ema: optional averaged copy of ``net`` stored under ``ema.``.
    """
    target = f"stno.nn.{type(net).__name__}"
    if target not in NETWORK_TARGETS:
        raise CheckpointError(f"save_network_checkpoint: {target} is not an STNO network")
    state_dict = {f"net.{key}": value.detach().cpu() for key, value in net.state_dict().items()}
    if ema is not None:
        state_dict.update(
            {f"ema.{key}": value.detach().cpu() for key, value in ema.state_dict().items()}
        )
    checkpoint = {
        "state_dict": state_dict,
        "hyper_parameters": {
            "net": {"_target_": target, **_plain(dict(net.config))},
            "preset": preset,
        },
        "epoch": 0,
        "global_step": 0,
        "stno_version": stno.__version__,
    }
    return atomic_torch_save(checkpoint, path)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through :func:`stno.io.files.atomic_output`, flushed to disk: a process
    killed while saving leaves the previous complete file (or none), never a torn one."""
    with atomic_output(path, durable=True) as temporary:
        torch.save(obj, temporary)
    return Path(path)


BASELINE_MODEL = "bicubic_blend"


def network_for(
    model: str | None,
    ckpt_path: str | os.PathLike | None,
    device: str | torch.device = "cpu",
    use_ema: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """The network an entry point runs: the ``bicubic_blend`` baseline, or a checkpoint's network.

    ``preset=bicubic_blend`` needs no checkpoint; any other model needs ``ckpt_path`` and is
    checked against the checkpoint's preset (``None`` accepts the checkpoint's).
    """
    if model == BASELINE_MODEL and not ckpt_path:
        from stno.nn import BicubicBlend

        net = BicubicBlend().to(device).eval()
        return net, {
            "path": None,
            "preset": BASELINE_MODEL,
            "net_config": {"_target_": "stno.nn.BicubicBlend"},
            "weights": None,
            "epoch": None,
            "global_step": None,
            "num_parameters": 0,
        }
    if not ckpt_path:
        shipped = shipped_weights(model)
        if shipped is None:
            raise CheckpointError(
                f"no weights ship for preset={model}: give ckpt_path=<checkpoint written by "
                f"stno-train>, or drop preset= to use the shipped {DEFAULT_PRETRAINED}"
            )
        net, info = load_network(shipped, expected=model, device=device, use_ema=use_ema)
        info["shipped"] = True
        return net, info
    return load_network(ckpt_path, expected=model, device=device, use_ema=use_ema)


# ---- safetensors and the weights shipped inside the package -------------------------------------

# The shipped model: stno/weights/<name>/model.safetensors (+ config.json and a model card).
DEFAULT_PRETRAINED = "stno_tiny"
_METADATA_KEY = "stno"


def pretrained_dir() -> Path:
    return Path(stno.__file__).resolve().parent / "weights"


def shipped_weights(name: str | None = None) -> Path | None:
    """Path of the shipped weights of model ``name`` (None: the default), or None if none ship."""
    path = pretrained_dir() / (name or DEFAULT_PRETRAINED) / "model.safetensors"
    return path if path.is_file() else None


def load_pretrained(
    name: str | None = None, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """The network shipped with the package, in eval mode, loaded without pickle.

    ``name``: the shipped model (``stno/weights/<name>/``); None: ``DEFAULT_PRETRAINED``.
    Returns ``(net, info)`` as :func:`load_network`.
    """
    path = shipped_weights(name)
    if path is None:
        available = sorted(p.parent.name for p in pretrained_dir().glob("*/model.safetensors"))
        raise CheckpointNotFoundError(
            f"no shipped weights named {name or DEFAULT_PRETRAINED!r} "
            f"(shipped: {', '.join(available) or 'none'})"
        )
    return load_network(path, device=device)


def save_safetensors(
    net: nn.Module, path: str | os.PathLike, preset: str | None = None, **record: Any
) -> Path:
    """Write the weights of ``net`` to a ``.safetensors`` file with its config in the metadata.

    The file alone rebuilds the network (``load_network``), and loading it runs no pickle.
    ``record``: plain values kept beside the config (e.g. ``global_step``, ``source``).
    """
    import json

    from safetensors.torch import save_file

    target = f"stno.nn.{type(net).__name__}"
    if target not in NETWORK_TARGETS:
        raise CheckpointError(f"save_safetensors: {target} is not an STNO network")
    document = {"net": {"_target_": target, **_plain(dict(net.config))}, "preset": preset, **record}
    tensors = {key: value.detach().cpu().contiguous() for key, value in net.state_dict().items()}
    with atomic_output(path) as temporary:
        save_file(tensors, str(temporary), metadata={_METADATA_KEY: json.dumps(document)})
        os.chmod(temporary, 0o644)  # a data file like any other (safetensors writes it private)
    return Path(path)


def _read_safetensors(path: Path) -> dict:
    """A ``.safetensors`` file written by :func:`save_safetensors`, as a checkpoint dict."""
    import json

    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file: {error}") from error
    try:
        document = json.loads(metadata[_METADATA_KEY])
    except (KeyError, ValueError):
        raise CheckpointError(
            f"{path} has no STNO config in its metadata (it was not written by stno); "
            "convert it with stno-convert or save it with stno.io.checkpoint.save_safetensors"
        ) from None
    return {
        "state_dict": {f"net.{key}": value for key, value in tensors.items()},
        "hyper_parameters": {"net": document.get("net"), "preset": document.get("preset")},
        "global_step": document.get("global_step"),
        "epoch": document.get("epoch"),
        "record": document,
    }


def export_weights(
    ckpt_path: str | os.PathLike, out_path: str | os.PathLike, use_ema: bool = True, **record: Any
) -> Path:
    """A training checkpoint's network (EMA weights when it has them) as a safetensors file."""
    net, info = load_network(ckpt_path, use_ema=use_ema)
    record = {"global_step": info["global_step"], "weights": info["weights"], **record}
    return save_safetensors(net, out_path, preset=info["preset"], **record)
