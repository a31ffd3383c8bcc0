"""Any video to high resolution and high frame rate, streamed through sliding windows.

Streaming: input frames are decoded one after the other (PyAV, or one image at a time from a
frame folder) and only the current window (``window + 1`` frames) is kept, so memory does not
grow with the video's length; output frames are written as soon as a window is done.

Windows and overlap: the network sees ``window`` consecutive inputs at a time so that its
bidirectional recurrent propagation has temporal context. Neighbouring windows overlap by
``2 * context`` inputs; each window *owns* the input intervals away from its edges (``context``
inputs of margin on each side, none at the start and end of the video) and emits, for every
owned interval ``[i, i + 1]``, the output frame of input ``i`` followed by its
``time_scale - 1`` in-between frames; the last window also emits the last input's frame. So
each interval is produced exactly once, in order, and the output has exactly
``(N - 1) * time_scale + 1`` frames. The last window is shifted back to end at the last input
(more left context instead of a shorter window). Defaults ``window=6, context=1``: each window
owns 3 of its 5 intervals (compute ~1.7x of a single pass), with one input of context on
each side of every owned frame.

The output (a video file or a frame folder) is written under a temporary name and renamed
when complete; on any error nothing is left at the output path.
"""

from __future__ import annotations

import math
import os
import queue
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stno.data import DataError, DataNotFoundError, VideoWriter, write_png_frames
from stno.errors import ConfigError, OutputError, OutputExistsError, OutputNotWritableError
from stno.io.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

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

# Frames per second assumed for a frame-folder input (override with input_fps=).
DEFAULT_FRAME_FOLDER_FPS = 25.0


@dataclass(frozen=True)
class InferenceWindow:
    """Inputs ``first .. last`` (inclusive) go to the network; intervals ``own_from .. own_to - 1``
    are emitted (interval i = input i's frame and the frames between inputs i and i + 1);
    ``is_last``: also emit input ``last``'s frame (the video's final frame)."""

    first: int
    last: int
    own_from: int
    own_to: int
    is_last: bool


def _check_window(window: int, context: int) -> None:
    if window < 2:
        raise ConfigError(f"window must be >= 2 input frames, got {window}")
    if context < 0 or window - 1 - 2 * context < 1:
        raise ConfigError(
            f"context={context} leaves no frames to emit in a window of {window} inputs; "
            f"need window >= 2 * context + 2"
        )


def stream_windows(
    frames: Iterator[Any], window: int = 6, context: int = 1
) -> Iterator[tuple[InferenceWindow, list[Any]]]:
    """Cut a stream of frames into overlapping windows without knowing its length in advance.

    Yields ``(InferenceWindow, frames first .. last)``; at most ``window + 1`` frames are held
    (one frame of look-ahead tells whether a window is the last). Raises DataError for
    fewer than 2 frames.
    """
    _check_window(window, context)
    frames = iter(frames)
    buffer: deque = deque(maxlen=window + 1)  # (index, frame)
    next_index = 0
    exhausted = False

    def fill(upto: int) -> None:
        nonlocal next_index, exhausted
        while not exhausted and next_index <= upto:
            try:
                frame = next(frames)
            except StopIteration:
                exhausted = True
                return
            buffer.append((next_index, frame))
            next_index += 1

    own_from = 0
    while True:
        first = max(0, own_from - context)
        fill(first + window)  # one frame past the window: is there anything after it?
        if exhausted:
            count = next_index
            if count < 2:
                raise DataError(f"the input has {count} frame(s); need at least 2 frames")
            first, last, own_to, is_last = max(0, count - window), count - 1, count - 1, True
        else:
            last = first + window - 1
            own_to, is_last = last - context, False
        held = {index: frame for index, frame in buffer}
        yield (
            InferenceWindow(first, last, own_from, own_to, is_last),
            [held[i] for i in range(first, last + 1)],
        )
        if is_last:
            return
        own_from = own_to


def plan_windows(num_frames: int, window: int = 6, context: int = 1) -> list[InferenceWindow]:
    """The windows :func:`stream_windows` makes for a video of ``num_frames`` frames."""
    return [w for w, _frames in stream_windows(iter(range(num_frames)), window, context)]


class FrameReader:
    """Sequential reader of a video file or a frame folder: iterate to get (3, H, W) uint8 frames.

    ``num_frames`` is exact for a frame folder and the container's count (possibly an estimate)
    for a video; ``fps`` is the video's rate, or ``DEFAULT_FRAME_FOLDER_FPS`` for a folder.
    """

    def __init__(self, path: str | os.PathLike, fps: float | None = None) -> None:
        from stno.data import FrameFolderSource, probe_video

        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise DataNotFoundError(
                f"input not found: {self.path} (give a video file or a folder of frames)"
            )
        if self.path.is_dir():
            source = FrameFolderSource(self.path)
            if len(source.sequences) != 1:
                raise DataError(
                    f"{self.path} holds {len(source.sequences)} frame folders; give one folder of frames"
                )
            self._source = source
            self._name, self.num_frames = source.sequences[0]
            self.fps = float(fps) if fps else DEFAULT_FRAME_FOLDER_FPS
            first = source.read(self._name, [0])[0]
            self.size = (int(first.shape[-2]), int(first.shape[-1]))
        else:
            if self.path.suffix.lower() in IMAGE_EXTENSIONS:
                raise DataError(
                    f"{self.path} is a single image; give a video or a folder of frames"
                )
            self._source = None
            self.num_frames, video_fps, self.size = probe_video(self.path)
            self.fps = float(fps) if fps else video_fps
            if not self.fps or self.fps <= 0:
                self.fps = DEFAULT_FRAME_FOLDER_FPS
        if self.num_frames < 2:
            raise DataError(f"{self.path} has {self.num_frames} frame(s); need at least 2 frames")

    def __iter__(self) -> Iterator[torch.Tensor]:
        """Frames in order; a frame of another size, or a video that ends early, is a DataError."""
        if self._source is not None:
            for index in range(self.num_frames):
                frame = self._source.read(self._name, [index])[0]
                if tuple(frame.shape[-2:]) != self.size:
                    from stno.data.sources import _raise_mixed_sizes

                    paths = self._source.frame_paths(self._name)
                    _raise_mixed_sizes(paths[0], self.size, paths[index], frame.shape[-2:])
                yield frame
            return
        from stno.io.video import _decoded_frames

        for frame in _decoded_frames(self.path):
            yield torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).contiguous()


