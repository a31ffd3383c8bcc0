"""Any video to high resolution and high frame rate, streamed through sliding windows.

Streaming: input frames are decoded one after the other (PyAV, or one image at a time from a
frame folder) and only the current window (``window + 1`` frames) is kept, so memory does not
grow with the video's length; output frames are written as soon as a window is done. How the
windows overlap and which outputs each emits: :mod:`stno.inference.windows`; the reader and
writer threads and the output sinks: :mod:`stno.inference.pipeline`.

The output (a video file or a frame folder) is written under a temporary name and renamed
when complete; on any error nothing is left at the output path.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stno.errors import (
    ConfigError,
    DataError,
    OutputError,
    OutputExistsError,
    OutputNotWritableError,
)
from stno.inference.pipeline import (
    DEFAULT_FRAME_FOLDER_FPS,
    BackgroundSink,
    FrameReader,
    open_frames,
    open_sink,
    prefetch,
)
from stno.inference.windows import (
    InferenceWindow,
    check_window,
    plan_windows,
    stream_windows,
)
from stno.io.images import IMAGE_EXTENSIONS
from stno.io.video import VIDEO_EXTENSIONS

__all__ = [
    "InferenceWindow",
    "stream_windows",
    "plan_windows",
    "FrameReader",
    "open_frames",
    "output_size_for",
    "upscale_video",
    "DEFAULT_FRAME_FOLDER_FPS",
    "prefetch",
    "BackgroundSink",
]


def output_size_for(
    input_size: tuple[int, int], space_scale: float | None = None, out_size=None
) -> tuple[int, int]:
    """(H, W) of the output: ``out_size`` if given, else ``round(h * scale), round(w * scale)``."""
    height, width = input_size
    if out_size is not None:
        try:
            size = tuple(int(v) for v in out_size)
        except (TypeError, ValueError):
            raise ConfigError(f"out_size must be [H, W], got {out_size!r}") from None
        if len(size) != 2 or size[0] < height or size[1] < width:
            raise ConfigError(
                f"out_size {list(out_size)} must be two sizes at least the input's {height}x{width}"
            )
        return size  # type: ignore[return-value]
    if space_scale is None:
        raise ConfigError("give space_scale (a number >= 1) or out_size=[H, W]")
    scale = float(space_scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ConfigError(f"space_scale must be a positive number >= 1, got {space_scale}")
    if scale < 1:
        raise ConfigError(f"space_scale {space_scale} < 1 would shrink the video; use a scale >= 1")
    return int(round(height * scale)), int(round(width * scale))


def _check_output(output: Path, input_path: Path, overwrite: bool = False) -> str:
    """'video' or 'folder'; raises a clear error when the output cannot be written.

    An existing output is refused unless ``overwrite`` (a folder then only when it holds frame
    images only). Writing is tried in the output's folder now, before any frame is computed.
    """
    if output.resolve() == input_path.resolve():
        raise OutputError(f"output {output} is the input; choose another output path")
    suffix = output.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        kind = "video"
        if output.is_dir():
            raise OutputError(f"output {output} is a folder; give a file name such as out.mp4")
        if output.exists() and not overwrite:
            raise OutputExistsError(
                f"output {output} already exists; pass overwrite=true to replace it, or choose another"
            )
    elif suffix == "":
        kind = "folder"
        if output.exists() and not output.is_dir():
            raise OutputError(f"output {output} is a file; give a folder name or a video file name")
        if output.exists() and any(output.iterdir()):
            if not overwrite:
                raise OutputExistsError(
                    f"output folder {output} already exists and is not empty; pass overwrite=true "
                    "to replace it, or choose another"
                )
            if any(not _is_frame_file(entry) for entry in output.iterdir()):
                raise OutputError(
                    f"output folder {output} holds other files than frame images: not replaced "
                    "even with overwrite=true; remove it or choose another"
                )
    else:
        raise OutputError(
            f"output {output}: unknown kind '{suffix}'; give a video ({', '.join(VIDEO_EXTENSIONS[:4])}, ...) "
            "or a folder name without extension"
        )
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(
            f"cannot write {output}: folder {parent} does not exist or is not a folder"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputNotWritableError(f"cannot write {output}: folder {parent} is not writable")
    probe = parent / f".{output.name}.probe-{os.getpid()}"
    try:
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as error:
        raise OutputNotWritableError(
            f"cannot write {output}: creating a file in {parent} fails ({error.strerror or error})"
        ) from error
    return kind


def window_outputs(
    net: nn.Module, clip: torch.Tensor, times: list[float], out_size, outputs: slice, max_queries
) -> Iterator[torch.Tensor]:
    """The output frames ``outputs`` of one window (1, T, 3, h, w), one (1, 3, H, W) at a time.

    A network with a ``stream`` method (STNO) computes only those frames and decodes one at a
    time; any other video model is called whole and its outputs sliced.
    """
    stream = getattr(net, "stream", None)
    if stream is not None:
        yield from stream(clip, times, out_size, max_queries=max_queries, outputs=outputs)
        return
    selected = net(clip, times, out_size, max_queries=max_queries)[:, outputs]
    for k in range(selected.shape[1]):
        yield selected[:, k]


def _is_frame_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


@torch.no_grad()
def upscale_video(
    net: nn.Module,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    space_scale: float | None = 4.0,
    time_scale: int = 2,
    out_size=None,
    fps: float | None = None,
    input_fps: float | None = None,
    window: int = 6,
    context: int = 1,
    max_queries: int | None = 65536,
    device: str | torch.device = "cpu",
    progress: bool = True,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    overwrite: bool = False,
    video_preset: str = "veryfast",
) -> dict[str, Any]:
    """Upscale a video (file or frame folder) in space and time, streaming, writing atomically.

    Args:
        net: ``net(frames (1, T, 3, h, w) [0, 1], times, (H, W), max_queries) -> (1, O, 3, H, W)``.
        input_path, output_path: a video file or a frame folder each (output: video by extension,
            folder when it has no extension).
        space_scale: output size ``round(h * s), round(w * s)`` (s >= 1); or give ``out_size``.
        time_scale: integer >= 1; output has ``(N - 1) * time_scale + 1`` frames.
        fps: output frames per second (default: input fps x time_scale).
        input_fps: frames per second of the input (frame folders: default 25).
        window, context: inputs per network call and inputs of overlap context on each side.
        max_queries: target pixels decoded at once (memory bound; same result as unchunked).
        video_preset: libx264 speed preset of a video output (``veryfast``: about 12 ms less CPU
            per 720p frame than ``medium``, which competes with the network for the same cores;
            files are somewhat larger at the same quality setting).
        on_start: called with the plan (frames, sizes, fps) once the input and output are checked,
            before any frame is computed.
        overwrite: replace an existing output (else it is an error, raised before any work).
    Returns:
        a summary dict: input/output frame counts, sizes, fps, seconds.
    """
    if isinstance(time_scale, float) and not float(time_scale).is_integer():
        raise ConfigError(f"time_scale must be an integer >= 1, got {time_scale}")
    time_scale = int(time_scale)
    if time_scale < 1:
        raise ConfigError(f"time_scale must be an integer >= 1, got {time_scale}")
    if max_queries is not None and int(max_queries) < 1:
        raise ConfigError(f"max_queries must be a positive integer or null, got {max_queries}")
    if fps is not None and not float(fps) > 0:
        raise ConfigError(f"fps must be positive, got {fps}")
    check_window(window, context)
    input_path, output_path = Path(input_path).expanduser(), Path(output_path).expanduser()
    reader = FrameReader(input_path, input_fps)
    kind = _check_output(output_path, input_path, overwrite)
    height, width = reader.size
    out_h, out_w = output_size_for(reader.size, space_scale, out_size)
    out_fps = float(fps) if fps else reader.fps * time_scale
    times = [i / time_scale for i in range(1, time_scale)]
    device = torch.device(device)
    net = net.to(device).eval()
    if on_start is not None:
        on_start(
            {
                "input_frames": reader.num_frames,
                "output_frames": (reader.num_frames - 1) * time_scale + 1,
                "input_size": [height, width],
                "output_size": [out_h, out_w],
                "input_fps": reader.fps,
                "output_fps": out_fps,
                "window": window,
            }
        )

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=(reader.num_frames - 1) * time_scale + 1,
            unit="frame",
            desc="stno-infer",
            dynamic_ncols=True,
        )
    sink = open_sink(output_path, kind, out_fps, video_preset)
    written = 0
    input_count = 0
    started = time.perf_counter()
    try:
        for plan, frames in stream_windows(prefetch(reader, depth=window + 2), window, context):
            clip = torch.stack(frames).float().div_(255.0)
            if tuple(clip.shape[-2:]) != (height, width):
                raise DataError(
                    f"frame size changes inside {input_path}: {tuple(clip.shape[-2:])} vs {height}x{width}"
                )
            begin = (plan.own_from - plan.first) * time_scale
            end = (plan.own_to - plan.first) * time_scale + (1 if plan.is_last else 0)
            for frame in window_outputs(
                net,
                clip.unsqueeze(0).to(device),
                times,
                (out_h, out_w),
                slice(begin, end),
                max_queries,
            ):
                sink.write(frame.float().cpu())
                written += frame.shape[0]
                if bar is not None:
                    bar.update(frame.shape[0])
            input_count = plan.last + 1
        expected = (input_count - 1) * time_scale + 1
        if written != expected:  # a broken invariant must never produce a silently wrong video
            raise RuntimeError(f"wrote {written} frames, expected {expected}")
        sink.close()
    except BaseException:
        sink.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - started
    return {
        "input": str(input_path),
        "output": str(output_path),
        "input_frames": input_count,
        "output_frames": written,
        "input_size": [height, width],
        "output_size": [out_h, out_w],
        "input_fps": reader.fps,
        "output_fps": out_fps,
        "window": window,
        "seconds": seconds,
        "seconds_per_output_frame": seconds / max(written, 1),
    }
