"""Running a network on users' videos: device, threads and precision (`runtime`), windows over a
long clip (`windows`), reader and writer threads (`pipeline`), and `upscale_video` (`upscale`)."""

from stno.inference.pipeline import (
    DEFAULT_FRAME_FOLDER_FPS,
    BackgroundSink,
    FrameReader,
    open_frames,
    prefetch,
)
from stno.inference.upscale import output_size_for, upscale_video
from stno.inference.windows import InferenceWindow, plan_windows, stream_windows

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
