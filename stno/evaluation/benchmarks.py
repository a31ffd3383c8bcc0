"""Benchmarks: where a benchmark's frames come from and which protocol cuts them into windows."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stno.data import (
    DataError,
    FrameFolderSource,
    FrameSource,
    SequenceSubset,
    VideoFileSource,
)
from stno.errors import ConfigError, DataNotFoundError
from stno.io.video import VIDEO_EXTENSIONS

from .protocols import (
    Window,
    check_space_scale,
    frame_step,
    gopro_windows,
    timestamps,
    vid4_windows,
    vimeo_windows,
)

__all__ = [
    "BENCHMARKS",
    "Protocol",
    "limit_source",
    "make_protocol",
    "open_source",
    "video_or_frames",
]

# benchmark name -> protocol family
BENCHMARKS = {
    "vid4": "vid4",
    "spmcs": "vid4",
    "reds": "vid4",
    "video": "vid4",
    "vimeo_t": "vimeo",
    "gopro": "gopro",
    "adobe240": "gopro",
}


@dataclass
class Protocol:
    """How a benchmark is scored: windows per sequence, timestamps, space scale, all settings."""

    benchmark: str
    space_scale: float
    times: list[float]
    windows: Callable[[int], list[Window]]
    settings: dict[str, Any] = field(default_factory=dict)


def make_protocol(
    benchmark: str,
    space_scale: float = 4.0,
    time_scale: int | None = 2,
    times: Sequence[float] | None = None,
    mode: str = "window",
    num_inputs: int = 4,
    selection: str = "average",
    stride: int | None = None,
) -> Protocol:
    """The protocol of ``benchmark`` (a key of ``BENCHMARKS``) at the given scales.

    ``time_scale`` k (or ``times = [1/k, ..., (k-1)/k]``) puts k - 1 generated frames between two
    inputs; ``mode``/``num_inputs`` apply to the Vid4 family, ``selection``/``stride`` to GoPro/Adobe240.
    """
    if benchmark not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {benchmark!r}; choose one of {', '.join(BENCHMARKS)}")
    family = BENCHMARKS[benchmark]
    space_scale = check_space_scale(space_scale)
    stamps = timestamps(time_scale, times)
    step = frame_step(stamps)
    if step < 2:
        raise ConfigError(
            "time_scale must be an integer >= 2 for benchmarks (ground truth between inputs)"
        )
    settings: dict[str, Any] = {
        "benchmark": benchmark,
        "family": family,
        "space_scale": space_scale,
        "time_scale": step,
        "times": stamps,
        "degradation": "MATLAB bicubic downscaling of HR cropped to round(floor(H/s)*s), LR quantised to 8 bits",
    }
    if family == "vid4":
        settings.update(
            mode=mode, num_inputs=num_inputs, inputs="every time_scale-th frame from frame 0"
        )

        def windows(num_frames: int) -> list[Window]:
            return vid4_windows(num_frames, num_inputs=num_inputs, mode=mode, time_scale=step)

    elif family == "gopro":
        settings.update(
            selection=selection,
            window_frames=step + 1,
            stride=step if stride is None else int(stride),
            inputs="first and last frame of each window",
        )

        def windows(num_frames: int) -> list[Window]:
            return gopro_windows(num_frames, time_scale=step, selection=selection, stride=stride)

    else:
        if step != 2:
            raise ConfigError(f"Vimeo-90K septuplets are scored at time_scale=2 only, got {step}")
        settings.update(inputs="frames 1, 3, 5, 7 of each septuplet")

        def windows(num_frames: int) -> list[Window]:
            return vimeo_windows(num_frames)

    return Protocol(benchmark, space_scale, stamps, windows, settings)


def _is_video_path(path: Path) -> bool:
    if path.is_file():
        return True
    return path.is_dir() and any(
        p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS for p in path.iterdir()
    )


def video_or_frames(root: str | os.PathLike) -> FrameSource:
    """The ``video`` benchmark's frames: a video file or a folder of videos, else frame folders."""
    root = Path(root).expanduser()
    return VideoFileSource(root) if _is_video_path(root) else FrameFolderSource(root)


def open_source(
    bench: Mapping[str, Any], instantiate: Callable[[Mapping[str, Any]], FrameSource]
) -> FrameSource:
    """The frames of a benchmark config (``conf/benchmark/*.yaml``): its ``source`` (a config with a
    ``_target_``, built by ``instantiate``) at ``root``, limited to ``sequences`` and ``max_frames``.
    """
    name, root = bench["name"], bench.get("root")
    if root is None or str(root) == "":
        raise ConfigError(f"give the benchmark folder: benchmark.root=<path to {name}>")
    if not Path(root).expanduser().exists():
        raise DataNotFoundError(f"benchmark folder not found: {root} (set benchmark.root=<path>)")
    if name not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
    if not bench.get("source"):
        raise ConfigError(f"benchmark {name} has no source: set benchmark.source._target_")
    source = instantiate(bench["source"])
    return limit_source(source, root, bench.get("sequences"), bench.get("max_frames"))


def limit_source(
    source: FrameSource,
    root: str | os.PathLike,
    sequences: Sequence[str] | None = None,
    max_frames: int | None = None,
) -> FrameSource:
    """``source`` limited to ``sequences`` (names) and to the first ``max_frames`` of each."""
    if sequences:
        available = dict(source.sequences)
        wanted = [str(name) for name in sequences]
        unknown = [name for name in wanted if name not in available]
        if unknown:
            raise ConfigError(
                f"sequences {unknown} not found in {root} (it has: {', '.join(list(available)[:10])}"
                f"{', ...' if len(available) > 10 else ''})"
            )
        source = SequenceSubset(source, {name: (0, available[name]) for name in wanted})
    if max_frames is not None:
        if int(max_frames) < 2:
            raise ConfigError(f"max_frames must be >= 2, got {max_frames}")
        source = SequenceSubset(
            source, {name: (0, min(count, int(max_frames))) for name, count in source.sequences}
        )
    if not source.sequences:
        raise DataError(f"no sequences found in {root}")
    return source
