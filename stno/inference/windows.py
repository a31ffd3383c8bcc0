"""Sliding windows over a long clip: which inputs each network call sees and which outputs it emits.

Windows and overlap: the network sees ``window`` consecutive inputs at a time so that its
bidirectional recurrent propagation has temporal context. Neighbouring windows overlap by
``2 * context`` inputs; each window *owns* the input intervals away from its edges (``context``
inputs of margin on each side, none at the start and end of the video) and emits, for every
owned interval ``[i, i + 1]``, the output frame of input ``i`` followed by its
``time_scale - 1`` in-between frames; the last window also emits the last input's frame. So
each interval is produced exactly once, in order, and the output has exactly
``(N - 1) * time_scale + 1`` frames. The last window is shifted back to end at the last input
(more left context instead of a shorter window). Defaults ``window=6, context=1``: each window
owns 3 of its 5 intervals (compute ~1.7x of a single pass), with one input of context on
each side of every owned frame.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from stno.errors import ConfigError, DataError

__all__ = ["InferenceWindow", "check_window", "plan_windows", "stream_windows"]


@dataclass(frozen=True)
class InferenceWindow:
    """Inputs ``first .. last`` (inclusive) go to the network; intervals ``own_from .. own_to - 1``
    are emitted (interval i = input i's frame and the frames between inputs i and i + 1);
    ``is_last``: also emit input ``last``'s frame (the video's final frame)."""

    first: int
    last: int
    own_from: int
    own_to: int
    is_last: bool


def check_window(window: int, context: int) -> None:
    if window < 2:
        raise ConfigError(f"window must be >= 2 input frames, got {window}")
    if context < 0 or window - 1 - 2 * context < 1:
        raise ConfigError(
            f"context={context} leaves no frames to emit in a window of {window} inputs; "
            f"need window >= 2 * context + 2"
        )


def stream_windows(
    frames: Iterator[Any], window: int = 6, context: int = 1
) -> Iterator[tuple[InferenceWindow, list[Any]]]:
    """Cut a stream of frames into overlapping windows without knowing its length in advance.

    Yields ``(InferenceWindow, frames first .. last)``; at most ``window + 1`` frames are held
    (one frame of look-ahead tells whether a window is the last). Raises DataError for
    fewer than 2 frames.
    """
    check_window(window, context)
    frames = iter(frames)
    buffer: deque = deque(maxlen=window + 1)  # (index, frame)
    next_index = 0
    exhausted = False

    def fill(upto: int) -> None:
        nonlocal next_index, exhausted
        while not exhausted and next_index <= upto:
            try:
                frame = next(frames)
            except StopIteration:
                exhausted = True
                return
            buffer.append((next_index, frame))
            next_index += 1

    own_from = 0
    while True:
        first = max(0, own_from - context)
        fill(first + window)  # one frame past the window: is there anything after it?
        if exhausted:
            count = next_index
            if count < 2:
                raise DataError(f"the input has {count} frame(s); need at least 2 frames")
            first, last, own_to, is_last = max(0, count - window), count - 1, count - 1, True
        else:
            last = first + window - 1
            own_to, is_last = last - context, False
        held = {index: frame for index, frame in buffer}
        yield (
            InferenceWindow(first, last, own_from, own_to, is_last),
            [held[i] for i in range(first, last + 1)],
        )
        if is_last:
            return
        own_from = own_to


def plan_windows(num_frames: int, window: int = 6, context: int = 1) -> list[InferenceWindow]:
    """The windows :func:`stream_windows` makes for a video of ``num_frames`` frames."""
    return [w for w, _frames in stream_windows(iter(range(num_frames)), window, context)]
