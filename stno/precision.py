"""Which arithmetic a forward pass uses: float32, or bfloat16 where the device has fast bf16.

``auto`` picks bf16 on a CUDA GPU that supports it, and on a CPU with AMX or AVX-512 bf16
units (oneDNN runs bf16 matrix products and convolutions there several times faster than
float32); float32 everywhere else. The network keeps flows, warping grids and the final image in
float32 either way (see ``stno.nn.STNO.forward``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from stno.nn.stno import PRECISIONS

__all__ = ["PRECISIONS", "resolve_precision", "cpu_flags"]

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
        raise ValueError(f"precision must be fp32, bf16 or auto, got {requested!r}")
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
