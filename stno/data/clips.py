"""Clip datasets for training and validation: HR windows from a source, LR made by MATLAB bicubic.

A batch (after ``collate_fn``) is a dict:

- ``lr``: (B, T_in, 3, h, w) float in [0, 1], made from the HR input frames by ``imresize``;
- ``hr``: (B, T_out, 3, H, W) float in [0, 1], ``T_out = T_in + (T_in - 1) * len(times)``,
  in time order (input 0, its intermediate frames, input 1, ...);
- ``times``: (len(times),) float tensor, shared by the batch, strictly increasing in (0, 1);
- ``scale``: float, the batch's space scale ``H / h``.

Two sampling modes:

- ``FixedScaleClipDataset``: windows of ``2 * num_inputs - 1`` frames, the even ones are the LR
  inputs, every frame is a target, ``times = [0.5]`` (Vimeo-90K septuplets: 4 -> 7 at x4).
- ``ContinuousClipDataset``: windows of ``window`` frames from high-frame-rate video, frames 0
  and ``window - 1`` are the inputs, the targets are intermediate frames at ``t = i / (window-1)``.
  The space scale and the timestamps are drawn once per batch by its ``collate_fn``
  (a ``ContinuousCollate``, :mod:`stno.data.collate`), so one batch keeps one shape.

Both are subclasses of ``WindowDataset``: the windows of a source, each read as an HR clip, cropped and
augmented; they differ in the window length and in what they make of a window.

Randomness (crops, flips, rotations, reversal, scales, timestamps): in training, each sample's
draws come from the seed its index carries (``stno.data.sampling.SeededIndex``, a function of
seed, epoch, rank and index), so a resumed run draws what an uninterrupted one would, with any
number of workers. Indexed with plain ints, a ``torch.Generator`` per DataLoader worker is used,
seeded from the worker's seed, or from ``seed`` and the DDP rank without workers
(``stno.data.sampling.WorkerGenerator``): runs are reproducible.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from stno.data.collate import ContinuousCollate, check_scale_range, collate_clips
from stno.data.sampling import WorkerGenerator, sample_generator
from stno.data.sources import FrameSource
from stno.data.transforms import augment_clip, downscale, lr_size_for, random_crop
from stno.errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = ["ContinuousClipDataset", "FixedScaleClipDataset", "WindowDataset"]


def _windows(
    source: FrameSource, length: int, stride: int, per_sequence: int | None = None
) -> list[tuple[str, int]]:
    """All (sequence name, first frame) windows of ``length`` frames, every ``stride`` frames;
    at most ``per_sequence`` of a sequence (evenly spread), so long videos do not dominate.

    Sequences shorter than a window are skipped when others remain (shots of a video split at
    its scene cuts); if none is long enough, that is an error.
    """
    if stride < 1:
        raise ConfigError(f"stride must be >= 1, got {stride}")
    if per_sequence is not None and per_sequence < 1:
        raise ConfigError(f"max_windows_per_sequence must be >= 1 or null, got {per_sequence}")
    windows = []
    for name, count in source.sequences:
        starts = list(range(0, count - length + 1, stride))
        if per_sequence is not None and len(starts) > per_sequence:
            step = len(starts) / per_sequence
            starts = [starts[int(i * step)] for i in range(per_sequence)]
        windows.extend((name, start) for start in starts)
    if not windows:
        name, count = max(source.sequences, key=lambda item: item[1])
        described = source.describe(name) if hasattr(source, "describe") else None
        others = " (the longest of its sequences)" if len(source.sequences) > 1 else ""
        raise DataError(
            f"{described or f'sequence {name!r} has {count} frames'}{others} but a clip needs "
            f"{length} consecutive frames (use longer sequences or a smaller window)"
        )
    dropped = getattr(source, "windows_dropped", None)
    if dropped is not None:
        lost, whole = dropped(length)
        log.info(
            "scene cuts: %d of %d windows (at stride 1) span a cut and are left out", lost, whole
        )
    return windows


def _check_frame_size(source: FrameSource, size: int, why: str) -> None:
    name = source.sequences[0][0]
    height, width = source.read(name, [0]).shape[-2:]
    if height < size or width < size:
        raise DataError(
            f"frames of {name!r} are {height}x{width}, smaller than the HR crop {size} ({why}); "
            "use a smaller lr_patch or scale"
        )


class WindowDataset(Dataset):
    """The windows of ``window`` consecutive frames of a source, each read as an HR clip.

    Shared by the clip datasets: the window listing (``windows``, every ``stride`` frames, at
    most ``max_windows_per_sequence`` of a sequence), the length, and ``read_window`` (frames in
    [0, 1], cropped to ``hr_patch`` and augmented when ``augment``: at random, from the sample's
    seed, else centred). Subclasses make an item of a window in ``make_item``.

    Args:
        stride: frames between window starts (default 1 when augmenting, else ``window``).
        seed: generator seed without DataLoader workers (default ``torch.initial_seed()``).
        patch_reason: how ``hr_patch`` was found, for the error when frames are smaller.
    """

    def __init__(
        self,
        source: FrameSource,
        window: int,
        hr_patch: int | None,
        augment: bool,
        stride: int | None,
        seed: int | None,
        patch_reason: str,
        max_windows_per_sequence: int | None = None,
    ) -> None:
        self.source = source
        self.window = window
        self.hr_patch = hr_patch
        self.augment = augment
        self.stride = stride or (1 if augment else window)
        self.windows = _windows(source, window, self.stride, max_windows_per_sequence)
        if hr_patch is not None:
            _check_frame_size(source, hr_patch, patch_reason)
        self._generator = WorkerGenerator(seed)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict:
        return self.make_item(index, *self.read_window(index))

    def make_item(self, index: int, name: str, start: int, hr: torch.Tensor) -> dict:
        raise NotImplementedError

    def read_window(self, index: int) -> tuple[str, int, torch.Tensor]:
        """(name, start, HR window (window, 3, H, W) in [0, 1]), randomly cropped and augmented
        when ``augment``."""
        name, start = self.windows[index]
        frames = self.source.read(name, range(start, start + self.window))
        generator = (sample_generator(index) or self._generator.get()) if self.augment else None
        if self.hr_patch is not None:
            frames = random_crop(frames, self.hr_patch, self.hr_patch, generator)
        hr = frames.float() / 255.0
        if generator is not None:
            hr, _ = augment_clip(hr, generator)
        return name, start, hr


class FixedScaleClipDataset(WindowDataset):
    """Fixed-scale clips: ``num_inputs`` LR frames in, ``2 * num_inputs - 1`` HR frames out.

    Args:
        source: a frame source (e.g. ``VimeoSeptupletSource``, ``FrameFolderSource``).
        num_inputs: LR input frames per clip (4 -> windows of 7 HR frames).
        scale: space scale (>= 1; 4 for the standard x4).
        lr_patch: LR crop size (HR crop ``round(lr_patch * scale)``), or None for whole frames
            (HR cropped to a multiple of the scale).
        augment: random crop position, flips, rotation, time reversal (else centre crop).
        stride: frames between the starts of consecutive windows (default 1 when augmenting,
            else the window length: no overlap).
        quantize_lr: round LR to 8-bit levels, as MATLAB-made LR PNGs are.
        seed: generator seed without DataLoader workers (default ``torch.initial_seed()``).

    Items are complete samples (``lr`` (T_in, 3, h, w), ``hr`` (T_out, 3, H, W), ``times``,
    ``scale``, ``name``, ``start``): batch them with ``collate_fn`` (``collate_clips``).
    """

    def __init__(
        self,
        source: FrameSource,
        num_inputs: int = 4,
        scale: float = 4.0,
        lr_patch: int | None = 32,
        augment: bool = True,
        stride: int | None = None,
        quantize_lr: bool = True,
        seed: int | None = None,
    ) -> None:
        if num_inputs < 2:
            raise ConfigError(f"num_inputs must be >= 2, got {num_inputs}")
        if not scale >= 1:
            raise DataError(f"space scale must be >= 1 (HR at least as large as LR), got {scale}")
        self.num_inputs = num_inputs
        self.scale = float(scale)
        self.lr_patch = lr_patch
        self.quantize_lr = quantize_lr
        self.collate_fn = collate_clips
        super().__init__(
            source,
            window=2 * num_inputs - 1,
            hr_patch=None if lr_patch is None else round(lr_patch * self.scale),
            augment=augment,
            stride=stride,
            seed=seed,
            patch_reason=f"lr_patch {lr_patch} x scale {scale:g}",
        )

    def make_item(self, index: int, name: str, start: int, hr: torch.Tensor) -> dict:
        # a reversed clip keeps times = [0.5]
        lr_size = lr_size_for(hr.shape[-2:], self.scale)
        hr = hr[..., : round(lr_size[0] * self.scale), : round(lr_size[1] * self.scale)]
        lr = downscale(hr[::2], lr_size, self.quantize_lr)
        return {
            "lr": lr,
            "hr": hr,
            "times": torch.tensor([0.5]),
            "scale": self.scale,
            "name": name,
            "start": start,
        }


class ContinuousClipDataset(WindowDataset):
    """Continuous clips: 2 LR inputs (frames 0 and window-1), targets at t = i / (window - 1).

    Items are HR windows (``hr_window`` (window, 3, P, P) float [0, 1], cropped at the largest
    size a batch may need, ``P = ceil(lr_patch * max scale)``, and augmented); the batch's
    ``collate_fn`` (a ``ContinuousCollate``) draws one space scale ``s`` in ``scale_range`` and
    ``num_times`` timestamps from ``{1, .., window-2} / (window-1)``, crops HR to
    ``round(lr_patch * s)`` and makes the LR inputs (``lr_patch`` square) with ``imresize``.

    Args:
        source: a frame source with high-frame-rate sequences (Adobe240, GoPro, video).
        window: frames per window (9: x8 in time).
        scale_range: (min, max) space scale, 1 <= min <= max.
        num_times: timestamps per batch (1 .. window-2).
        times: fixed timestamps instead of drawn ones (each a multiple of 1 / (window-1)).
        lr_patch: LR crop size, or None for whole frames (HR cropped to a multiple of the scale).
        augment: random crops, flips, rotation, reversal and per-batch random draws; without it
            crops are centred and each batch's draws depend only on its clips (same every epoch).
        stride: frames between window starts (default 1 when augmenting, else ``window``).
        quantize_lr: round LR to 8-bit levels.
        seed: generator seed without DataLoader workers (default ``torch.initial_seed()``).
        spans: input spacings to draw from per batch (e.g. ``[2, 4]``: inputs 2 or 4 frames apart,
            x2 or x4 in time of the source video), placed at a random offset in the window;
            None: the inputs are the first and last frames of the window.
        max_windows_per_sequence: keep at most this many windows of a sequence, evenly spread
            (balances long static videos against short ones); None: all.
    """

    def __init__(
        self,
        source: FrameSource,
        window: int = 9,
        scale_range: Sequence[float] = (1.0, 4.0),
        num_times: int = 1,
        times: Sequence[float] | None = None,
        lr_patch: int | None = 32,
        augment: bool = True,
        stride: int | None = None,
        quantize_lr: bool = True,
        seed: int | None = None,
        spans: Sequence[int] | None = None,
        max_windows_per_sequence: int | None = None,
    ) -> None:
        if window < 3:
            raise ConfigError(
                f"window must be >= 3 (two inputs and a target between), got {window}"
            )
        self.scale_range = check_scale_range(scale_range)
        if times is None and not 1 <= num_times <= window - 2:
            raise ConfigError(
                f"num_times must be in 1..{window - 2} for window {window}, got {num_times}"
            )
        max_scale = self.scale_range[1]
        super().__init__(
            source,
            window=window,
            hr_patch=None if lr_patch is None else math.ceil(lr_patch * max_scale - 1e-9),
            augment=augment,
            stride=stride,
            seed=seed,
            patch_reason=f"lr_patch {lr_patch} x max scale {max_scale:g}",
            max_windows_per_sequence=max_windows_per_sequence,
        )
        self.lr_patch = lr_patch
        self.collate_fn = ContinuousCollate(
            window=window,
            scale_range=self.scale_range,
            num_times=num_times,
            times=times,
            lr_patch=lr_patch,
            random_draws=augment,
            quantize_lr=quantize_lr,
            seed=seed,
            spans=spans,
        )

    def make_item(self, index: int, name: str, start: int, hr: torch.Tensor) -> dict:
        # reversal maps the grid t = i/(window-1) onto itself
        item = {"hr_window": hr, "name": name, "start": start}
        if getattr(index, "seed", None) is not None:  # the batch's draws follow its samples' seeds
            item["seed"] = index.seed
        return item
