"""The decoder's per-pixel pass as compiled C, for inference on CPU (``native_decode.c``).

The continuous decoder's inference path is bound by memory traffic at the output size: each step
(gathers, lerps, GELU, the last projection) reads and writes ``hidden`` values per target pixel.
``native_decode.c`` does all of it per pixel with the values in registers. It is compiled at
first use with the system C compiler (``cc``, or ``$CC``) for this CPU (``-march=native``), into
a cache folder (``$STNO_CACHE_DIR``, default ``~/.cache/stno``) keyed by the source, the
compiler and the CPU, and loaded with ctypes: no build step at install, and calls release the
GIL, so the rows of a frame are split over ``torch.get_num_threads()`` threads.

Where there is no compiler, the build fails, or ``STNO_NATIVE=0``, :func:`decode_kernel` is None
and the decoder runs its torch path (the same map; tests compare the two). :func:`native_status`
says which path runs and why, in one line.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

__all__ = ["decode_kernel", "native_status", "decode_frame"]

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("native_decode.c")
FLAGS = (
    "-O3",
    "-march=native",
    "-fopenmp-simd",
    "-ffp-contract=fast",
    "-fno-trapping-math",  # lets the compiler vectorize the GELU's selects (AVX2 and older)
    "-fPIC",
    "-shared",
    "-std=c99",
)

_lock = threading.Lock()
_state: dict = {}  # "kernel": the ctypes function or None, "why": one line


def _cache_dir() -> Path:
    root = os.environ.get("STNO_CACHE_DIR")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "stno"


def _cpu_identity() -> str:
    """The CPU's model and flags (what ``-march=native`` compiles for)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [line for line in text.splitlines() if line.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(keep)))


def _build(compiler: str) -> Path:
    """The compiled library for this source, compiler and CPU (compiled now if not cached)."""
    version = subprocess.run(
        [compiler, "--version"], capture_output=True, text=True, timeout=60
    ).stdout
    key = hashlib.sha256(
        "\n".join([SOURCE.read_text(), " ".join(FLAGS), version, _cpu_identity()]).encode()
    ).hexdigest()[:16]
    target = _cache_dir() / f"native_decode-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / target.name
        result = subprocess.run(
            [compiler, *FLAGS, "-o", str(built), str(SOURCE)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{compiler} failed: {result.stderr.strip().splitlines()[-1:]}")
        os.replace(built, target)  # atomic: another process sees the whole file or none
    return target


def _load():
    if os.environ.get("STNO_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None, "torch (STNO_NATIVE=0)"
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        return None, "torch (no C compiler found; install gcc or clang for the faster path)"
    try:
        library = ctypes.CDLL(str(_build(compiler)))
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        return None, f"torch (compiling native_decode.c failed: {error})"
    kernel = library.stno_decode_rows
    pointer, i64 = ctypes.c_void_p, ctypes.c_int64
    kernel.argtypes = [
        pointer, ctypes.c_int, i64, ctypes.c_int,  # proj, proj_bf16, h * w, hidden
        pointer, pointer, pointer, pointer,  # iy0, iy1, wy, row_term
        pointer, pointer, pointer, pointer,  # ix0, ix1, wx, col_term
        pointer, pointer,  # proj_w, out
        i64, i64, i64, i64, i64,  # H, W, w, r0, r1
    ]  # fmt: skip
    kernel.restype = ctypes.c_int
    return kernel, "compiled C (native_decode.c)"


def decode_kernel():
    """The compiled ``stno_decode_rows``, or None (then see :func:`native_status`)."""
    with _lock:
        if "kernel" not in _state:
            _state["kernel"], _state["why"] = _load()
            log.info("decoder per-pixel pass: %s", _state["why"])
        return _state["kernel"]


def native_status() -> str:
    """Which decoder pass inference uses, and why: one line."""
    decode_kernel()
    return _state["why"]


_pool: ThreadPoolExecutor | None = None
_pool_key: tuple[int, int] = (0, 0)  # (process id, threads): a forked child makes its own


def _workers(count: int) -> ThreadPoolExecutor:
    global _pool, _pool_key
    with _lock:
        key = (os.getpid(), count)
        if _pool is None or _pool_key != key:
            if _pool is not None and _pool_key[0] == key[0]:
                _pool.shutdown(wait=False)
            _pool, _pool_key = ThreadPoolExecutor(count, thread_name_prefix="stno-decode"), key
        return _pool


def decode_frame(kernel, proj, geometry, row_term, col_term, project_weight, out) -> None:
    """Add the decoder's per-pixel MLP of one frame to ``out`` (3, H, W) float32, in place.

    ``proj``: (4, hidden, h * w) float32 or bfloat16, the LR features projected by the lift's
    neighbour blocks; ``geometry``: ``(iy, wy, ix, wx, w)`` (neighbour indices (2, H) / (2, W)
    int64, second-neighbour weights (H,) / (W,) float32, LR width); ``row_term`` (H, hidden),
    ``col_term`` (hidden, W), ``project_weight`` (3, hidden): float32. Rows are split over
    ``torch.get_num_threads()`` threads.
    """
    iy, wy, ix, wx, w = geometry
    H, W = out.shape[-2:]
    hidden = proj.shape[1]
    tensors = [proj, iy[0], iy[1], wy, row_term, ix[0], ix[1], wx, col_term, project_weight, out]
    tensors = [t.contiguous() for t in tensors]
    if tensors[-1].data_ptr() != out.data_ptr():
        raise ValueError("decode_frame needs a contiguous output")
    p, iy0, iy1, wy_, row, ix0, ix1, wx_, col, pw, o = (t.data_ptr() for t in tensors)
    bf16 = int(proj.dtype == torch.bfloat16)
    threads = max(1, min(torch.get_num_threads(), H))
    bounds = [H * i // threads for i in range(threads + 1)]

    def rows(r0: int, r1: int) -> int:
        return kernel(p, bf16, proj.shape[2], hidden, iy0, iy1, wy_, row, ix0, ix1, wx_, col,
                      pw, o, H, W, w, r0, r1)  # fmt: skip

    if threads == 1:
        codes = [rows(0, H)]
    else:
        pool = _workers(threads)
        spans = zip(bounds[:-1], bounds[1:], strict=True)
        codes = [future.result() for future in [pool.submit(rows, a, b) for a, b in spans]]
    if any(codes):
        raise MemoryError("the decoder's native pass could not allocate its row buffers")
    del tensors  # kept alive until every call returned
