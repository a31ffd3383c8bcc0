"""Benchmark protocols as plain python: which frames go in, which come out, which are scored.

A protocol cuts each sequence into :class:`Window` s. A window reads the HR frames
``first .. last``, makes LR inputs from the frames at ``inputs``, asks the network for every
frame between its first and last input, and scores the frames in ``scored``.

Protocols (see ``docs``/DESIGN section 2):

- :func:`vid4_windows` (Vid4, SPMCS, REDS, any frame folder or video): inputs every
  ``time_scale``-th frame; ``mode="window"`` uses windows of ``num_inputs`` inputs with step
  ``(num_inputs - 1) * time_scale`` frames (Zooming Slow-Mo: 4 inputs -> 7 outputs, step 6),
  neighbouring windows share their boundary frame, which is scored once (in the earlier
  window); ``mode="sequence"`` feeds all inputs of the sequence at once. Frames after the last
  regular input (a sequence whose length does not fit, e.g. an even-length sequence at x2
  time) come from one final window shifted to end at the last frame, which scores only the
  frames not scored yet. Sequences shorter than one window use one shorter window.
  Every frame of the sequence is scored exactly once.
- :func:`gopro_windows` (GoPro, Adobe240): windows of ``time_scale + 1`` frames
  (9 at x8), inputs the first and last frame of the window, consecutive windows share their
  boundary frame (stride ``time_scale``); ``selection="center"`` scores window frames
  1, 5, 9 (0-based 0, 4, 8), ``"average"`` all 9. Scores are per window, so a boundary frame
  scored by two windows counts twice, as in the field.
- :func:`vimeo_windows` (Vimeo-90K septuplets): inputs 1, 3, 5, 7 (0-based 0, 2, 4, 6),
  all seven frames scored.

Spatial sizes (``stno.data.make_lr``): the HR frame is cropped at the bottom/right to
``round(h * scale), round(w * scale)`` where ``h, w = floor(H / scale), floor(W / scale)``;
for an integer scale that is the usual crop to a multiple of the scale. The LR frame is the
MATLAB bicubic resize of the cropped HR frame to ``(h, w)``, quantised to 8 bits (as the
field's LR PNG files).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from stno.errors import ConfigError

__all__ = [
    "Window",
    "vid4_windows",
    "gopro_windows",
    "vimeo_windows",
    "timestamps",
    "check_space_scale",
]


@dataclass(frozen=True)
class Window:
    """One network call of a protocol.

    inputs: frame indices (in the sequence) of the LR inputs, increasing, evenly spaced by
        ``len(times) + 1``; the network outputs every frame from ``inputs[0]`` to ``inputs[-1]``.
    scored: frame indices (in the sequence) whose outputs are scored.
    """

    inputs: tuple[int, ...]
    scored: tuple[int, ...]

    @property
    def first(self) -> int:
        return self.inputs[0]

    @property
    def last(self) -> int:
        return self.inputs[-1]

    @property
    def outputs(self) -> tuple[int, ...]:
        """Frame indices of the network's outputs, in its output order."""
        return tuple(range(self.first, self.last + 1))


def timestamps(time_scale: int | None = None, times: Sequence[float] | None = None) -> list[float]:
    """The timestamps in (0, 1) between two inputs: ``i / time_scale`` or the explicit ``times``.

    Explicit ``times`` must be evenly spaced ``1/k .. (k-1)/k`` for the frame-based protocols
    (ground truth exists only at frames); other lists are for inference only.
    """
    if times is not None and len(times) > 0:
        values = [float(t) for t in times]
        if any(not 0.0 < t < 1.0 for t in values) or any(
            b <= a for a, b in zip(values, values[1:], strict=False)
        ):
            raise ConfigError(
                f"times must be strictly increasing values in (0, 1), got {list(times)}"
            )
        return values
    if time_scale is None:
        raise ConfigError("give time_scale (an integer >= 2) or times")
    if isinstance(time_scale, float) and not time_scale.is_integer():
        raise ConfigError(f"time_scale must be an integer >= 1, got {time_scale}")
    time_scale = int(time_scale)
    if time_scale < 1:
        raise ConfigError(f"time_scale must be an integer >= 1, got {time_scale}")
    return [i / time_scale for i in range(1, time_scale)]


def frame_step(times: Sequence[float]) -> int:
    """Frames between two inputs when ``times`` are the frame-aligned ``i / k`` (returns k).

    Raises ValueError for timestamps that do not fall on frames.
    """
    step = len(times) + 1
    expected = [i / step for i in range(1, step)]
    if any(abs(a - b) > 1e-6 for a, b in zip(times, expected, strict=True)):
        raise ConfigError(
            f"times {list(times)} do not fall on ground-truth frames; benchmarks need "
            f"times=[1/k, ..., (k-1)/k] (or time_scale=k)"
        )
    return step


