"""Evaluation protocols, the evaluator against an independent numpy computation, stno-eval."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stno.evaluation import (
    aggregate,
    evaluate,
    gopro_windows,
    make_protocol,
    markdown_table,
    metrics_document,
    open_source,
    vid4_windows,
    vimeo_windows,
)
from stno.io.checkpoint import save_network_checkpoint
from stno.nn import STNO, BicubicBlend

# One torch thread: on a busy 2-core machine two threads make tiny convolutions 30x slower.
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


# tiny tensors: one torch thread is faster, and much faster on a busy machine
pytestmark = pytest.mark.usefixtures("one_torch_thread")

METRICS = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")


# ---------------------------------------------------------------- protocols


@pytest.mark.parametrize("mode", ["window", "sequence"])
@pytest.mark.parametrize("time_scale", [2, 3, 4])
@pytest.mark.parametrize("num_inputs", [2, 4, 5])
def test_vid4_windows_score_every_frame_exactly_once(mode, time_scale, num_inputs):
    for num_frames in range(time_scale + 1, 60):
        windows = vid4_windows(num_frames, num_inputs=num_inputs, mode=mode, time_scale=time_scale)
        scored = [index for window in windows for index in window.scored]
        assert sorted(scored) == list(range(num_frames)), (num_frames, windows)
        for window in windows:
            assert set(window.scored) <= set(window.outputs)
            assert all(
                b - a == time_scale for a, b in zip(window.inputs, window.inputs[1:], strict=False)
            )
            assert 0 <= window.first and window.last <= num_frames - 1
            if mode == "window":
                assert len(window.inputs) == min(num_inputs, (num_frames - 1) // time_scale + 1)


def test_vid4_windows_follow_zooming_slow_mo():
    """4 even-index inputs -> 7 outputs, step 6; the shared boundary frame is scored once."""
    windows = vid4_windows(13)
    assert [w.inputs for w in windows] == [(0, 2, 4, 6), (6, 8, 10, 12)]
    assert [w.scored for w in windows] == [tuple(range(7)), tuple(range(7, 13))]
    # Vid4's city has 34 frames: the tail frames after input 30 come from a window ending at 33.
    city = vid4_windows(34)
    assert [w.inputs for w in city][:5] == [
        (0, 2, 4, 6),
        (6, 8, 10, 12),
        (12, 14, 16, 18),
        (18, 20, 22, 24),
        (24, 26, 28, 30),
    ]
    assert city[-1].inputs == (27, 29, 31, 33) and city[-1].scored == (31, 32, 33)
    whole = vid4_windows(41, mode="sequence")
    assert len(whole) == 1 and whole[0].inputs == tuple(range(0, 41, 2))


def test_vid4_windows_reject_too_short_sequences():
    with pytest.raises(ValueError, match="too short"):
        vid4_windows(2)


@pytest.mark.parametrize("selection, picked", [("center", (0, 4, 8)), ("average", tuple(range(9)))])
def test_gopro_center_and_average_pick_the_right_frames(selection, picked):
    windows = gopro_windows(25, time_scale=8, selection=selection)
    assert [w.inputs for w in windows] == [(0, 8), (8, 16), (16, 24)]
    for number, window in enumerate(windows):
        assert window.scored == tuple(8 * number + i for i in picked)
        assert window.outputs == tuple(range(8 * number, 8 * number + 9))
    # a 1-based reading: Center = frames 1, 5, 9 of each 9-frame window
    assert [i + 1 for i in gopro_windows(9, selection="center")[0].scored] == [1, 5, 9]
    assert len(gopro_windows(20, time_scale=8)) == 2  # frames 17..19 do not fill a window


def test_vimeo_septuplet_inputs_and_targets():
    (window,) = vimeo_windows(7)
    assert [i + 1 for i in window.inputs] == [1, 3, 5, 7] and window.scored == tuple(range(7))


def test_protocol_arguments_are_checked():
    with pytest.raises(ValueError, match="space_scale"):
        make_protocol("vid4", space_scale=0.5)
    with pytest.raises(ValueError, match="time_scale"):
        make_protocol("vid4", time_scale=1)
    with pytest.raises(ValueError, match="do not fall on ground-truth frames"):
        make_protocol("vid4", times=[0.3, 0.6])
    assert (
        make_protocol("gopro", time_scale=None, times=[i / 8 for i in range(1, 8)]).settings[
            "time_scale"
        ]
        == 8
    )
    with pytest.raises(ValueError, match="unknown benchmark"):
        make_protocol("vid5")


def test_aggregate_averages_sequences_then_frames():
    frames = [
        {"sequence": "a", "index": 0, **dict.fromkeys(METRICS, 10.0)},
        {"sequence": "a", "index": 1, **dict.fromkeys(METRICS, 20.0)},
        {"sequence": "b", "index": 0, **dict.fromkeys(METRICS, 40.0)},
    ]
    sequences, average, over_frames = aggregate(frames)
    assert sequences["a"]["psnr_y"] == 15.0 and sequences["a"]["frames"] == 2
    assert average["psnr_y"] == pytest.approx((15.0 + 40.0) / 2)
    assert over_frames["psnr_y"] == pytest.approx(70.0 / 3)
    table = markdown_table(
        metrics_document(
            "m", None, {"benchmark": "vid4", "space_scale": 4.0, "time_scale": 2}, frames
        )
    )
    assert (
        "| a | 2 | 15.00 | 15.0000 |" in table
        and "| **average** (of sequences) | 3 | 27.50 |" in table
    )


# ------------------------------------------------ independent numpy reference


def _cubic(x: float) -> float:
    x = abs(x)
    if x <= 1:
        return 1.5 * x**3 - 2.5 * x**2 + 1
    if x <= 2:
        return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
    return 0.0


def matlab_resize_axis(image: np.ndarray, out_len: int, axis: int) -> np.ndarray:
    """MATLAB imresize 'bicubic' along one axis, written with explicit loops (a = -0.5,
    kernel stretched by 1/scale when shrinking, symmetric border)."""
    in_len = image.shape[axis]
    scale = out_len / in_len
    width = 4.0 / scale if scale < 1 else 4.0
    moved = np.moveaxis(image, axis, 0)
    out = np.zeros((out_len,) + moved.shape[1:])
    for i in range(out_len):
        center = (i + 1) / scale + 0.5 * (1 - 1 / scale)
        first = math.floor(center - width / 2)
        taps = [first + k for k in range(int(math.ceil(width)) + 2)]
        weights = np.array(
            [
                scale * _cubic(scale * (center - j)) if scale < 1 else _cubic(center - j)
                for j in taps
            ]
        )
        weights /= weights.sum()
        for weight, j in zip(weights, taps, strict=True):
            k = j - 1  # 0-based, mirrored: ... 1 0 | 0 1 ... n-1 | n-1 n-2 ...
            k = k % (2 * in_len)
            k = k if k < in_len else 2 * in_len - 1 - k
            out[i] += weight * moved[k]
    return np.moveaxis(out, 0, axis)


def matlab_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) float -> (size[0], size[1], 3)."""
    return matlab_resize_axis(matlab_resize_axis(image, size[0], 0), size[1], 1)


