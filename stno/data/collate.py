"""Samples to batches: ``collate_clips`` stacks complete samples; ``ContinuousCollate`` draws one
space scale and one set of timestamps per batch of ``ContinuousClipDataset`` windows (so a batch
keeps one shape) and makes their LR inputs."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import torch

from stno.data.sampling import WorkerGenerator, draw_seed
from stno.data.transforms import downscale, make_lr, randint, random_crop, uniform
from stno.errors import ConfigError, DataError

__all__ = ["ContinuousCollate", "check_scale_range", "collate_clips"]


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


def check_scale_range(scale_range: Sequence[float]) -> tuple[float, float]:
    low, high = (float(v) for v in scale_range)
    if not 1.0 <= low <= high:
        raise DataError(
            f"scale range ({low:g}, {high:g}) is not supported: need 1 <= min <= max "
            "(LR is made by downscaling HR)"
        )
    return low, high


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
        self.scale_range = check_scale_range(scale_range)
        self.num_times = num_times
        self.fixed_indices = None if times is None else self._indices_of(times)
        self.lr_patch = lr_patch
        self.random_draws = random_draws
        self.quantize_lr = quantize_lr
        self.seed = seed
        self._generator = WorkerGenerator(seed, offset=1)

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
        scale = low if low == high else uniform(generator, low, high)
        span, first = self.window - 1, 0
        if self.spans is not None:  # inputs `span` frames apart somewhere in the window
            span = self.spans[randint(generator, len(self.spans))]
            first = randint(generator, self.window - span)
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
                hr = random_crop(hr, hr_size, hr_size, generator if self.random_draws else None)
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
