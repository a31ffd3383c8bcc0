"""Data: frame sources, clip datasets, video/image I/O and the embedded sample clip."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from stno.data.clips import ContinuousClipDataset, FixedScaleClipDataset, WindowDataset
from stno.data.collate import ContinuousCollate, collate_clips
from stno.data.sampling import seed_worker
from stno.data.scenes import ShotSource, detect_scene_cuts
from stno.data.sources import (
    AdobeGoProSource,
    FrameFolderSource,
    FrameSource,
    VideoFileSource,
    VimeoSeptupletSource,
)
from stno.data.splits import SequenceSubset, split_sequences
from stno.data.transforms import augment_clip, downscale, lr_size_for, make_lr
from stno.errors import DataError, DataNotFoundError
from stno.io.images import read_image, write_png_frames
from stno.io.video import iter_video_frames, probe_video, read_video_frames
from stno.io.video_writer import VideoWriter

SAMPLE_VIDEO_NAME = "city_sample.mp4"


def sample_video_path() -> Path:
    """Path of the embedded CC0 sample clip (inside the installed package; see stno/assets/README.md)."""
    path = Path(str(files("stno.assets").joinpath(SAMPLE_VIDEO_NAME)))
    if not path.is_file():
        raise DataNotFoundError(f"embedded sample missing: {path} (reinstall the stno package)")
    return path


__all__ = [
    "make_shot_source",
    "ShotSource",
    "detect_scene_cuts",
    "AdobeGoProSource",
    "ContinuousClipDataset",
    "ContinuousCollate",
    "DataError",
    "DataNotFoundError",
    "FixedScaleClipDataset",
    "FrameFolderSource",
    "FrameSource",
    "SequenceSubset",
    "VideoFileSource",
    "VideoWriter",
    "VimeoSeptupletSource",
    "WindowDataset",
    "augment_clip",
    "collate_clips",
    "downscale",
    "iter_video_frames",
    "lr_size_for",
    "make_lr",
    "probe_video",
    "read_image",
    "read_video_frames",
    "sample_video_path",
    "seed_worker",
    "split_sequences",
    "write_png_frames",
]


def make_shot_source(path) -> ShotSource | None:
    """The shots of the videos at ``path`` (a file, folder or list), or None when ``path`` is."""
    if path is None:
        return None
    return ShotSource(VideoFileSource(path))
