"""Frame sources: where the frames of each sequence come from.

Every source has the same two members:

- ``sequences``: list of ``(name, num_frames)``, sorted by name;
- ``read(name, indices)``: (n, 3, H, W) uint8 RGB tensor of the frames at ``indices`` (0-based).

Sources: ``FrameFolderSource`` (folders of PNG/JPEG frames), ``VideoFileSource`` (video files,
decoded once with PyAV and cached), ``VimeoSeptupletSource`` (Vimeo-90K septuplets with their
list files) and ``AdobeGoProSource`` (Adobe240 / GoPro frame folders). Views on part of a
source (train/val splits) are in :mod:`stno.data.splits`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import torch

from stno.errors import DataError, DataNotFoundError
from stno.io.images import (
    IMAGE_EXTENSIONS,
    image_size,
    iter_images,
    raise_mixed_sizes,
    read_image,
)
from stno.io.video import VIDEO_EXTENSIONS, probe_video, read_video_frames

__all__ = [
    "FrameSource",
    "FrameFolderSource",
    "VideoFileSource",
    "VimeoSeptupletSource",
    "AdobeGoProSource",
]


def natural_key(text: str) -> list:
    """Sort key that orders ``im2`` before ``im10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def _is_image(path: Path) -> bool:
    return (
        path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
    )


def _check_indices(name: str, indices: Sequence[int], num_frames: int) -> list[int]:
    indices = [int(i) for i in indices]
    bad = [i for i in indices if not 0 <= i < num_frames]
    if bad:
        raise IndexError(
            f"sequence {name!r} has {num_frames} frames; frame indices {bad} are out of range"
        )
    return indices


