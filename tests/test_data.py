"""Data: sources, clip sampling, augmentation alignment, bad input, the embedded sample."""

from __future__ import annotations

import math

import pytest
import torch
from data_helpers import (
    TensorSource,
    centroid,
    moving_square,
    write_frame_folder,
    write_test_video,
)
from torch.utils.data import DataLoader

from stno.data import (
    AdobeGoProSource,
    ContinuousClipDataset,
    ContinuousCollate,
    DataError,
    FixedScaleClipDataset,
    FrameFolderSource,
    VideoFileSource,
    VideoWriter,
    VimeoSeptupletSource,
    probe_video,
    read_video_frames,
    sample_video_path,
    split_sequences,
    write_png_frames,
)
from stno.ops.imresize import imresize


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def hr_to_lr_coords(point: torch.Tensor, scale: float) -> torch.Tensor:
    """Pixel-centre mapping of MATLAB imresize: HR x -> LR (x + 0.5) / s - 0.5."""
    return (point + 0.5) / scale - 0.5


# ---------------------------------------------------------------- video and frame folders


def test_video_and_frame_folder_give_same_clips(tmp_path):
    frames = moving_square(12, 40, 56)
    video = write_test_video(tmp_path / "clip.mp4", frames)
    count, fps, size = probe_video(video)
    assert (count, fps, size) == (12, 25.0, (40, 56))
    decoded = read_video_frames(video)
    # H.264 at CRF 0 with 4:2:0 chroma is near-lossless: small errors on the square's edges only.
    assert (decoded.float() - frames.float()).abs().mean() < 2.0
    # A frame folder of the same (decoded) frames must give identical clips.
    write_frame_folder(tmp_path / "frames" / "clip", decoded)
    video_source = VideoFileSource(video)
    folder_source = FrameFolderSource(tmp_path / "frames")
    assert video_source.sequences == [("clip.mp4", 12)]
    assert folder_source.sequences == [("clip", 12)]
    assert torch.equal(
        video_source.read("clip.mp4", [3, 4, 9]), folder_source.read("clip", [3, 4, 9])
    )
    assert torch.equal(read_video_frames(video, start=5, count=3), decoded[5:8])

    def batches(source):
        dataset = FixedScaleClipDataset(source, num_inputs=3, scale=2, lr_patch=8, seed=7)
        return [dataset.collate_fn([dataset[i], dataset[i + 1]]) for i in (0, 4)]

    for a, b in zip(batches(video_source), batches(folder_source), strict=True):
        assert torch.equal(a["lr"], b["lr"]) and torch.equal(a["hr"], b["hr"])

    # Uncached reads decode from the start every time and give the same frames.
    assert torch.equal(
        VideoFileSource(video, cache=False).read("clip.mp4", [6, 2]), decoded[[6, 2]]
    )


def test_video_writer_is_atomic_and_pads_odd_sizes(tmp_path):
    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(target, fps=10) as writer:
            writer.write(torch.rand(3, 16, 16))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with VideoWriter(target, fps=10) as writer:
        writer.write(torch.rand(2, 3, 15, 21))  # float frames, odd size
    assert probe_video(target)[0] == 2 and probe_video(target)[2] == (16, 22)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]
    with pytest.raises(DataError, match="odd"):
        with VideoWriter(tmp_path / "odd.mp4", pad_odd=False) as writer:
            writer.write(torch.rand(3, 15, 16))
    paths = write_png_frames(torch.zeros(2, 3, 4, 6, dtype=torch.uint8), tmp_path / "pngs")
    assert [p.name for p in paths] == ["00000000.png", "00000001.png"]


def test_vimeo_and_adobe_layouts(tmp_path):
    vimeo = tmp_path / "vimeo"
    frames = moving_square(7, 32, 40, velocity=(1.0, 1.0))
    for clip in ("00001/0001", "00002/0003"):
        write_png_frames(frames, vimeo / "sequences" / clip, start_index=1, name_format="im{}.png")
    (vimeo / "sep_trainlist.txt").write_text("00001/0001\n00002/0003\n")
    source = VimeoSeptupletSource(vimeo, "sep_trainlist.txt")
    assert source.sequences == [("00001/0001", 7), ("00002/0003", 7)]
    assert torch.equal(source.read("00002/0003", [0, 6]), frames[[0, 6]])
    dataset = FixedScaleClipDataset(source, num_inputs=4, scale=4, lr_patch=None, augment=False)
    assert len(dataset) == 2
    sample = dataset[0]
    assert sample["lr"].shape == (4, 3, 8, 10) and sample["hr"].shape == (7, 3, 32, 40)
    assert torch.equal(sample["hr"], frames.float() / 255)
    expected_lr = (
        torch.round(imresize(frames[::2].float() / 255, scale=0.25).clamp(0, 1) * 255) / 255
    )
    assert torch.allclose(sample["lr"], expected_lr, atol=1e-6)

    adobe = tmp_path / "adobe"
    for split, name, count in (
        ("train", "GOPR0001", 10),
        ("train", "GOPR0002", 9),
        ("test", "GOPR0384", 11),
    ):
        write_png_frames(moving_square(count, 24, 24), adobe / split / name)
    assert AdobeGoProSource(adobe, split="train").sequences == [("GOPR0001", 10), ("GOPR0002", 9)]
    assert AdobeGoProSource(adobe).sequences == [
        ("test/GOPR0384", 11),
        ("train/GOPR0001", 10),
        ("train/GOPR0002", 9),
    ]
    windows = ContinuousClipDataset(AdobeGoProSource(adobe, "train"), window=9, lr_patch=4).windows
    assert windows == [("GOPR0001", 0), ("GOPR0001", 1), ("GOPR0002", 0)]


