"""stno-infer: streaming windows, exact frame count, chunking, atomic output, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stno.data import (
    VideoWriter,
    probe_video,
    read_video_frames,
    sample_video_path,
    write_png_frames,
)
from stno.inference import plan_windows, stream_windows, upscale_video
from stno.io.checkpoint import save_network_checkpoint
from stno.nn import STNO, BicubicBlend
from stno.ops.imresize import imresize

# One torch thread: on a busy 2-core machine two threads make tiny convolutions 30x slower.
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


# tiny tensors: one torch thread is faster, and much faster on a busy machine
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("window, context", [(2, 0), (4, 1), (6, 1), (7, 2), (9, 3)])
def test_windows_emit_every_interval_once_in_order(window, context):
    for num_frames in range(2, 40):
        plan = plan_windows(num_frames, window, context)
        owned = [i for w in plan for i in range(w.own_from, w.own_to)]
        assert owned == list(range(num_frames - 1))
        assert [w.is_last for w in plan] == [False] * (len(plan) - 1) + [True]
        assert plan[-1].last == num_frames - 1
        for w in plan:
            assert w.last - w.first + 1 == min(window, num_frames)
            # context inputs on both sides of what is emitted, except at the video's ends
            assert w.own_from - w.first >= min(context, w.own_from)
            assert w.last - w.own_to >= (0 if w.is_last else context)


def test_streaming_holds_only_one_window():
    consumed = []

    def frames():
        for index in range(50):
            consumed.append(index)
            yield index

    for plan, held in stream_windows(frames(), window=6, context=1):
        assert held == list(range(plan.first, plan.last + 1))
        assert len(consumed) - plan.first <= 6 + 1  # the window plus one frame of look-ahead
    assert len(consumed) == 50


def test_fewer_than_two_frames_is_an_error():
    with pytest.raises(ValueError, match="need at least 2 frames"):
        list(stream_windows(iter([0])))


@pytest.fixture(scope="module")
def short_video(tmp_path_factory) -> Path:
    """5 frames of the embedded sample, resized to 36x64, as an mp4 at 25 fps."""
    frames = read_video_frames(sample_video_path(), count=5).float() / 255
    small = imresize(frames, out_size=(36, 64)).clamp(0, 1)
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    with VideoWriter(path, fps=25) as writer:
        writer.write(small)
    return path


@pytest.fixture(scope="module")
def frame_folder(tmp_path_factory) -> Path:
    """7 frames of 12x16 from the sample, as PNG files."""
    frames = read_video_frames(sample_video_path(), count=7).float() / 255
    folder = tmp_path_factory.mktemp("frames") / "clip"
    write_png_frames(imresize(frames, out_size=(12, 16)).clamp(0, 1), folder)
    return folder


def read_folder(folder: Path) -> torch.Tensor:
    return torch.stack(
        [torch.from_numpy(np.array(Image.open(p))) for p in sorted(folder.iterdir())]
    )


def tiny_net() -> STNO:
    from omegaconf import OmegaConf

    from stno.io.configs import config_dir

    config = OmegaConf.to_container(OmegaConf.load(config_dir() / "model" / "stno_tiny.yaml").net)
    config.pop("_target_")
    torch.manual_seed(0)
    return STNO(**config).eval()


def test_stno_infer_writes_the_right_video(short_video, tmp_path):
    """The real console entry point, in a subprocess, on a short real clip."""
    output = tmp_path / "out.mp4"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "stno.cli.infer",
            f"input={short_video}",
            f"output={output}",
            "model=bicubic_blend",  # the alias of preset= (the name stno-train uses)
            "space_scale=2",
            "time_scale=3",
            "device=cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=SUBPROCESS_ENV,
    )
    assert completed.returncode == 0, completed.stderr
    assert probe_video(output) == ((5 - 1) * 3 + 1, 75.0, (72, 128))
    assert len(read_video_frames(output)) == 13
    assert "13/13" in completed.stderr  # the progress bar counted every frame
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_windowed_baseline_equals_one_pass_over_the_whole_clip(frame_folder, tmp_path):
    summary = upscale_video(
        BicubicBlend(),
        frame_folder,
        tmp_path / "out",
        space_scale=2.5,
        time_scale=2,
        window=3,
        context=0,
        progress=False,
    )
    assert (
        summary["output_frames"] == 13
        and summary["output_size"] == [30, 40]
        and summary["output_fps"] == 50
    )
    frames = read_folder(frame_folder).permute(0, 3, 1, 2).float() / 255
    expected = BicubicBlend()(frames[None], [0.5], (30, 40))[0]
    expected = torch.round(expected * 255).to(torch.uint8).permute(0, 2, 3, 1)
    assert torch.equal(read_folder(tmp_path / "out"), expected)


def test_chunked_and_unchunked_outputs_are_equal(frame_folder, tmp_path):
    net = tiny_net()
    kwargs = dict(space_scale=2, time_scale=2, window=4, context=1, progress=False)
    upscale_video(net, frame_folder, tmp_path / "whole", max_queries=None, **kwargs)
    upscale_video(net, frame_folder, tmp_path / "chunked", max_queries=300, **kwargs)
    whole, chunked = read_folder(tmp_path / "whole"), read_folder(tmp_path / "chunked")
    assert whole.shape == (13, 24, 32, 3)
    assert (
        whole.int() - chunked.int()
    ).abs().max() <= 1  # float summation order may flip a rounding
    assert (whole != chunked).float().mean() < 1e-3
    # a window holding the whole clip is one network call
    upscale_video(
        net,
        frame_folder,
        tmp_path / "one",
        window=7,
        context=1,
        space_scale=2,
        time_scale=2,
        progress=False,
    )
    frames = read_folder(frame_folder).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        expected = (
            torch.round(net(frames[None], [0.5], (24, 32))[0] * 255)
            .to(torch.uint8)
            .permute(0, 2, 3, 1)
        )
    assert (read_folder(tmp_path / "one").int() - expected.int()).abs().max() <= 1


class FailingNet(torch.nn.Module):
    """Works for the first window, then fails: the output must not appear."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, frames, times, out_size, max_queries=None):
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("simulated failure")
        return BicubicBlend()(frames, times, out_size)


