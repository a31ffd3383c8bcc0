"""Which arithmetic a forward pass uses: float32, or bfloat16 where the device has fast bf16.

``auto`` picks bf16 on a CUDA GPU that supports it, and on a CPU with AMX or AVX-512 bf16
units (oneDNN runs bf16 matrix products and convolutions there several times faster than
float32); float32 everywhere else. The network keeps flows, warping grids and the final image in
float32 either way (see ``stno.nn.STNO.forward``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from stno.errors import ConfigError
from stno.nn.stno import PRECISIONS

__all__ = ["PRECISIONS", "resolve_precision", "cpu_flags", "WithPrecision", "at_precision"]

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
    ``net(frames, times, out_size, max_queries=max_queries, precision="bf16")``.
    """

    def __init__(self, net: torch.nn.Module, precision: str) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ConfigError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
            )
        self.net = net
        self.precision = precision

    def forward(self, frames, times, out_size, max_queries=None):
        return self.net(frames, times, out_size, max_queries=max_queries, precision=self.precision)


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
