"""Writing RGB frames to a video file (PyAV), through :mod:`stno.io.files`: never half a file."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from stno.errors import ConfigError, DataError, DataNotFoundError
from stno.io.files import commit, discard, temporary_path
from stno.io.images import to_uint8_hwc

__all__ = ["VideoWriter"]


class VideoWriter:
    """Write RGB frames to a video file, atomically.

    Frames go to a temporary file in the destination folder
    (:func:`stno.io.files.temporary_path`, keeping the extension that picks the container), which
    is renamed to ``path`` only when the writer closes without an error; on an error it is deleted.

    H.264 (libx264, yuv420p, ``crf``) when PyAV has it, else MPEG-4 Part 2 at high quality.
    yuv420p needs even sizes: odd heights/widths are padded by repeating the last row/column
    (so the stored video is at most one pixel taller/wider), unless ``pad_odd=False``, which
    raises instead.

    Usage::

        with VideoWriter("out.mp4", fps=25) as writer:
            for frame in frames:  # (3, H, W) uint8, or float in [0, 1]
                writer.write(frame)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float = 25.0,
        crf: int = 18,
        codec: str | None = None,
        pad_odd: bool = True,
        preset: str = "medium",
    ) -> None:
        self.path = Path(path)
        if fps <= 0:
            raise ConfigError(f"VideoWriter: fps must be positive, got {fps}")
        if not self.path.parent.exists():
            raise DataNotFoundError(f"output folder does not exist: {self.path.parent}")
        self.fps = fps
        self.crf = crf
        self.codec = codec
        self.pad_odd = pad_odd
        self.preset = preset
        self.frames_written = 0
        self._temp_path = temporary_path(self.path, keep_suffix=True)
        self._container = None
        self._stream = None
        self._size: tuple[int, int] | None = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _open(self, height: int, width: int) -> None:
        import av

        if (height % 2 or width % 2) and not self.pad_odd:
            raise DataError(
                f"VideoWriter: {height}x{width} is odd; yuv420p video needs even sizes "
                "(crop the frames or use pad_odd=True)"
            )
        codec = self.codec or ("libx264" if "libx264" in av.codecs_available else "mpeg4")
        try:
            self._container = av.open(str(self._temp_path), mode="w")
        except (OSError, av.error.FFmpegError) as error:
            raise DataError(
                f"cannot write video {self.path}: {getattr(error, 'strerror', None) or error}"
            ) from error
        rate = Fraction(self.fps).limit_denominator(10000)
        stream = self._container.add_stream(codec, rate=rate)
        stream.height = height + height % 2
        stream.width = width + width % 2
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(self.crf), "preset": self.preset}
        else:
            stream.bit_rate = 8 * stream.height * stream.width * max(int(self.fps), 1)
            stream.options = {"qscale": "2"}
        self._stream = stream
        self._size = (height, width)

    def write(self, frames: torch.Tensor | np.ndarray) -> None:
        """Append one frame (3, H, W) or several (n, 3, H, W); uint8, or float in [0, 1]."""
        import av

        frames = torch.as_tensor(frames)
        batch = frames.unsqueeze(0) if frames.dim() == 3 else frames
        for frame in batch:
            image = to_uint8_hwc(frame)
            height, width = image.shape[:2]
            if self._container is None:
                self._open(height, width)
            elif (height, width) != self._size:
                raise DataError(
                    f"VideoWriter: frame size {height}x{width} differs from the first frame's "
                    f"{self._size[0]}x{self._size[1]}"
                )
            if height % 2 or width % 2:
                image = np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
            video_frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            for packet in self._stream.encode(video_frame):
                self._container.mux(packet)
            self.frames_written += 1

    def close(self) -> Path:
        """Flush, close and move the file to its final name. Returns the final path."""
        if self._container is None:
            raise DataError(f"VideoWriter: no frames were written to {self.path}")
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
        except BaseException:
            self.abort()
            raise
        self._container = None
        return commit(self._temp_path, self.path)

    def abort(self) -> None:
        """Stop writing and delete the temporary file; the final path is left untouched."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # the error that got us here is the one to report
                pass
            self._container = None
        discard(self._temp_path)