def check_space_scale(scale: float) -> float:
    scale = float(scale)
    if not math.isfinite(scale) or scale < 1.0:
        raise ConfigError(f"space_scale must be a number >= 1 (e.g. 4, 2.5, 8), got {scale}")
    return scale


def _regular_windows(num_frames: int, step: int, num_inputs: int) -> list[tuple[int, ...]]:
    span = (num_inputs - 1) * step
    windows = []
    start = 0
    while start + span <= num_frames - 1:
        windows.append(tuple(range(start, start + span + 1, step)))
        start += span
    return windows


def vid4_windows(
    num_frames: int, num_inputs: int = 4, mode: str = "window", time_scale: int = 2
) -> list[Window]:
    """Windows of the Vid4-style protocol (see the module docstring); every frame scored once.

    Args:
        num_frames: frames in the sequence (ground truth), >= time_scale + 1.
        num_inputs: LR inputs per window in ``"window"`` mode (4 as Zooming Slow-Mo), >= 2.
        mode: ``"window"`` or ``"sequence"`` (all inputs in one call, as the STNO code).
        time_scale: frames from one input to the next (2: inputs are the even-index frames).
    """
    if mode not in ("window", "sequence"):
        raise ConfigError(f"mode must be 'window' or 'sequence', got {mode!r}")
    step = int(time_scale)
    if step < 1:
        raise ConfigError(f"time_scale must be >= 1, got {time_scale}")
    if num_inputs < 2:
        raise ConfigError(f"num_inputs must be >= 2, got {num_inputs}")
    if num_frames < step + 1:
        raise ConfigError(
            f"a sequence of {num_frames} frames is too short for time scale x{step} "
            f"(needs at least {step + 1} frames: two inputs and the frames between them)"
        )
    max_inputs = (num_frames - 1) // step + 1
    inputs_per_window = max_inputs if mode == "sequence" else min(num_inputs, max_inputs)
    regular = _regular_windows(num_frames, step, inputs_per_window)
    windows = []
    scored_until = -1  # last frame index scored so far
    for inputs in regular:
        scored = tuple(range(max(inputs[0], scored_until + 1), inputs[-1] + 1))
        windows.append(Window(inputs, scored))
        scored_until = inputs[-1]
    if scored_until < num_frames - 1:
        # the tail after the last regular input: one window shifted to end at the last frame
        last = num_frames - 1
        span = (inputs_per_window - 1) * step
        inputs = tuple(range(last - span, last + 1, step))
        windows.append(Window(inputs, tuple(range(scored_until + 1, last + 1))))
    return windows


def gopro_windows(
    num_frames: int, time_scale: int = 8, selection: str = "average", stride: int | None = None
) -> list[Window]:
    """Windows of the GoPro / Adobe240 protocol (see the module docstring).

    Args:
        num_frames: frames in the sequence.
        time_scale: frames from the first to the last frame of a window (8: 9-frame windows).
        selection: ``"center"`` (first, middle, last frame of each window) or ``"average"`` (all).
        stride: frames from one window start to the next (default ``time_scale``: windows share
            their boundary frames and cover the sequence).
    """
    if selection not in ("center", "average"):
        raise ConfigError(f"selection must be 'center' or 'average', got {selection!r}")
    span = int(time_scale)
    if span < 2:
        raise ConfigError(f"time_scale must be >= 2 for GoPro/Adobe240 windows, got {time_scale}")
    stride = span if stride is None else int(stride)
    if stride < 1:
        raise ConfigError(f"stride must be >= 1, got {stride}")
    if num_frames < span + 1:
        raise ConfigError(
            f"a sequence of {num_frames} frames is shorter than one {span + 1}-frame window"
        )
    windows = []
    for start in range(0, num_frames - span, stride):
        frames = range(start, start + span + 1)
        if selection == "center":
            scored = (
                (start, start + span // 2, start + span) if span % 2 == 0 else (start, start + span)
            )
        else:
            scored = tuple(frames)
        windows.append(Window((start, start + span), tuple(scored)))
    return windows


def vimeo_windows(num_frames: int = 7) -> list[Window]:
    """Vimeo-90K septuplet: inputs frames 1, 3, 5, 7 (0-based 0, 2, 4, 6), all 7 scored."""
    if num_frames != 7:
        raise ConfigError(f"a Vimeo-90K septuplet has 7 frames, got {num_frames}")
    return [Window((0, 2, 4, 6), tuple(range(7)))]