class FrameSource:
    """Base class: ``sequences`` and ``read(name, indices)``."""

    sequences: list[tuple[str, int]]

    def read(self, name: str, indices: Sequence[int]) -> torch.Tensor:
        raise NotImplementedError

    def describe(self, name: str) -> str:
        """A sequence and its length, as error messages name it."""
        return f"sequence {name!r} has {self.num_frames(name)} frames"

    def num_frames(self, name: str) -> int:
        for seq_name, count in self.sequences:
            if seq_name == name:
                return count
        raise KeyError(f"no sequence {name!r} in {type(self).__name__}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.sequences)} sequences)"


class FrameFolderSource(FrameSource):
    """Sequences stored as folders of frame images.

    Layouts: ``ROOT/<seq>/*.png|jpg`` (any depth: every folder holding images is one sequence,
    named by its path relative to ROOT, e.g. ``train/GOPR0372_07_00``), or ROOT itself a folder
    of frames (one sequence named after ROOT). Frames are ordered by natural sort of file names.
    """

    layout = "ROOT/<sequence>/*.png|jpg, or ROOT/*.png|jpg"

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise DataNotFoundError(
                f"frame folder not found: {self.root} (expected layout {self.layout})"
            )
        if not self.root.is_dir():
            raise DataError(f"expected a folder of frames, got a file: {self.root}")
        self._frames: dict[str, list[Path]] = {}
        self._discover(self.root)
        if not self._frames:
            raise DataError(
                f"no frame images (.png/.jpg) found under {self.root} (expected layout {self.layout})"
            )
        self.sequences = [
            (name, len(self._frames[name])) for name in sorted(self._frames, key=natural_key)
        ]
        self.check_frame_sizes()

    def _discover(self, root: Path) -> None:
        for folder, _dirs, files in os.walk(root):
            folder_path = Path(folder)
            images = [folder_path / f for f in files]
            images = sorted((p for p in images if _is_image(p)), key=lambda p: natural_key(p.name))
            if images:
                relative = folder_path.relative_to(root).as_posix()
                name = root.name if relative == "." else relative
                self._frames[name] = images

    def frame_paths(self, name: str) -> list[Path]:
        return self._frames[name]

    def read(self, name: str, indices: Sequence[int]) -> torch.Tensor:
        paths = self._frames[name]
        indices = _check_indices(name, indices, len(paths))
        return torch.stack(list(iter_images([paths[i] for i in indices])))

    def check_frame_sizes(self) -> None:
        """Compare the first and last frame of every sequence (image headers only): frames of
        different sizes cannot be stacked into clips. ``read`` checks the frames it reads."""
        for paths in self._frames.values():
            first, last = image_size(paths[0]), image_size(paths[-1])
            if first != last:
                raise_mixed_sizes(paths[0], first, paths[-1], last)


class VideoFileSource(FrameSource):
    """Sequences stored as video files: ``path`` is a video, a folder of videos (searched
    recursively), or a list of those.

    Each video is one sequence, named by its path relative to its folder (or its file name).
    A video is decoded sequentially (never seeking) the first time it is read and its frames are
    kept in memory as uint8 (a 640x480 frame takes 0.9 MB), so an epoch does not decode again;
    ``preload()`` decodes everything at once (call it before forking DataLoader workers so they
    share the decoded frames). ``cache=False`` decodes on every read. ``exclude``: file names
    to leave out (e.g. validation clips that sit in the same folder).
    """

    layout = "a video file, or a folder of video files (.mp4, .mkv, .avi, .mov, .mpg, ...)"

    def __init__(
        self,
        path: str | os.PathLike | Sequence[str | os.PathLike],
        cache: bool = True,
        exclude: Sequence[str] = (),
    ) -> None:
        paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        if not paths:
            raise DataError(f"no video path given (expected {self.layout})")
        self.path = Path(paths[0])
        files: dict[str, Path] = {}
        for entry in map(Path, paths):
            if not entry.exists():
                raise DataNotFoundError(f"video path not found: {entry} (expected {self.layout})")
            if entry.is_dir():
                found = sorted(
                    (
                        p
                        for p in entry.rglob("*")
                        if p.is_file()
                        and p.suffix.lower() in VIDEO_EXTENSIONS
                        and not p.name.startswith(".")
                    ),
                    key=lambda p: natural_key(p.relative_to(entry).as_posix()),
                )
                if not found:
                    raise DataError(f"no video files found in {entry} (expected {self.layout})")
                files.update((p.relative_to(entry).as_posix(), p) for p in found)
            else:
                files[entry.name] = entry
        excluded = set(exclude)
        files = {name: p for name, p in files.items() if p.name not in excluded}
        if not files:
            raise DataError(f"every video under {', '.join(map(str, paths))} is excluded")
        self.cache = cache
        self._files = files
        self._decoded: dict[str, torch.Tensor] = {}
        self.fps: dict[str, float] = {}
        self.sequences = []
        for name, file in self._files.items():
            num_frames, fps, _size = probe_video(file)
            self.fps[name] = fps
            self.sequences.append((name, num_frames))

    def preload(self) -> VideoFileSource:
        """Decode every video now (when caching). Returns self."""
        if self.cache:
            for name, _count in self.sequences:
                self._all_frames(name)
        return self

    def _all_frames(self, name: str) -> torch.Tensor:
        if name not in self._decoded:
            frames = read_video_frames(self._files[name])
            # The container's stored frame count can be off by a few frames: trust the decoder.
            self.sequences = [(n, len(frames) if n == name else c) for n, c in self.sequences]
            self._decoded[name] = frames
        return self._decoded[name]

    def read(self, name: str, indices: Sequence[int]) -> torch.Tensor:
        if name not in self._files:
            raise KeyError(f"no video {name!r} in {self.path}")
        if self.cache:
            frames = self._all_frames(name)
            indices = _check_indices(name, indices, len(frames))
            return frames[indices]
        indices = _check_indices(name, indices, self.num_frames(name))
        first = min(indices)
        frames = read_video_frames(self._files[name], start=first, count=max(indices) - first + 1)
        return frames[[i - first for i in indices]]


class VimeoSeptupletSource(FrameSource):
    """Vimeo-90K septuplets: ``ROOT/sequences/00001/0001/im1.png .. im7.png``.

    ``list_file`` (e.g. ``sep_trainlist.txt`` or ``sep_testlist.txt``, relative to ROOT or a
    path) names one clip per line (``00001/0001``); each clip is a sequence of 7 frames.
    """

    layout = "ROOT/sequences/<00001>/<0001>/im1.png..im7.png with ROOT/sep_trainlist.txt"
    frames_per_clip = 7

    def __init__(
        self, root: str | os.PathLike, list_file: str | os.PathLike = "sep_trainlist.txt"
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataNotFoundError(
                f"Vimeo-90K folder not found: {self.root} (expected {self.layout})"
            )
        list_path = Path(list_file)
        if not list_path.is_absolute():
            list_path = self.root / list_path
        if not list_path.is_file():
            raise DataNotFoundError(
                f"Vimeo-90K list file not found: {list_path} (expected {self.layout})"
            )
        names = [line.strip() for line in list_path.read_text().splitlines() if line.strip()]
        if not names:
            raise DataError(f"Vimeo-90K list file {list_path} names no clips")
        first = self.root / "sequences" / names[0]
        if not (first / "im1.png").is_file():
            raise DataNotFoundError(
                f"Vimeo-90K clip {names[0]!r} from {list_path.name} not found at {first} "
                f"(expected {self.layout})"
            )
        self.list_path = list_path
        self.sequences = [(name, self.frames_per_clip) for name in names]

    def read(self, name: str, indices: Sequence[int]) -> torch.Tensor:
        indices = _check_indices(name, indices, self.frames_per_clip)
        folder = self.root / "sequences" / name
        return torch.stack([read_image(folder / f"im{i + 1}.png") for i in indices])


class AdobeGoProSource(FrameFolderSource):
    """Adobe240 / GoPro frame folders: ``ROOT/<seq>/*.png|jpg`` or ``ROOT/<split>/<seq>/...``.

    With ``split`` (e.g. ``"train"`` or ``"test"``) only ``ROOT/<split>`` is used; without it,
    every sequence under ROOT is (names then include the split folder, ``test/GOPR0384_11_00``).
    """

    layout = "ROOT/<sequence>/*.png|jpg or ROOT/<train|test>/<sequence>/*.png|jpg"

    def __init__(self, root: str | os.PathLike, split: str | None = None) -> None:
        root = Path(root)
        if split is not None:
            if not root.exists():
                raise DataNotFoundError(
                    f"Adobe240/GoPro folder not found: {root} (expected layout {self.layout})"
                )
            if not (root / split).is_dir():
                raise DataNotFoundError(
                    f"split folder {split!r} not found in {root} (expected layout {self.layout})"
                )
            root = root / split
        super().__init__(root)
        self.split = split