@pytest.mark.parametrize("output_name", ["out.mp4", "out_frames"])
def test_a_failure_midway_leaves_no_output(frame_folder, tmp_path, output_name):
    with pytest.raises(RuntimeError, match="simulated"):
        upscale_video(
            FailingNet(), frame_folder, tmp_path / output_name, window=3, context=0, progress=False
        )
    assert list(tmp_path.iterdir()) == []


def run_infer_expecting_error(overrides, capsys) -> str:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from stno.cli.infer import run
    from stno.io.configs import config_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="infer", overrides=[*overrides, "progress=false"])
    with pytest.raises(SystemExit) as raised:
        run(cfg)
    assert raised.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("stno-infer: error:"), error
    return error


def test_bad_input_gives_one_clear_error_and_no_output(short_video, frame_folder, tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    output = f"output={out_dir / 'result.mp4'}"
    baseline = "preset=bicubic_blend"
    assert "checkpoint not found" in run_infer_expecting_error(
        [f"input={short_video}", output, f"ckpt_path={tmp_path / 'missing.ckpt'}"], capsys
    )
    tiny = save_network_checkpoint(tiny_net(), tmp_path / "tiny.ckpt", preset="stno_tiny")
    error = run_infer_expecting_error(
        [f"input={short_video}", output, f"ckpt_path={tiny}", "preset=stno_base"], capsys
    )
    assert "stno_base" in error and "stno_tiny" in error
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(bytes(range(256)) * 40)
    assert "corrupt.mp4" in run_infer_expecting_error(
        [f"input={corrupt}", output, baseline], capsys
    )
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert "empty.mp4" in run_infer_expecting_error([f"input={empty}", output, baseline], capsys)
    single = tmp_path / "single"
    write_png_frames(torch.rand(1, 3, 8, 8), single)
    assert "at least 2 frames" in run_infer_expecting_error(
        [f"input={single}", output, baseline], capsys
    )
    for scale in (0, -2):
        error = run_infer_expecting_error(
            [f"input={short_video}", output, baseline, f"space_scale={scale}"], capsys
        )
        assert "space_scale" in error
    assert "time_scale" in run_infer_expecting_error(
        [f"input={short_video}", output, baseline, "time_scale=0"], capsys
    )
    assert "input not found" in run_infer_expecting_error(
        [f"input={tmp_path / 'nope.mp4'}", output, baseline], capsys
    )
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    error = run_infer_expecting_error(
        [f"input={short_video}", f"output={blocker / 'out.mp4'}", baseline], capsys
    )
    assert "cannot write" in error
    assert "unknown kind" in run_infer_expecting_error(
        [f"input={short_video}", f"output={out_dir / 'x.txt'}", baseline], capsys
    )
    assert list(out_dir.iterdir()) == []
