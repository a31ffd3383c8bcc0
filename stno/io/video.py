"""Reading videos (PyAV): the one sequential decoder every video reader of STNO goes through.

Videos are always decoded sequentially from the first frame: seeking in MPEG-2 and some
MP4 files returns corrupt or shifted frames, and exact frame indices matter for ST-VSR.
The decoder's checks (an unreadable file, a video that ends before its declared frame count,
frames that change size) are each a one-line :class:`~stno.errors.DataError`.

Writing videos is :mod:`stno.io.video_writer`, frame images :mod:`stno.io.images`; their names
are importable from here too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from stno.errors import DataError, DataNotFoundError
from stno.io.images import IMAGE_EXTENSIONS, read_image, write_png_frames
from stno.io.video_writer import VideoWriter

__all__ = [
    "DataError",
    "DataNotFoundError",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "iter_video_frames",
    "read_video_frames",
    "probe_video",
    "VideoWriter",
    "read_image",
    "write_png_frames",
]

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

    A frame of another size than the first is a DataError. Decoding to the end checks the
    number of frames against the container's count: a video that ends early (cut off, or frames
    the decoder dropped) is a DataError naming the first missing frame. A container that stores
    no count cannot be checked: a warning says so.
    """
    import av

    container = _open_input(path)
    decoded = 0
    size = None
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        declared = int(stream.frames or 0)
        try:
            for frame in container.decode(stream):
                if size is None:
                    size = (frame.width, frame.height)
                elif (frame.width, frame.height) != size:
                    raise DataError(
                        f"frames of video {path} change size: frame 0 is {size[0]}x{size[1]}, "
                        f"frame {decoded} is {frame.width}x{frame.height} (width x height); "
                        "re-encode it at one size"
                    )
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


def _to_tensor(frame) -> torch.Tensor:
    """An av.VideoFrame as a (3, H, W) uint8 RGB tensor."""
    return torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).contiguous()


def iter_video_frames(path: str | os.PathLike) -> Iterator[torch.Tensor]:
    """Every frame of a video in order, (3, H, W) uint8 RGB each, decoded one at a time (memory
    does not grow with the video), with the decoder's checks (see :func:`_decoded_frames`)."""
    path = _require_file(path)
    decoded = _decoded_frames(path)
    try:
        for frame in decoded:
            yield _to_tensor(frame)
    finally:
        decoded.close()


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
    # Frames are written into one tensor of the declared length as they are decoded: the peak
    # is the video's size once, not three times (a list of frames, their stack, its transpose).
    declared = _declared_frames(path)
    hint = max(declared - start, 0) if declared else 0
    if count is not None:
        hint = min(hint, count) if hint else count
    out: torch.Tensor | None = None
    beyond: list[torch.Tensor] = []  # frames past the declared count (a wrong container count)
    taken = 0
    index = -1
    decoded = _decoded_frames(path)
    try:
        for index, frame in enumerate(decoded):
            if index < start:
                continue
            image = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
            if out is None and hint:
                out = torch.empty((hint, *image.shape), dtype=torch.uint8)
            if out is not None and taken < out.shape[0]:
                out[taken].copy_(image)
            else:
                beyond.append(image.contiguous())
            taken += 1
            if count is not None and taken == count:
                break
    finally:
        decoded.close()  # closes the container now, not at garbage collection
    if not taken:
        if index < 0:
            raise DataError(f"no frames could be decoded from {path} (empty or corrupt video)")
        raise DataError(f"video {path} has {index + 1} frames, cannot start at frame {start}")
    if count is not None and taken < count:
        raise DataError(
            f"video {path} ends at frame {start + taken}, frames up to {start + count - 1} "
            "were asked for (truncated file?)"
        )
    if out is None:
        return torch.stack(beyond)
    if beyond:
        return torch.cat([out, torch.stack(beyond)])
    return out[:taken]


def _declared_frames(path: Path) -> int:
    """The frame count the container declares (0: it stores none)."""
    container = _open_input(path)
    try:
        return int(container.streams.video[0].frames or 0)
    finally:
        container.close()


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
