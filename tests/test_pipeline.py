"""stno-infer's reader and writer threads: order, count, errors, with a slow fake network."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from stno.data import write_png_frames
from stno.inference import BackgroundSink, prefetch, upscale_video


def test_prefetch_keeps_order_and_reraises_the_readers_error():
    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))

    def failing():
        yield 1
        raise ValueError("frame 2 is corrupt")

    got = []
    with pytest.raises(ValueError, match="frame 2 is corrupt"):
        for item in prefetch(failing(), depth=2):
            got.append(item)
    assert got == [1]


class ListSink:
    def __init__(self, fail_at: int | None = None):
        self.items, self.closed, self.aborted, self.fail_at = [], False, False, fail_at

    def write(self, frames):
        time.sleep(0.002)  # slower than the producer: the queue fills up
        if self.fail_at is not None and len(self.items) == self.fail_at:
            raise OSError("disk full")
        self.items.append(frames)

    def close(self):
        self.closed = True

    def abort(self):
        self.aborted = True


def test_background_sink_writes_everything_in_order():
    sink = ListSink()
    writer = BackgroundSink(sink, depth=2)
    for index in range(50):
        writer.write(index)
    writer.close()
    assert sink.items == list(range(50)) and sink.closed


def test_background_sink_reports_the_writers_error():
    sink = ListSink(fail_at=3)
    writer = BackgroundSink(sink, depth=2)
    with pytest.raises(OSError, match="disk full"):
        for index in range(50):
            writer.write(index)
        writer.close()
    writer.abort()
    assert sink.items == [0, 1, 2] and sink.aborted and not sink.closed


class SlowIndexNet(nn.Module):
    """Output frame k of a window = the mean colour of its nearest input, after a delay."""

    def forward(self, frames, times, out_size, max_queries=None):
        time.sleep(0.05)
        b, t = frames.shape[:2]
        out = []
        for i in range(t):
            out.append(frames[:, i].mean(dim=(-2, -1), keepdim=True))
            if i < t - 1:
                out += [frames[:, i].mean(dim=(-2, -1), keepdim=True)] * len(times)
        stacked = torch.stack(out, dim=1)
        return stacked.expand(-1, -1, -1, *out_size).contiguous()


def test_threaded_inference_keeps_frame_order_and_count(tmp_path):
    count = 17  # frame i has grey level 10 * i
    frames = torch.stack([torch.full((3, 8, 10), 10.0 * i / 255) for i in range(count)])
    write_png_frames(frames, tmp_path / "in")
    summary = upscale_video(
        SlowIndexNet(),
        tmp_path / "in",
        tmp_path / "out",
        space_scale=2,
        time_scale=3,
        window=4,
        context=1,
        progress=False,
    )
    written = sorted((tmp_path / "out").iterdir())
    assert summary["output_frames"] == len(written) == (count - 1) * 3 + 1
    levels = [int(np.array(Image.open(p))[0, 0, 0]) for p in written]
    assert levels == [10 * (k // 3) for k in range((count - 1) * 3 + 1)]
