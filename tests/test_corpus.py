"""Training on many real videos: scene cuts, shots, folders of videos, input spacings."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import moving_pattern_frames
from data_helpers import write_test_video

from stno.data import (
    ContinuousClipDataset,
    FrameSource,
    ShotSource,
    VideoFileSource,
    detect_scene_cuts,
)
from stno.data.scenes import frame_differences


class ArraySource(FrameSource):
    def __init__(self, clips: dict[str, np.ndarray]):
        self.clips = {name: torch.from_numpy(a).permute(0, 3, 1, 2) for name, a in clips.items()}
        self.sequences = [(name, a.shape[0]) for name, a in self.clips.items()]

    def read(self, name, indices):
        return self.clips[name][list(indices)]


def clip_with_cuts(cuts=(12, 25), length=40, size=(48, 64)) -> np.ndarray:
    """Moving textures, a different one (other seed) after each cut."""
    bounds = [0, *cuts, length]
    shots = [
        moving_pattern_frames(stop - start, *size, seed=index)
        for index, (start, stop) in enumerate(zip(bounds, bounds[1:], strict=False))
    ]
    return np.concatenate(shots)


def test_scene_cuts_are_found_and_motion_is_not_a_cut():
    frames = torch.from_numpy(clip_with_cuts()).permute(0, 3, 1, 2)
    assert detect_scene_cuts(frames) == [12, 25]
    # the same clip without cuts: continuous motion (1 px per frame) only
    still = torch.from_numpy(moving_pattern_frames(40, 48, 64)).permute(0, 3, 1, 2)
    assert detect_scene_cuts(still) == []


@pytest.mark.parametrize("chunk", [1, 7, 16, 1000])
def test_frame_differences_by_chunks_equal_the_whole_video_at_once(chunk):
    frames = torch.from_numpy(clip_with_cuts(length=37, size=(130, 190))).permute(0, 3, 1, 2)
    # the definition: grey = channel mean, 3x3 average pooling (190 / 64 rounds to 3), then
    # the mean absolute change of consecutive grey frames
    grey = F.avg_pool2d(frames.float().mean(1, keepdim=True), 3, ceil_mode=True)
    want = (grey[1:] - grey[:-1]).abs().mean(dim=(1, 2, 3))
    got = frame_differences(frames, chunk=chunk)
    assert got.shape == (36,)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_shots_become_sequences_and_windows_never_span_a_cut():
    source = ShotSource(ArraySource({"a": clip_with_cuts(), "b": moving_pattern_frames(9, 48, 64)}))
    assert source.cuts == {"a": [12, 25], "b": []}
    assert source.sequences == [("a@0", 12), ("a@12", 13), ("a@25", 15), ("b", 9)]
    torch.testing.assert_close(source.read("a@12", [0, 1]), source.source.read("a", [12, 13]))
    dataset = ContinuousClipDataset(source, window=5, lr_patch=8, scale_range=(2, 2))
    whole_windows = (40 - 5 + 1) + (9 - 5 + 1)
    assert len(dataset) == whole_windows - 8  # 4 windows cross each of the two cuts
    assert source.windows_dropped(5) == (8, whole_windows)


def test_long_sequences_are_capped_evenly():
    source = ArraySource(
        {"long": moving_pattern_frames(60, 32, 32), "short": moving_pattern_frames(8, 32, 32)}
    )
    dataset = ContinuousClipDataset(source, window=3, lr_patch=8, max_windows_per_sequence=10)
    starts = [start for name, start in dataset.windows if name == "long"]
    assert len(starts) == 10 and starts[0] == 0 and starts[-1] > 50
    assert [start for name, start in dataset.windows if name == "short"] == list(range(6))


def test_video_folder_is_searched_recursively_and_exclusions_hold(tmp_path):
    frames = torch.from_numpy(moving_pattern_frames(6, 32, 48)).permute(0, 3, 1, 2)
    write_test_video(tmp_path / "a.mp4", frames)
    (tmp_path / "sub").mkdir()
    write_test_video(tmp_path / "sub" / "b.mp4", frames)
    write_test_video(tmp_path / "val.mp4", frames)
    source = VideoFileSource(tmp_path, exclude=["val.mp4"])
    assert [name for name, _count in source.sequences] == ["a.mp4", "sub/b.mp4"]
    both = VideoFileSource([tmp_path / "sub", tmp_path / "val.mp4"])
    assert [name for name, _count in both.sequences] == ["b.mp4", "val.mp4"]


def test_input_spacings_are_drawn_per_batch():
    source = ArraySource({"a": moving_pattern_frames(30, 40, 40)})
    dataset = ContinuousClipDataset(
        source, window=5, spans=[2, 4], num_times=3, lr_patch=8, scale_range=(2, 2), seed=0
    )
    seen = {}
    for index in range(12):
        batch = dataset.collate_fn([dataset[index], dataset[index + 1]])
        times = tuple(round(t, 3) for t in batch["times"].tolist())
        seen[times] = batch["hr"].shape[1]
    # span 2: one target at t = 1/2; span 4: three at 1/4, 1/2, 3/4 (2 inputs + targets)
    assert seen == {(0.5,): 3, (0.25, 0.5, 0.75): 5}


def test_sampled_training_pixels_are_distinct_and_reproducible():
    from stno.lit import STNOLitModule

    net = {
        "_target_": "stno.nn.STNO",
        "channels": 8,
        "num_blocks": 1,
        "pyramid_channels": [8, 8, 8],
        "attn_dim": 8,
        "heads": 2,
        "decoder_widths": [8, 8, 8],
        "residual_channels": 3,
        "decoder_hidden": 16,
    }
    module = STNOLitModule(net=net, train_queries=50, seed=3)
    hr = torch.rand(2, 3, 3, 12, 20)
    pixels = module._draw_pixels(hr)
    assert pixels.shape == (2, 3, 50)
    assert all(len(set(row.tolist())) == 50 for row in pixels.flatten(0, 1))
    assert int(pixels.max()) < 12 * 20
    torch.testing.assert_close(module._draw_pixels(hr), pixels)  # a function of (seed, step)
    assert STNOLitModule(net=net, train_queries=500)._draw_pixels(hr) is None  # >= all pixels
