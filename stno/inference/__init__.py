"""Running a network on users' videos: device, threads and precision (`runtime`), windows over a
long clip, reader and writer threads, and `upscale_video` (`upscale`)."""

from stno.inference.upscale import (
    DEFAULT_FRAME_FOLDER_FPS,
    BackgroundSink,
    FrameReader,
    InferenceWindow,
    open_frames,
    output_size_for,
    plan_windows,
    prefetch,
    stream_windows,
    upscale_video,
)

__all__ = [
    "DEFAULT_FRAME_FOLDER_FPS",
    "BackgroundSink",
    "FrameReader",
    "InferenceWindow",
    "open_frames",
    "output_size_for",
    "plan_windows",
    "prefetch",
    "stream_windows",
    "upscale_video",
]