def test_split_single_sequence_has_no_overlap():
    source = TensorSource({"a": moving_square(50, 16, 16)})
    train, val = split_sequences(source, 0.2, min_frames=9)
    assert train.sequences == [("a", 40)] and val.sequences == [("a", 10)]
    assert torch.equal(val.read("a", [0]), source.read("a", [40]))
    multi = TensorSource({f"s{i}": moving_square(9, 16, 16) for i in range(5)})
    train, val = split_sequences(multi, 0.2)
    assert [n for n, _ in train.sequences] == ["s0", "s1", "s2", "s3"]
    assert [n for n, _ in val.sequences] == ["s4"]


# ---------------------------------------------------------------- sampling


def test_continuous_scales_and_times_stay_in_range():
    window, low, high, lr_patch = 9, 1.5, 3.5, 6
    collate = ContinuousCollate(window, (low, high), num_times=3, lr_patch=lr_patch, seed=3)
    hr_size = math.ceil(lr_patch * high)
    samples = [{"hr_window": torch.rand(window, 3, hr_size, hr_size)} for _ in range(2)]
    scales, all_times = [], set()
    for _ in range(100):
        batch = collate(samples)
        scale, times = batch["scale"], batch["times"]
        assert low <= scale <= high
        assert len(times) == 3 and bool((times[1:] > times[:-1]).all())
        steps = (times * (window - 1)).tolist()
        assert all(abs(s - round(s)) < 1e-6 and 1 <= round(s) <= window - 2 for s in steps)
        size = round(lr_patch * scale)
        assert batch["lr"].shape == (2, 2, 3, lr_patch, lr_patch)
        assert batch["hr"].shape == (2, 5, 3, size, size)
        scales.append(scale)
        all_times.update(round(s) for s in steps)
    assert min(scales) < low + 0.2 and max(scales) > high - 0.2  # the whole range is used
    assert all_times == set(range(1, window - 1))
    fixed = ContinuousCollate(window, (4, 4), times=[0.25, 0.75], lr_patch=lr_patch)
    batch = fixed([{"hr_window": torch.rand(window, 3, 24, 24)}])
    assert batch["scale"] == 4.0 and batch["times"].tolist() == [0.25, 0.75]


def test_continuous_dataset_is_deterministic_with_workers():
    source = TensorSource({"a": moving_square(20, 40, 40), "b": moving_square(20, 40, 40)})

    def run():
        dataset = ContinuousClipDataset(source, window=9, scale_range=(1, 4), lr_patch=8)
        loader = DataLoader(
            dataset,
            batch_size=3,
            shuffle=True,
            num_workers=2,
            collate_fn=dataset.collate_fn,
            generator=torch.Generator().manual_seed(5),
        )
        return [(b["scale"], b["times"], b["hr"]) for b, _ in zip(loader, range(4), strict=False)]

    first, second = run(), run()
    for (s1, t1, h1), (s2, t2, h2) in zip(first, second, strict=True):
        assert s1 == s2 and torch.equal(t1, t2) and torch.equal(h1, h2)
    assert len({s for s, _, _ in first}) > 1


