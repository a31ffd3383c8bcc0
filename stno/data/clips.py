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
  (a ``ContinuousCollate``), so one batch keeps one shape.

Randomness (crops, flips, rotations, reversal, scales, timestamps): in training, each sample's
draws come from the seed its index carries (``stno.data.sampling.SeededIndex``, a function of
seed, epoch, rank and index), so a resumed run draws what an uninterrupted one would, with any
number of workers. Indexed with plain ints, a ``torch.Generator`` per DataLoader worker is used,
seeded from the worker's seed, or from ``seed`` without workers: runs are reproducible.
"""

from __future__ import annotations

import logging
import math
import random
import zlib
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from stno.data.sampling import draw_seed, sample_generator
from stno.data.sources import FrameSource
from stno.errors import ConfigError
from stno.io.video import DataError
from stno.ops.imresize import imresize

log = logging.getLogger(__name__)

__all__ = [
    "FixedScaleClipDataset",
    "ContinuousClipDataset",
    "ContinuousCollate",
    "collate_clips",
    "make_lr",
    "downscale",
    "lr_size_for",
    "augment_clip",
    "seed_worker",
]


class _WorkerGenerator:
    """A torch.Generator re-seeded whenever it finds itself in a new DataLoader worker."""

    def __init__(self, seed: int | None, offset: int = 0) -> None:
        self.seed = seed
        self.offset = offset  # decorrelates two generators living in the same worker
        self._generator: torch.Generator | None = None
        self._seeded_with: int | None = None

    def get(self) -> torch.Generator:
        info = get_worker_info()
        if info is not None:
            seed = info.seed
        elif self.seed is not None:
            seed = self.seed
        else:
            seed = torch.initial_seed()
        if self._generator is None or self._seeded_with != seed:
            self._generator = torch.Generator().manual_seed((seed + self.offset) % (2**63))
            self._seeded_with = seed
        return self._generator

    def __getstate__(self) -> dict:
        # A generator is not picklable (spawned workers); each worker makes its own.
        return {"seed": self.seed, "offset": self.offset, "_generator": None, "_seeded_with": None}


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed Python's and NumPy's RNGs from the worker's torch seed."""
    seed = torch.initial_seed() % (2**32)
    random.seed(seed)
    np.random.seed(seed)


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator, dtype=torch.float64).item()


def _randint(generator: torch.Generator, high: int) -> int:
    """Uniform int in [0, high)."""
    return int(torch.randint(high, (), generator=generator).item())


def lr_size_for(hr_size: Sequence[int], scale: float) -> tuple[int, int]:
    """LR (h, w) for HR (H, W) at ``scale``: ``floor(H / scale)``, at least 1."""
    if not scale >= 1:
        raise DataError(f"space scale must be >= 1 (HR at least as large as LR), got {scale}")
    lr_h, lr_w = (math.floor(n / scale + 1e-9) for n in hr_size)
    if lr_h < 1 or lr_w < 1:
        raise DataError(f"frames of {tuple(hr_size)} are too small for space scale {scale:g}")
    return lr_h, lr_w