def y_psnr(prediction: np.ndarray, target: np.ndarray) -> float:
    """BT.601 studio-range Y PSNR of 8-bit-quantised (H, W, 3) images in [0, 1]."""

    def y(image):
        image = np.round(np.clip(image, 0, 1) * 255) / 255
        return 16 + image @ np.array([65.481, 128.553, 24.966])

    mse = np.mean((y(prediction) - y(target)) ** 2)
    return 10 * math.log10(255**2 / mse)


def reference_bicubic_blend_psnr(frames: np.ndarray, scale: float) -> list[float]:
    """Per-frame Y-PSNR of bicubic + linear blending under the Vid4 protocol at x2 time."""
    count, height, width, _ = frames.shape
    lr_h, lr_w = math.floor(height / scale), math.floor(width / scale)
    hr = frames[:, : round(lr_h * scale), : round(lr_w * scale)] / 255.0
    size = hr.shape[1:3]

    def up(j):
        lr = np.round(np.clip(matlab_resize(hr[j], (lr_h, lr_w)), 0, 1) * 255) / 255
        return matlab_resize(lr, size)

    last_even = (count - 1) // 2 * 2
    values = []
    for j in range(count):
        if j > last_even or j % 2 == 0:
            prediction = up(
                j
            )  # an input (the tail of an even-length sequence is an input of the shifted window)
        else:
            prediction = 0.5 * up(j - 1) + 0.5 * up(j + 1)
        values.append(y_psnr(prediction, hr[j]))
    return values