@pytest.mark.parametrize("mode", ["continuous", "fixed"])
def test_frames_stay_aligned_after_augmentation(mode):
    """A square moving by (1, 2) px per frame: after flips / rotation / reversal it still moves
    linearly in time (HR centroids match the timestamps) and the LR inputs show it where HR does."""
    velocity = torch.tensor([1.0, 2.0], dtype=torch.float64)
    source = TensorSource({"a": moving_square(12, 48, 48, velocity=tuple(velocity.tolist()))})
    if mode == "continuous":
        dataset = ContinuousClipDataset(
            source, window=9, scale_range=(2, 3), num_times=2, lr_patch=None, seed=1
        )
    else:
        dataset = FixedScaleClipDataset(source, num_inputs=4, scale=2, lr_patch=None, seed=1)
    directions = set()
    for index in range(24):
        batch = dataset.collate_fn([dataset[index % len(dataset)]])
        hr, lr, scale = batch["hr"][0], batch["lr"][0], batch["scale"]
        times = [0.0, *batch["times"].tolist(), 1.0]
        if mode == "fixed":
            times = [i / 6 for i in range(7)]
        hr_centres = torch.stack([centroid(frame) for frame in hr])
        # Position at time t along the line between the two input frames.
        first, last = hr_centres[0], hr_centres[-1]
        for centre, t in zip(hr_centres, times, strict=True):
            assert torch.allclose(centre, first + t * (last - first), atol=1e-6)
        # The square moves (window - 1) or 6 frames' worth: the same speed, any direction.
        span = 8 if mode == "continuous" else 6
        step = (last - first) / span
        assert torch.allclose(step.abs().sort().values, velocity.sort().values, atol=1e-6)
        directions.add(tuple(step.sign().tolist()) + (bool(step[0].abs() > step[1].abs()),))
        # LR inputs are the first and last (continuous) or even (fixed) HR frames, downscaled.
        input_frames = hr[[0, -1]] if mode == "continuous" else hr[::2]
        for lr_frame, hr_frame in zip(lr, input_frames, strict=True):
            lr_scale = hr.shape[-1] / lr.shape[-1]
            expected = hr_to_lr_coords(centroid(hr_frame), lr_scale)
            assert torch.allclose(centroid(lr_frame), expected, atol=0.15)
        assert abs(scale - hr.shape[-1] / lr.shape[-1]) < 0.1
    assert len(directions) >= 4  # flips, rotations and reversal really happen


# ---------------------------------------------------------------- bad input


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError) as excinfo:
        FrameFolderSource(tmp_path / "nope")
    assert "frame folder not found" in one_line_error(excinfo) and "nope" in str(excinfo.value)
    with pytest.raises(FileNotFoundError) as excinfo:
        VideoFileSource(tmp_path / "missing.mp4")
    assert "missing.mp4" in one_line_error(excinfo)
    with pytest.raises(ValueError) as excinfo:  # DataNotFoundError is also a ValueError
        VimeoSeptupletSource(tmp_path, "sep_trainlist.txt")
    assert "list file not found" in one_line_error(excinfo)


def test_empty_folder(tmp_path):
    (tmp_path / "seq").mkdir()
    with pytest.raises(DataError) as excinfo:
        FrameFolderSource(tmp_path)
    assert "no frame images" in one_line_error(excinfo) and "ROOT/<sequence>" in str(excinfo.value)
    with pytest.raises(DataError) as excinfo:
        VideoFileSource(tmp_path)
    assert "no video files" in one_line_error(excinfo)


def test_corrupt_video(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x01not a video" * 50)
    with pytest.raises(DataError) as excinfo:
        VideoFileSource(bad)
    assert "bad.mp4" in one_line_error(excinfo)


def test_video_shorter_than_a_clip(tmp_path):
    video = write_test_video(tmp_path / "short.mp4", moving_square(5, 16, 16))
    with pytest.raises(DataError) as excinfo:
        ContinuousClipDataset(VideoFileSource(video), window=9, lr_patch=4)
    message = one_line_error(excinfo)
    assert "'short.mp4' has 5 frames but a clip needs 9" in message


def test_scale_outside_supported_range():
    source = TensorSource({"a": moving_square(9, 32, 32)})
    with pytest.raises(DataError) as excinfo:
        ContinuousClipDataset(source, scale_range=(0.5, 4))
    assert "scale range (0.5, 4) is not supported" in one_line_error(excinfo)
    with pytest.raises(DataError) as excinfo:
        FixedScaleClipDataset(source, scale=0.5)
    assert "space scale must be >= 1" in one_line_error(excinfo)
    with pytest.raises(DataError) as excinfo:
        ContinuousClipDataset(source, scale_range=(1, 8), lr_patch=32)
    assert "smaller than the HR crop 256" in one_line_error(excinfo)
    with pytest.raises(DataError) as excinfo:
        ContinuousClipDataset(source, times=[0.3], lr_patch=4)
    assert "timestamp 0.3 is not one of i/8" in one_line_error(excinfo)


# ---------------------------------------------------------------- embedded sample


def test_embedded_sample_decodes():
    path = sample_video_path()
    assert path.suffix == ".mp4" and path.stat().st_size < 3_000_000
    count, fps, size = probe_video(path)
    assert (count, fps, size) == (60, 25.0, (270, 480))
    frames = read_video_frames(path, start=58)
    assert frames.shape == (2, 3, 270, 480) and frames.dtype == torch.uint8
    assert 20 < frames.float().mean() < 200  # a real picture, not a blank frame