def make_lr(
    hr: torch.Tensor, scale: float, quantize: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """LR frames from HR frames (..., 3, H, W) in [0, 1] by MATLAB bicubic at ``1 / scale``.

    HR is first cropped (bottom/right) to ``round(lr_size * scale)`` with
    ``lr_size = floor(size / scale)`` (a multiple of an integer scale). LR is clamped to [0, 1]
    and, with ``quantize``, rounded to 8-bit levels as LR images saved by MATLAB are.
    Returns ``(hr, lr)``.
    """
    lr_h, lr_w = lr_size_for(hr.shape[-2:], scale)
    hr = hr[..., : min(hr.shape[-2], round(lr_h * scale)), : min(hr.shape[-1], round(lr_w * scale))]
    return hr, downscale(hr, (lr_h, lr_w), quantize)


def downscale(hr: torch.Tensor, lr_size: Sequence[int], quantize: bool = True) -> torch.Tensor:
    """MATLAB-bicubic downscaling of (..., 3, H, W) in [0, 1] to ``lr_size``, clamped (and 8-bit)."""
    lr = imresize(hr, out_size=tuple(lr_size)).clamp(0, 1)
    return torch.round(lr * 255) / 255 if quantize else lr


def augment_clip(
    frames: torch.Tensor, generator: torch.Generator, reverse: bool = True
) -> tuple[torch.Tensor, bool]:
    """Same random flips / 90-degree rotation (square frames only) / time reversal for every frame.

    Args:
        frames: (T, C, H, W) clip.
    Returns:
        The augmented clip and whether time was reversed.
    """
    flips = torch.rand(4, generator=generator)
    if flips[0] < 0.5:
        frames = frames.flip(-1)
    if flips[1] < 0.5:
        frames = frames.flip(-2)
    # A transpose combined with the flips gives all 8 rotations/reflections of a square.
    if frames.shape[-1] == frames.shape[-2] and flips[2] < 0.5:
        frames = frames.transpose(-1, -2)
    reversed_time = bool(reverse and flips[3] < 0.5)
    if reversed_time:
        frames = frames.flip(0)
    return frames.contiguous(), reversed_time


def _random_crop(
    frames: torch.Tensor, height: int, width: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Crop (..., H, W) to (height, width) at a random place, or the centre without a generator."""
    full_h, full_w = frames.shape[-2:]
    if generator is None:
        top, left = (full_h - height) // 2, (full_w - width) // 2
    else:
        top, left = (
            _randint(generator, full_h - height + 1),
            _randint(generator, full_w - width + 1),
        )
    return frames[..., top : top + height, left : left + width]


def collate_clips(samples: Sequence[dict]) -> dict:
    """Stack complete samples (``lr``, ``hr``, ``times``, ``scale``) into a batch.

    All samples must share ``times`` and shapes (the datasets ensure it).
    """
    times = samples[0]["times"]
    for sample in samples[1:]:
        if not torch.equal(sample["times"], times):
            raise ValueError("collate_clips: samples of one batch must share their timestamps")
    batch = {
        "lr": torch.stack([s["lr"] for s in samples]),
        "hr": torch.stack([s["hr"] for s in samples]),
        "times": times,
        "scale": float(samples[0]["scale"]),
    }
    for key in ("name", "start"):
        if key in samples[0]:
            batch[key] = [s[key] for s in samples]
    return batch


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


class FixedScaleClipDataset(Dataset):
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
        self.source = source
        self.num_inputs = num_inputs
        self.window = 2 * num_inputs - 1
        self.scale = float(scale)
        self.lr_patch = lr_patch
        self.hr_patch = None if lr_patch is None else round(lr_patch * self.scale)
        self.augment = augment
        self.quantize_lr = quantize_lr
        self.stride = stride or (1 if augment else self.window)
        self.windows = _windows(source, self.window, self.stride)
        if self.hr_patch is not None:
            _check_frame_size(source, self.hr_patch, f"lr_patch {lr_patch} x scale {scale:g}")
        self._generator = _WorkerGenerator(seed)
        self.collate_fn = collate_clips

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict:
        name, start, hr = _read_window(self, index)  # a reversed clip keeps times = [0.5]
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


def _check_frame_size(source: FrameSource, size: int, why: str) -> None:
    name = source.sequences[0][0]
    height, width = source.read(name, [0]).shape[-2:]
    if height < size or width < size:
        raise DataError(
            f"frames of {name!r} are {height}x{width}, smaller than the HR crop {size} ({why}); "
            "use a smaller lr_patch or scale"
        )


def _check_scale_range(scale_range: Sequence[float]) -> tuple[float, float]:
    low, high = (float(v) for v in scale_range)
    if not 1.0 <= low <= high:
        raise DataError(
            f"scale range ({low:g}, {high:g}) is not supported: need 1 <= min <= max "
            "(LR is made by downscaling HR)"
        )
    return low, high


class ContinuousClipDataset(Dataset):
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
        self.scale_range = _check_scale_range(scale_range)
        if times is None and not 1 <= num_times <= window - 2:
            raise ConfigError(
                f"num_times must be in 1..{window - 2} for window {window}, got {num_times}"
            )
        self.source = source
        self.window = window
        self.lr_patch = lr_patch
        self.hr_patch = (
            None if lr_patch is None else math.ceil(lr_patch * self.scale_range[1] - 1e-9)
        )
        self.augment = augment
        self.stride = stride or (1 if augment else window)
        self.windows = _windows(source, window, self.stride, max_windows_per_sequence)
        if self.hr_patch is not None:
            _check_frame_size(
                source, self.hr_patch, f"lr_patch {lr_patch} x max scale {self.scale_range[1]:g}"
            )
        self._generator = _WorkerGenerator(seed)
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

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict:
        # reversal maps the grid t = i/(window-1) onto itself
        name, start, hr = _read_window(self, index)
        item = {"hr_window": hr, "name": name, "start": start}
        if getattr(index, "seed", None) is not None:  # the batch's draws follow its samples' seeds
            item["seed"] = index.seed
        return item


class ContinuousCollate:
    """Per-batch space scale and timestamps for ``ContinuousClipDataset`` items (see there)."""

    def __init__(
        self,
        window: int = 9,
        scale_range: Sequence[float] = (1.0, 4.0),
        num_times: int = 1,
        times: Sequence[float] | None = None,
        lr_patch: int | None = 32,
        random_draws: bool = True,
        quantize_lr: bool = True,
        seed: int | None = None,
        spans: Sequence[int] | None = None,
    ) -> None:
        self.window = window
        self.spans = None if spans is None else [int(v) for v in spans]
        if self.spans is not None and (
            not self.spans or any(not 2 <= v <= window - 1 for v in self.spans)
        ):
            raise ConfigError(
                f"spans must be input spacings in 2..{window - 1} for window {window}, got {spans}"
            )
        if self.spans is not None and times is not None:
            raise ConfigError("give either spans (random input spacing) or fixed times, not both")
        self.scale_range = _check_scale_range(scale_range)
        self.num_times = num_times
        self.fixed_indices = None if times is None else self._indices_of(times)
        self.lr_patch = lr_patch
        self.random_draws = random_draws
        self.quantize_lr = quantize_lr
        self.seed = seed
        self._generator = _WorkerGenerator(seed, offset=1)

    def _indices_of(self, times: Sequence[float]) -> list[int]:
        steps = self.window - 1
        indices = []
        for t in times:
            index = round(float(t) * steps)
            if not 0 < index < steps or abs(index - float(t) * steps) > 1e-6:
                raise DataError(
                    f"timestamp {t} is not one of i/{steps} (0 < i < {steps}): no ground truth "
                    f"frame exists for it in a {self.window}-frame window"
                )
            indices.append(index)
        if sorted(set(indices)) != indices:
            raise DataError(f"timestamps must be strictly increasing, got {list(times)}")
        return indices

    def _batch_generator(self, samples: Sequence[dict]) -> torch.Generator:
        if self.random_draws:
            seeds = [s.get("seed") for s in samples]
            if None in seeds:
                return self._generator.get()
            return torch.Generator().manual_seed(draw_seed(1, *seeds))
        # Validation: the draws depend only on the batch's clips, so every epoch sees the same.
        key = "|".join(f"{s.get('name')}:{s.get('start')}" for s in samples)
        return torch.Generator().manual_seed((self.seed or 0) ^ zlib.crc32(key.encode()))

    def __call__(self, samples: Sequence[dict]) -> dict:
        generator = self._batch_generator(samples)
        low, high = self.scale_range
        scale = low if low == high else _uniform(generator, low, high)
        span, first = self.window - 1, 0
        if self.spans is not None:  # inputs `span` frames apart somewhere in the window
            span = self.spans[_randint(generator, len(self.spans))]
            first = _randint(generator, self.window - span)
        if self.fixed_indices is not None:
            indices = self.fixed_indices
        else:
            count = min(self.num_times, span - 1)
            drawn = torch.randperm(span - 1, generator=generator)[:count] + 1
            indices = sorted(drawn.tolist())
        frame_order = [first + i for i in (0, *indices, span)]
        lrs, hrs = [], []
        for sample in samples:
            hr = sample["hr_window"][frame_order]
            if self.lr_patch is not None:
                hr_size = round(self.lr_patch * scale)
                hr = _random_crop(hr, hr_size, hr_size, generator if self.random_draws else None)
                lr = downscale(hr[[0, -1]], (self.lr_patch, self.lr_patch), self.quantize_lr)
            else:
                hr, lr = make_lr(hr, scale, self.quantize_lr)
                lr = lr[[0, -1]]
            lrs.append(lr)
            hrs.append(hr)
        batch = {
            "lr": torch.stack(lrs),
            "hr": torch.stack(hrs),
            "times": torch.tensor([i / span for i in indices]),
            "scale": float(scale),
            "name": [s.get("name") for s in samples],
            "start": [s.get("start") for s in samples],
        }
        return batch


def _read_window(dataset, index: int) -> tuple[str, int, torch.Tensor]:
    """(name, start, HR window (window, 3, H, W) in [0, 1]), randomly cropped and augmented when
    ``dataset.augment``; shared by the fixed and continuous datasets."""
    name, start = dataset.windows[index]
    frames = dataset.source.read(name, range(start, start + dataset.window))
    generator = (sample_generator(index) or dataset._generator.get()) if dataset.augment else None
    if dataset.hr_patch is not None:
        frames = _random_crop(frames, dataset.hr_patch, dataset.hr_patch, generator)
    hr = frames.float() / 255.0
    if generator is not None:
        hr, _ = augment_clip(hr, generator)
    return name, start, hr
