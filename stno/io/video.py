"""Reading and writing videos and frame images (PyAV for video, Pillow for PNG/JPEG).

Videos are always decoded sequentially from the first frame: seeking in MPEG-2 and some
MP4 files returns corrupt or shifted frames, and exact frame indices matter for ST-VSR.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from stno.errors import ConfigError, DataError, DataNotFoundError

__all__ = [
    "DataError",
    "DataNotFoundError",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "read_video_frames",
    "probe_video",
    "VideoWriter",
    "read_image",
    "write_png_frames",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov", ".mpg", ".mpeg", ".webm", ".m4v", ".y4m")


def _require_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError(
            f"video not found: {path} (give the path of an existing video file)"
        )
    if not path.is_file():
        raise DataError(f"expected a video file, got a folder: {path}")
    return path


def _open_input(path: Path):
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise DataError(
            f"cannot open video {path}: {reason} (is it a video file, complete and not corrupt?)"
        ) from error
    if not container.streams.video:
        container.close()
        raise DataError(f"no video stream in {path}")
    return container


def _decoded_frames(path: Path):
    """Yield av.VideoFrame objects from the first frame on, turning decoder errors into DataError.

    Decoding to the end checks the number of frames against the container's count: a video
    that ends early (cut off, or frames the decoder dropped) is a DataError naming the first
    missing frame. A container that stores no count cannot be checked: a warning says so.
    """
    import av

    container = _open_input(path)
    decoded = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        declared = int(stream.frames or 0)
        try:
            for frame in container.decode(stream):
                yield frame
                decoded += 1
        except av.error.FFmpegError as error:
            raise DataError(
                f"corrupt video {path}: decoding failed at frame {decoded}"
                + (f" of {declared}" if declared else "")
                + f" ({error.strerror or error}); re-encode or replace the file"
            ) from error
    finally:
        container.close()
    if declared and decoded < declared:
        raise DataError(
            f"video {path} ends early at frame {decoded}: its container declares {declared} "
            f"frames, only {decoded} could be decoded (truncated or corrupt file); re-encode or "
            "replace it"
        )
    if not declared and str(path) not in _UNCHECKED_COUNT_WARNED:
        _UNCHECKED_COUNT_WARNED.add(str(path))
        logging.getLogger(__name__).warning(
            "%s does not store its frame count: %d frames were decoded, a cut-off end cannot be "
            "detected",
            path,
            decoded,
        )


# Videos already reported as having no stored frame count (say it once per file).
_UNCHECKED_COUNT_WARNED: set[str] = set()


def read_video_frames(
    path: str | os.PathLike, start: int = 0, count: int | None = None
) -> torch.Tensor:
    """Decode frames ``start .. start+count-1`` (all to the end if ``count`` is None).

    Returns:
        (n, 3, H, W) uint8 RGB tensor.
    """
    path = _require_file(path)
    if start < 0 or (count is not None and count < 1):
        raise ValueError(f"read_video_frames: need start >= 0 and count >= 1, got {start}, {count}")
    frames = []
    index = -1
    decoded = _decoded_frames(path)
    try:
        for index, frame in enumerate(decoded):
            if index < start:
                continue
            frames.append(frame.to_ndarray(format="rgb24"))
            if count is not None and len(frames) == count:
                break
    finally:
        decoded.close()  # closes the container now, not at garbage collection
    if not frames:
        if index < 0:
            raise DataError(f"no frames could be decoded from {path} (empty or corrupt video)")
        raise DataError(f"video {path} has {index + 1} frames, cannot start at frame {start}")
    if count is not None and len(frames) < count:
        raise DataError(
            f"video {path} ends at frame {start + len(frames)}, frames up to {start + count - 1} "
            "were asked for (truncated file?)"
        )
    array = np.stack(frames)  # (n, H, W, 3)
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


def probe_video(path: str | os.PathLike) -> tuple[int, float, tuple[int, int]]:
    """(number of frames, frames per second, (H, W)) of a video.

    The frame count is taken from the container when it is stored, else found by decoding.
    """
    path = _require_file(path)
    container = _open_input(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        height, width = stream.codec_context.height, stream.codec_context.width
        stored = int(stream.frames or 0)
    finally:
        container.close()
    if stored > 0:
        return stored, fps, (height, width)
    count = 0
    for frame in _decoded_frames(path):
        count += 1
        height, width = frame.height, frame.width
    if count == 0:
        raise DataError(f"no frames could be decoded from {path} (empty or corrupt video)")
    return count, fps, (height, width)


def _to_uint8_hwc(frame: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) uint8 or float [0, 1] tensor/array -> contiguous (H, W, 3) uint8 array."""
    frame = torch.as_tensor(frame).detach().cpu()
    if frame.dim() != 3 or frame.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) frame, got shape {tuple(frame.shape)}")
    if frame.dtype != torch.uint8:
        frame = torch.round(frame.float().clamp(0, 1) * 255).to(torch.uint8)
    return np.ascontiguousarray(frame.permute(1, 2, 0).numpy())


class VideoWriter:
    """Write RGB frames to a video file, atomically.

    Frames go to a temporary file in the destination folder, which is renamed to ``path``
    only when the writer closes without an error; on an error it is deleted.

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
        self.frames_written = 0
        self._temp_path = self.path.with_name(
            f".{self.path.stem}.partial-{os.getpid()}{self.path.suffix}"
        )
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
            stream.options = {"crf": str(self.crf), "preset": "medium"}
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
            image = _to_uint8_hwc(frame)
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
        os.replace(self._temp_path, self.path)
        return self.path

    def abort(self) -> None:
        """Stop writing and delete the temporary file; the final path is left untouched."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # the error that got us here is the one to report
                pass
            self._container = None
        if self._temp_path.exists():
            self._temp_path.unlink()


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """Read a PNG/JPEG/BMP image as a (3, H, W) uint8 RGB tensor."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except OSError as error:
        raise DataError(f"cannot read image {path}: {error}") from error
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def write_png_frames(
    frames: Iterable[torch.Tensor] | torch.Tensor,
    folder: str | os.PathLike,
    start_index: int = 0,
    name_format: str = "{:08d}.png",
) -> list[Path]:
    """Write (n, 3, H, W) frames (uint8, or float in [0, 1]) as PNG files ``folder/00000000.png``...

    Creates ``folder`` if needed. Returns the written paths.
    """
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for offset, frame in enumerate(frames):
        path = folder / name_format.format(start_index + offset)
        Image.fromarray(_to_uint8_hwc(frame)).save(path)
        paths.append(path)
    return paths
