"""Hyper-parameters of the LightningModule: plain containers (what checkpoints may hold), and
the network built from its `{"_target_": ...}` config."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from stno.errors import ConfigError

__all__ = ["build_from_config", "plain_container"]


def build_from_config(config: Mapping[str, Any]) -> Any:
    """Instantiate `{"_target_": "pkg.Class", **kwargs}` without Hydra (plain dicts only)."""
    if "_target_" not in config:
        raise ConfigError(
            f"network config needs a `_target_` (e.g. stno.nn.STNO), got keys {sorted(config)}"
        )
    kwargs = {key: value for key, value in config.items() if not key.startswith("_")}
    module_name, _, attribute = str(config["_target_"]).rpartition(".")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"cannot import network class {config['_target_']!r}: {error}") from error
    return target(**kwargs)


def plain_container(value: Any) -> Any:
    """OmegaConf containers and tuples -> dict/list of plain values (what `weights_only` loads)."""
    if hasattr(value, "_metadata") and hasattr(value, "_get_node"):  # an OmegaConf container
        from omegaconf import OmegaConf

        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {str(key): plain_container(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_container(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"hyper-parameter value {value!r} is not a plain dict/list/str/number/bool/None"
    )