def open_frames(path: str | os.PathLike, fps: float | None = None) -> FrameReader:
    """A :class:`FrameReader` over a video file or a frame folder."""
    return FrameReader(path, fps)


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


class _VideoSink:
    def __init__(self, path: Path, fps: float) -> None:
        self.writer = VideoWriter(path, fps=fps)

    def write(self, frames: torch.Tensor) -> None:
        self.writer.write(frames)

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.__exit__(RuntimeError, RuntimeError("aborted"), None)


class _FolderSink:
    """PNG frames into a temporary sibling folder, renamed to ``path`` when complete."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
        if self.temporary.exists():
            shutil.rmtree(self.temporary)
        self.temporary.mkdir()
        self.count = 0

    def write(self, frames: torch.Tensor) -> None:
        write_png_frames(frames, self.temporary, start_index=self.count)
        self.count += frames.shape[0]

    def close(self) -> None:
        previous = None
        if self.path.exists():
            # Replaced only when empty, or holding only frames with overwrite=true (checked before).
            previous = self.path.with_name(f".{self.path.name}.previous-{os.getpid()}")
            os.replace(self.path, previous)
        os.replace(self.temporary, self.path)
        if previous is not None:
            shutil.rmtree(previous)

    def abort(self) -> None:
        shutil.rmtree(self.temporary, ignore_errors=True)


class _Background:
    """A daemon thread that works through a bounded queue; its error is re-raised to the caller.

    Reading and writing video (PyAV's decoder and encoder release the GIL) then overlap with the
    network instead of waiting for it; the bound keeps memory flat.
    """

    _DONE = object()

    def __init__(self, depth: int) -> None:
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self.error: BaseException | None = None
        self.stopped = threading.Event()

    def _put(self, item) -> None:
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue


def prefetch(iterable, depth: int = 8) -> Iterator[Any]:
    """Iterate over ``iterable`` in a background thread, at most ``depth`` items ahead, in order."""
    worker = _Background(depth)

    def produce() -> None:
        try:
            for item in iterable:
                worker._put(item)
                if worker.stopped.is_set():
                    return
        except BaseException as error:  # re-raised in the consumer's thread
            worker.error = error
        worker._put(_Background._DONE)

    thread = threading.Thread(target=produce, name="stno-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = worker.queue.get()
            if item is _Background._DONE:
                if worker.error is not None:
                    raise worker.error
                return
            yield item
    finally:
        worker.stopped.set()
        thread.join(timeout=5)


class BackgroundSink:
    """Write frames through ``sink`` in a background thread, keeping their order.

    ``write`` returns as soon as the frames are queued (at most ``depth`` chunks wait); ``close``
    waits for every chunk, then closes ``sink``; ``abort`` drops what waits and aborts ``sink``.
    An error of the writer thread is raised by the next ``write`` or by ``close``.
    """

    def __init__(self, sink, depth: int = 4) -> None:
        self.sink = sink
        self.worker = _Background(depth)
        self.thread = threading.Thread(target=self._consume, name="stno-writer", daemon=True)
        self.thread.start()

    def _consume(self) -> None:
        while True:
            item = self.worker.queue.get()
            if item is _Background._DONE or self.worker.stopped.is_set():
                return
            if self.worker.error is None:
                try:
                    self.sink.write(item)
                except BaseException as error:
                    self.worker.error = error

    def _raise_if_failed(self) -> None:
        if self.worker.error is not None:
            raise self.worker.error

    def write(self, frames: torch.Tensor) -> None:
        self._raise_if_failed()
        self.worker._put(frames)

    def close(self) -> None:
        self.worker._put(_Background._DONE)
        self.thread.join()
        self._raise_if_failed()
        self.sink.close()

    def abort(self) -> None:
        self.worker.stopped.set()
        self.thread.join(timeout=30)
        self.sink.abort()


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
    _check_window(window, context)
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
    sink = _VideoSink(output_path, out_fps) if kind == "video" else _FolderSink(output_path)
    sink = BackgroundSink(sink, depth=4)
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
            out = net(clip.unsqueeze(0).to(device), times, (out_h, out_w), max_queries=max_queries)[
                0
            ]
            begin = (plan.own_from - plan.first) * time_scale
            end = (plan.own_to - plan.first) * time_scale + (1 if plan.is_last else 0)
            emitted = out[begin:end].float().cpu()
            sink.write(emitted)
            written += emitted.shape[0]
            input_count = plan.last + 1
            if bar is not None:
                bar.update(emitted.shape[0])
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
        "seconds": seconds,
        "seconds_per_output_frame": seconds / max(written, 1),
    }
