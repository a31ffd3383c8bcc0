"""Where and how a network runs: device, CPU threads, arithmetic, and the model an entry point
loads (``load_model``: what `stno-eval` and `stno-infer` share).

Arithmetic: float32, or bfloat16 where the device has fast bf16.

``auto`` picks bf16 on a CUDA GPU that supports it, and on a CPU with AMX or AVX-512 bf16
units (oneDNN runs bf16 matrix products and convolutions there several times faster than
float32); float32 everywhere else. The network keeps flows, warping grids and the final image in
float32 either way (see ``stno.nn.STNO.forward``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stno.errors import ConfigError
from stno.nn.stno import PRECISIONS

__all__ = [
    "PRECISIONS",
    "LoadedModel",
    "at_precision",
    "cpu_flags",
    "load_model",
    "load_model_from_config",
    "resolve_device",
    "resolve_precision",
    "set_threads",
    "WithPrecision",
]

# CPU features with bf16 matrix arithmetic that oneDNN uses.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``); empty where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def resolve_precision(
    requested: str, device: torch.device, cpu_flags: set[str] | None = None
) -> tuple[str, str]:
    """``requested`` (fp32, bf16 or auto) -> (``"fp32"`` or ``"bf16"``, why, in a few words)."""
    requested = str(requested).lower()
    if requested not in (*PRECISIONS, "auto"):
        raise ConfigError(f"precision must be fp32, bf16 or auto, got {requested!r}")
    if requested != "auto":
        return requested, "as requested"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "the GPU supports bfloat16"
        return "fp32", "the GPU has no bfloat16 support"
    if device.type == "cpu":
        flags = globals()["cpu_flags"]() if cpu_flags is None else cpu_flags
        found = [flag for flag in BF16_CPU_FLAGS if flag in flags]
        if found:
            return "bf16", f"the CPU has {' and '.join(found)}"
        return "fp32", "the CPU has no AMX/AVX-512 bf16 units"
    return "fp32", f"no fast bf16 known for device {device.type}"


class WithPrecision(torch.nn.Module):
    """A network whose calls run at a fixed ``precision`` (what the entry points hand around).

    ``WithPrecision(net, "bf16")(frames, times, out_size, max_queries)`` is
    ``net(frames, times, out_size, max_queries=max_queries, precision="bf16")``, and ``stream``
    likewise.
    """

    def __init__(self, net: torch.nn.Module, precision: str) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ConfigError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
            )
        self.net = net
        self.precision = precision

    def forward(self, frames, times, out_size, max_queries=None, outputs=None):
        options = dict(max_queries=max_queries, precision=self.precision, outputs=outputs)
        return self.net(frames, times, out_size, **options)

    def stream(self, frames, times, out_size, max_queries=None, outputs=None):
        """The network's ``stream`` (output frames one at a time) at this precision."""
        options = dict(max_queries=max_queries, precision=self.precision, outputs=outputs)
        return self.net.stream(frames, times, out_size, **options)


def at_precision(
    net: torch.nn.Module, requested: str, device: torch.device
) -> tuple[torch.nn.Module, str]:
    """``net`` set to run at ``requested`` (fp32, bf16, auto) on ``device``.

    Returns the network to call and one line saying which precision was chosen and why. A
    network without a ``precision`` argument (the bicubic_blend baseline) runs as it is.
    """
    choice, why = resolve_precision(requested, device)
    if not _accepts_precision(net):
        return net, "precision: fp32 (the model has no bf16 path)"
    line = f"precision: {choice} ({why})"
    return (net if choice == "fp32" else WithPrecision(net, choice)), line


def _accepts_precision(net: torch.nn.Module) -> bool:
    import inspect

    return "precision" in inspect.signature(net.forward).parameters


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) -> cuda when available, else cpu; anything else as given."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ConfigError(f"unknown device {device!r} (use cpu, cuda, cuda:0 or auto)") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device={device} was asked for but CUDA is not available; use device=cpu"
        )
    return resolved


def set_threads(num_threads: int | None) -> None:
    """Set torch's CPU threads (None: leave torch's default)."""
    if num_threads is None:
        return
    if int(num_threads) < 1:
        raise ConfigError(f"num_threads must be >= 1 or null, got {num_threads}")
    torch.set_num_threads(int(num_threads))


@dataclass
class LoadedModel:
    """A network ready to run, and what to say about it."""

    net: torch.nn.Module  # at the requested precision (see ``at_precision``)
    info: dict[str, Any]  # as ``stno.io.checkpoint.load_network`` returns it
    device: torch.device
    precision_line: str  # which arithmetic was chosen, and why

    @property
    def name(self) -> str:
        return self.info["preset"] or self.info["net_config"]["_target_"]


def load_model(
    preset: str | None,
    ckpt_path: str | None,
    device: str | None = "auto",
    precision: str = "fp32",
    use_ema: bool = True,
    num_threads: int | None = None,
) -> LoadedModel:
    """The model an entry point runs: ``preset`` (checked against the checkpoint; ``bicubic_blend``
    needs none), the checkpoint ``ckpt_path`` (None: the weights shipped in the package), on
    ``device`` with ``num_threads`` CPU threads, at ``precision`` (fp32, bf16 or auto)."""
    from stno.io.checkpoint import network_for

    resolved = resolve_device(device)
    set_threads(num_threads)
    net, info = network_for(preset, ckpt_path, device=resolved, use_ema=use_ema)
    net, line = at_precision(net, precision, resolved)
    return LoadedModel(net, info, resolved, line)


def load_model_from_config(cfg: Any, default_precision: str = "fp32") -> LoadedModel:
    """:func:`load_model` with the keys of `conf/eval.yaml` / `conf/infer.yaml` (``preset``,
    ``ckpt_path``, ``device``, ``precision``, ``use_ema``, ``num_threads``)."""
    return load_model(
        cfg.get("preset"),
        cfg.get("ckpt_path"),
        cfg.get("device", "auto"),
        cfg.get("precision", default_precision),
        bool(cfg.get("use_ema", True)),
        cfg.get("num_threads"),
    )
