"""Where the Hydra configs live, and the model presets read from them outside Hydra."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import stno
from stno.errors import ConfigError

__all__ = ["config_dir", "preset_names", "preset_net_config"]


def config_dir() -> Path:
    """Absolute path of the Hydra config directory.

    An installed wheel carries the configs as `stno/conf`; a source checkout (plain or editable
    install) uses the top-level `conf/` next to the `stno` package.
    """
    package_dir = Path(stno.__file__).resolve().parent
    for candidate in (package_dir / "conf", package_dir.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise ConfigError(
        f"STNO configs not found in {package_dir / 'conf'} or {package_dir.parent / 'conf'}: "
        "reinstall the package (pip install stno) or run from a source checkout"
    )


def preset_names() -> list[str]:
    """The model presets (``conf/model/*.yaml``)."""
    return sorted(path.stem for path in (config_dir() / "model").glob("*.yaml"))


def preset_net_config(preset: str) -> dict[str, Any]:
    """The ``net`` config of the model preset ``conf/model/<preset>.yaml``, resolved."""
    from omegaconf import OmegaConf

    path = config_dir() / "model" / f"{preset}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"unknown model preset {preset!r}; choose one of {', '.join(preset_names())}"
        )
    config = OmegaConf.load(path)
    return OmegaConf.to_container(config.net, resolve=True)
