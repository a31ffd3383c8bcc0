"""Around the network: the input read in a background thread (:func:`prefetch` over a
:class:`FrameReader`) and the output written in another (:class:`BackgroundSink` over a video or
frame-folder sink), so that decoding and encoding overlap with the computation.

Readers decode through :mod:`stno.io.video` and :mod:`stno.io.images` (one frame at a time);
sinks write through :mod:`stno.io.files`: a temporary name renamed when complete, deleted on
abort, so an error or Ctrl-C never leaves half an output.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from stno.data.sources import FrameFolderSource
from stno.errors import DataError, DataNotFoundError
from stno.io.files import commit, discard, temporary_path
from stno.io.images import IMAGE_EXTENSIONS, iter_images, write_png_frames
from stno.io.video import iter_video_frames, probe_video
from stno.io.video_writer import VideoWriter

__all__ = [
    "DEFAULT_FRAME_FOLDER_FPS",
    "BackgroundSink",
    "FrameReader",
    "open_frames",
    "open_sink",
    "prefetch",
]

# Frames per second assumed for a frame-folder input (override with input_fps=).
DEFAULT_FRAME_FOLDER_FPS = 25.0


class FrameReader:
    """Sequential reader of a video file or a frame folder: iterate to get (3, H, W) uint8 frames.

    ``num_frames`` is exact for a frame folder and the container's count (possibly an estimate)
    for a video; ``fps`` is the video's rate, or ``DEFAULT_FRAME_FOLDER_FPS`` for a folder.
    """

    def __init__(self, path: str | os.PathLike, fps: float | None = None) -> None:
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
        """Frames in order, decoded one at a time; a frame of another size than the first, or a
        video that ends early, is a DataError."""
        if self._source is not None:
            return iter_images(self._source.frame_paths(self._name))
        return iter_video_frames(self.path)


def open_frames(path: str | os.PathLike, fps: float | None = None) -> FrameReader:
    """A :class:`FrameReader` over a video file or a frame folder."""
    return FrameReader(path, fps)


class _VideoSink:
    """Frames into a video file (:class:`VideoWriter`: a temporary file renamed when complete)."""

    def __init__(self, path: Path, fps: float, preset: str = "medium") -> None:
        self.writer = VideoWriter(path, fps=fps, preset=preset)

    def write(self, frames: torch.Tensor) -> None:
        self.writer.write(frames)

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.abort()


class _FolderSink:
    """PNG frames into a temporary sibling folder, renamed to ``path`` when complete."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.temporary = temporary_path(path)
        discard(self.temporary)  # left by an earlier run of this process id
        self.temporary.mkdir()
        self.count = 0
        self.aborted = False

    def write(self, frames: torch.Tensor) -> None:
        if self.aborted:  # a late write must not create the removed folder again
            raise RuntimeError(f"writing {self.path} was aborted")
        write_png_frames(frames, self.temporary, start_index=self.count)
        self.count += frames.shape[0]

    def close(self) -> None:
        # An existing folder is replaced only when empty, or holding only frames with
        # overwrite=true (checked before any frame was computed).
        commit(self.temporary, self.path)

    def abort(self) -> None:
        self.aborted = True
        discard(self.temporary)


def open_sink(path: Path, kind: str, fps: float, preset: str = "medium") -> BackgroundSink:
    """A background writer of ``kind`` ``"video"`` (a file at ``fps``, H.264 encoder ``preset``)
    or ``"folder"`` (PNGs)."""
    sink = _VideoSink(path, fps, preset) if kind == "video" else _FolderSink(path)
    return BackgroundSink(sink, depth=4)


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
        try:  # wake a writer thread that waits for work (else the join waits its whole timeout)
            self.worker.queue.put_nowait(_Background._DONE)
        except queue.Full:  # it has items to take, and stops at the next one
            pass
        self.thread.join(timeout=30)
        self.sink.abort()