def textured_frames(count: int, height: int, width: int, seed: int) -> np.ndarray:
    """(count, H, W, 3) uint8: smooth texture moving 1 px per frame plus a little noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((height // 4 + 2, (width + count) // 4 + 2, 3))
    texture = np.kron(coarse, np.ones((4, 4, 1)))
    frames = [
        texture[:height, i : i + width] + 0.05 * rng.random((height, width, 3))
        for i in range(count)
    ]
    return np.round(np.clip(np.stack(frames), 0, 1) * 255).astype(np.uint8)


def write_sequence(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{index:04d}.png")


@pytest.fixture(scope="module")
def vid4_like_root(tmp_path_factory) -> Path:
    """ROOT/<seq>/*.png: one odd-length (9) and one even-length (8) sequence of 40x52 frames."""
    root = tmp_path_factory.mktemp("vid4_like")
    write_sequence(root / "calendar", textured_frames(9, 40, 52, 0))
    write_sequence(root / "city", textured_frames(8, 40, 52, 1))
    return root


def bench_source(name: str, root: Path, *overrides: str):
    """The frames of benchmark ``name`` at ``root`` as stno-eval opens them (its `_target_`)."""
    from hydra.utils import instantiate

    cfg = compose_eval([f"benchmark={name}", f"benchmark.root={root}", *overrides])
    return open_source(cfg.benchmark, instantiate)


@pytest.mark.parametrize("scale", [4, 2.5])
def test_bicubic_blend_matches_an_independent_numpy_computation(vid4_like_root, scale):
    source = bench_source("vid4", vid4_like_root)
    result = evaluate(
        BicubicBlend(), source, make_protocol("vid4", space_scale=scale, time_scale=2)
    )
    for name in ("calendar", "city"):
        frames = np.stack(
            [np.asarray(Image.open(p)) for p in sorted((vid4_like_root / name).glob("*.png"))]
        )
        expected = reference_bicubic_blend_psnr(frames, scale)
        got = {f.index: f.metrics["psnr_y"] for f in result.frames if f.sequence == name}
        assert sorted(got) == list(range(len(frames)))
        np.testing.assert_allclose([got[i] for i in range(len(frames))], expected, atol=0.01)


def test_gopro_and_vimeo_protocols_run_end_to_end(tmp_path, tiny_vimeo_root):
    write_sequence(tmp_path / "gopro" / "GOPR0001", textured_frames(17, 24, 32, 2))
    source = bench_source("gopro", tmp_path / "gopro")
    center = evaluate(
        BicubicBlend(), source, make_protocol("gopro", time_scale=8, selection="center")
    )
    assert [(f.index, f.window) for f in center.frames] == [
        (0, 0),
        (4, 0),
        (8, 0),
        (8, 1),
        (12, 1),
        (16, 1),
    ]
    # inputs are reproduced up to the LR round trip, middle frames are a blend: worse
    psnr = [f.metrics["psnr_y"] for f in center.frames]
    assert psnr[1] < psnr[0] and psnr[4] < psnr[5]
    average = evaluate(
        BicubicBlend(), source, make_protocol("gopro", time_scale=8, selection="average")
    )
    assert [f.index for f in average.frames] == list(range(9)) + list(range(8, 17))

    vimeo = bench_source("vimeo_t", tiny_vimeo_root)
    result = evaluate(BicubicBlend(), vimeo, make_protocol("vimeo_t"))
    assert [f.index for f in result.frames] == list(range(7)) * 2
    assert {f.sequence for f in result.frames} == {"00003/0001", "00003/0002"}


def test_saved_frames_video_and_comparisons(tmp_path, vid4_like_root):
    source = bench_source("vid4", vid4_like_root, "benchmark.sequences=[city]")
    evaluate(
        BicubicBlend(),
        source,
        make_protocol("vid4", space_scale=4),
        output_dir=tmp_path,
        save_frames=True,
        save_video=True,
        save_comparisons=True,
    )
    assert sorted(p.name for p in (tmp_path / "frames" / "city").iterdir()) == [
        f"{i:08d}.png" for i in range(8)
    ]
    from stno.data import probe_video

    assert probe_video(tmp_path / "videos" / "city.mp4")[0] == 8
    (comparison,) = (tmp_path / "comparisons").iterdir()
    image = np.asarray(Image.open(comparison))
    # per column: a 14 px label strip, the 40x52 crop, a 4 px gap, its centre zoomed 2x (80x104)
    assert image.shape[:2] == (14 + 40 + 4 + 80, 3 * 104 + 2 * 4)
    assert (image[:14, :52] < 100).any()  # the label is written


def test_compare_scores_bicubic_blend_on_the_same_frames(vid4_like_root):
    source = bench_source("vid4", vid4_like_root, "benchmark.sequences=[city]")
    result = evaluate(BicubicBlend(), source, make_protocol("vid4", space_scale=4), compare=True)
    for frame in result.frames:  # the baseline against itself: no gain
        assert frame.metrics["bicubic_psnr_y"] == frame.metrics["psnr_y"]
        assert frame.metrics["gain_psnr_y"] == 0.0
    settings = {"benchmark": "vid4", "space_scale": 4, "time_scale": 2}
    document = metrics_document("x", None, settings, [f.as_dict() for f in result.frames])
    assert document["average"]["gain_psnr_y"] == 0.0
    table = markdown_table(document)
    assert "gain PSNR-Y (dB)" in table and "+0.00" in table


# -------------------------------------------------------------- stno-eval CLI


def compose_eval(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from stno.io.configs import config_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="eval", overrides=overrides)


def tiny_checkpoint(path: Path) -> Path:
    from omegaconf import OmegaConf

    from stno.io.configs import config_dir

    config = OmegaConf.to_container(OmegaConf.load(config_dir() / "model" / "stno_tiny.yaml").net)
    config.pop("_target_")
    torch.manual_seed(0)
    return save_network_checkpoint(STNO(**config), path, preset="stno_tiny")


def test_stno_eval_with_a_tiny_checkpoint_writes_the_schema(tmp_path, vid4_like_root):
    """Runs the real console entry point in a subprocess."""
    ckpt = tiny_checkpoint(tmp_path / "tiny.ckpt")
    out = tmp_path / "eval"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "stno.cli.eval",
            f"ckpt_path={ckpt}",
            "benchmark=vid4",
            f"benchmark.root={vid4_like_root}",
            f"output_dir={out}",
            "progress=false",
            "device=cpu",
            "max_queries=1500",
            "crop_border=2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=SUBPROCESS_ENV,
    )
    assert completed.returncode == 0, completed.stderr
    document = json.loads((out / "metrics.json").read_text())
    assert document["model"] == "stno_tiny" and document["checkpoint"] == str(ckpt)
    protocol = document["protocol"]
    assert (
        protocol["benchmark"],
        protocol["space_scale"],
        protocol["time_scale"],
        protocol["crop_border"],
    ) == ("vid4", 4.0, 2, 2)
    assert protocol["mode"] == "window" and protocol["num_inputs"] == 4
    assert "sequences" in document["average_definition"]
    assert set(document["sequences"]) == {"calendar", "city"}
    assert [s["frames"] for s in document["sequences"].values()] == [9, 8]
    assert len(document["frames"]) == 17
    for values in [
        document["average"],
        document["average_over_frames"],
        *document["sequences"].values(),
        *document["frames"],
    ]:
        assert all(math.isfinite(values[key]) for key in METRICS)
    assert document["average"]["psnr_y"] == pytest.approx(
        np.mean([s["psnr_y"] for s in document["sequences"].values()])
    )
    table = (out / "metrics.md").read_text()
    assert "| calendar | 9 |" in table and "| city | 8 |" in table and table in completed.stdout


def run_eval_expecting_error(overrides, capsys) -> str:
    from stno.cli.eval import run

    cfg = compose_eval(overrides)
    with pytest.raises(SystemExit) as raised:
        run(cfg)
    assert raised.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("stno-eval: error:")
    return error


def test_stno_eval_bad_input_gives_one_line(tmp_path, vid4_like_root, capsys):
    common = [
        f"benchmark.root={vid4_like_root}",
        f"output_dir={tmp_path / 'out'}",
        "progress=false",
    ]
    assert "checkpoint not found" in run_eval_expecting_error(
        [f"ckpt_path={tmp_path / 'no.ckpt'}", *common], capsys
    )
    # no ckpt_path means the shipped model; a preset that ships no weights needs a checkpoint
    assert "no weights ship for preset=stno_base" in run_eval_expecting_error(
        ["preset=stno_base", *common], capsys
    )
    ckpt = tiny_checkpoint(tmp_path / "tiny.ckpt")
    error = run_eval_expecting_error([f"ckpt_path={ckpt}", "preset=stno_base", *common], capsys)
    assert "stno_base" in error and "stno_tiny" in error
    error = run_eval_expecting_error(["preset=bicubic_blend", "space_scale=0", *common], capsys)
    assert "space_scale" in error
    error = run_eval_expecting_error(
        [
            "preset=bicubic_blend",
            f"benchmark.root={tmp_path / 'missing'}",
            f"output_dir={tmp_path / 'out'}",
        ],
        capsys,
    )
    assert "not found" in error
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_stno_eval_baseline_in_process(tmp_path, vid4_like_root, capsys):
    from stno.cli.eval import evaluate_from_config

    cfg = compose_eval(
        [
            "preset=bicubic_blend",
            "benchmark=video",
            f"benchmark.root={vid4_like_root / 'calendar'}",
            f"output_dir={tmp_path}",
            "progress=false",
            "time_scale=4",
            "space_scale=2",
        ]
    )
    document = evaluate_from_config(cfg)
    assert document["model"] == "bicubic_blend" and document["checkpoint"] is None
    assert document["protocol"]["times"] == [0.25, 0.5, 0.75]
    assert [f["index"] for f in document["frames"]] == list(range(9))
    assert (tmp_path / "config.yaml").is_file()


@pytest.mark.slow
def test_stno_eval_on_a_real_stno_train_checkpoint(tmp_path, vid4_like_root):
    """A short real `stno-train` run, then `stno-eval` on its last.ckpt (subprocesses)."""
    run_dir = tmp_path / "train"
    env_overrides = [
        "model=stno_tiny",
        "debug=limit",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
        "trainer.accelerator=cpu",
    ]
    train = subprocess.run(
        [sys.executable, "-m", "stno.cli.train", *env_overrides],
        capture_output=True,
        text=True,
        timeout=900,
        env=SUBPROCESS_ENV,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    (ckpt,) = list(run_dir.rglob("last.ckpt"))[:1]
    out = tmp_path / "eval"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "stno.cli.eval",
            f"ckpt_path={ckpt}",
            "preset=stno_tiny",
            f"benchmark.root={vid4_like_root}",
            f"output_dir={out}",
            "progress=false",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=SUBPROCESS_ENV,
    )
    assert completed.returncode == 0, completed.stderr
    document = json.loads((out / "metrics.json").read_text())
    assert document["model"] == "stno_tiny" and math.isfinite(document["average"]["psnr_y"])
    shutil.rmtree(run_dir, ignore_errors=True)
