"""One video reader and one atomic-output scheme: the decoder's checks, readers that agree, and
writers (videos, PNG frames, stno-infer's sinks) that go through `stno.io.files`."""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np
import pytest
import torch
from data_helpers import moving_square

from stno.data import DataError, FrameFolderSource, VideoWriter, read_video_frames
from stno.inference import BackgroundSink, FrameReader
from stno.inference.pipeline import _FolderSink, _VideoSink
from stno.io.files import remove_orphan_temporaries, temporary_path
from stno.io.images import iter_images, write_png_frames
from stno.io.video import iter_video_frames, probe_video


def _raw_h264(path, num_frames: int, height: int, width: int) -> bytes:
    import av

    with av.open(str(path), "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
        for index in range(num_frames):
            image = np.full((height, width, 3), 20 * index, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path.read_bytes()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    with VideoWriter(path, fps=25) as writer:
        writer.write(moving_square(6, 32, 48))
    return path


def test_every_video_reader_decodes_the_same_frames(video, tmp_path):
    whole = read_video_frames(video)
    assert whole.shape == (6, 3, 32, 48) and whole.dtype == torch.uint8
    assert torch.equal(torch.stack(list(iter_video_frames(video))), whole)
    assert torch.equal(torch.stack(list(FrameReader(video))), whole)
    assert torch.equal(read_video_frames(video, start=2, count=3), whole[2:5])

    folder = tmp_path / "frames"
    write_png_frames(whole, folder)
    paths = FrameFolderSource(folder).frame_paths("frames")
    assert torch.equal(torch.stack(list(iter_images(paths))), whole)
    assert torch.equal(torch.stack(list(FrameReader(folder))), whole)


@pytest.mark.parametrize("start, count", [(0, None), (2, None), (0, 4), (1, 3), (5, 1)])
def test_whole_video_reads_match_frame_by_frame_reads(video, tmp_path, start, count):
    # with a declared frame count (mp4: written into one tensor) and without (a raw H.264
    # stream stores none: frames are stacked)
    raw = tmp_path / "raw.h264"
    _raw_h264(raw, 6, 32, 48)
    for path in (video, raw):
        frames = torch.stack(list(iter_video_frames(path)))
        got = read_video_frames(path, start=start, count=count)
        want = frames[start : None if count is None else start + count]
        assert got.is_contiguous() and torch.equal(got, want)


def test_a_video_whose_frames_change_size_is_a_data_error(tmp_path):
    mixed = tmp_path / "mixed.h264"
    mixed.write_bytes(
        _raw_h264(tmp_path / "a.h264", 3, 32, 48) + _raw_h264(tmp_path / "b.h264", 3, 48, 64)
    )
    expected = "change size: frame 0 is 48x32, frame 3 is 64x48"
    for read in (read_video_frames, lambda path: list(iter_video_frames(path)), probe_video):
        with pytest.raises(DataError, match=expected) as raised:
            read(mixed)
        assert "\n" not in str(raised.value)


def test_a_frame_folder_with_mixed_sizes_names_both_frames(tmp_path):
    write_png_frames(torch.zeros(3, 3, 8, 10, dtype=torch.uint8), tmp_path / "mixed")
    write_png_frames(torch.zeros(1, 3, 8, 12, dtype=torch.uint8), tmp_path / "mixed", 1)
    paths = sorted((tmp_path / "mixed").iterdir())
    with pytest.raises(DataError, match="00000000.png is 10x8, 00000001.png is 12x8"):
        list(iter_images(paths))


def test_writers_use_the_temporary_names_of_stno_io_files(tmp_path):
    target = tmp_path / "out.mp4"
    writer = VideoWriter(target, fps=10)
    writer.write(torch.rand(3, 16, 16))
    temporary = temporary_path(target, keep_suffix=True)
    assert writer._temp_path == temporary and temporary.suffix == ".mp4"  # picks the container
    assert not target.exists()
    writer.close()
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]

    write_png_frames(torch.zeros(2, 3, 4, 6, dtype=torch.uint8), tmp_path / "pngs")
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == [
        "00000000.png",
        "00000001.png",
    ]
    assert remove_orphan_temporaries(tmp_path) == []


def test_inference_sinks_commit_or_discard(tmp_path):
    frames = torch.rand(2, 3, 8, 8)
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "old.png").write_bytes(b"")  # replaced (overwrite=true was checked before)
    sink = _FolderSink(folder)
    sink.write(frames)
    assert sink.temporary == temporary_path(folder) and sink.temporary.is_dir()
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]
    assert sorted(p.name for p in folder.iterdir()) == ["00000000.png", "00000001.png"]

    aborted = _FolderSink(tmp_path / "aborted")
    aborted.write(frames)
    aborted.abort()
    with pytest.raises(RuntimeError, match="aborted"):  # a late write creates nothing again
        aborted.write(frames)
    video = _VideoSink(tmp_path / "clip.mp4", fps=10)
    video.write(frames)
    video.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


def test_aborting_an_idle_background_sink_is_immediate(tmp_path):
    sink = BackgroundSink(_FolderSink(tmp_path / "out"), depth=2)
    sink.write(torch.rand(1, 3, 8, 8))
    time.sleep(0.2)  # the writer thread has written and waits for more
    started = time.perf_counter()
    sink.abort()
    assert time.perf_counter() - started < 5 and not sink.thread.is_alive()
    assert list(tmp_path.iterdir()) == []
