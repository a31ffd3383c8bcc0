"""Bad inputs and faults: one line on stderr naming the input and what to do, exit code 2, and
nothing left behind (no output, no checkpoint, no partial file).

Every case runs in-process through the entry points' error mapping (fast); the slow suite runs
the same table through the real commands (`python -m stno.cli.*`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stno.cli.common import one_line_errors
from stno.io.checkpoint import save_network_checkpoint
from stno.nn import BicubicBlend

TINY_DATA = [
    "data.batch_size=2",
    "data.train_dataset.lr_patch=8",
    "data.val_dataset.lr_patch=12",
    "data.num_workers=0",
]


def _video(path: Path, num_frames: int, height: int = 64, width: int = 96) -> Path:
    """An H.264 mp4 with its index (moov) first, as streaming-friendly files have it."""
    import av

    rng = np.random.default_rng(num_frames)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
        for _ in range(num_frames):
            image = (rng.random((height, width, 3)) * 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def _frames(folder: Path, sizes: list[tuple[int, int]]) -> Path:
    folder.mkdir(parents=True)
    for index, (width, height) in enumerate(sizes):
        pixels = np.random.default_rng(index).integers(0, 256, (height, width, 3), np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:03d}.png")
    return folder


class _RunsCode:
    """Unpickling this would run a command (what safe loading must refuse)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad_inputs")
    _video(root / "good.mp4", 12)
    full = _video(root / "full.mp4", 119).read_bytes()
    (root / "truncated.mp4").write_bytes(full[: len(full) // 10])  # cut mid-stream
    _video(root / "five.mp4", 5, 128, 128)
    (root / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    (root / "noise.ckpt").write_bytes(np.random.default_rng(1).bytes(5000))
    _frames(root / "mixed", [(96, 64)] * 6 + [(100, 64)] + [(96, 64)] * 3)
    _frames(root / "mixed_train" / "seq0", [(160, 160)] * 8 + [(176, 160)] * 8)
    _frames(root / "mixed_train" / "seq1", [(160, 160)] * 16)
    _frames(root / "single", [(96, 64)])
    (root / "empty").mkdir()
    torch.save({"state_dict": {}, "x": _RunsCode(root / "PWNED")}, root / "runs_code.ckpt")
    save_network_checkpoint(BicubicBlend(), root / "bicubic.ckpt", preset="bicubic_blend")
    return root


@dataclass
class Case:
    program: str  # infer, eval or train
    args: list[str]  # {in}: the inputs folder, {out}: this case's (empty) output folder
    message: str  # expected in the one line
    output: str | None = None  # a path under {out} that must not exist afterwards
    setup: list[str] = field(default_factory=list)  # "copy SRC DST" (paths as in args)
    env: dict = field(default_factory=dict)


def _infer(*args: str, output: str = "{out}/result.mp4") -> list[str]:
    return [f"output={output}", "preset=bicubic_blend", "space_scale=1", "progress=false", *args]


CASES = {
    # --- stno-infer -------------------------------------------------------------------------
    "infer: truncated video": Case(
        "infer",
        _infer("input={in}/truncated.mp4"),
        "truncated.mp4 ends early at frame",
        "result.mp4",
    ),
    "infer: output exists": Case(
        "infer",
        _infer("input={in}/good.mp4"),
        "result.mp4 already exists; pass overwrite=true",
        setup=["write {out}/result.mp4"],
    ),
    "infer: unwritable output": Case(
        "infer",
        _infer("input={in}/good.mp4", output="/proc/stno_result.mp4"),
        "cannot write /proc/stno_result.mp4",
    ),
    "infer: missing output folder": Case(
        "infer",
        _infer("input={in}/good.mp4", output="{out}/missing/result.mp4"),
        "missing does not exist",
        "missing",
    ),
    "infer: mixed frame sizes": Case(
        "infer",
        _infer("input={in}/mixed"),
        "mixed differ in size: 000.png is 96x64, 006.png is 100x64",
        "result.mp4",
    ),
    "infer: checkpoint that runs code": Case(
        "infer",
        ["input={in}/good.mp4", "output={out}/result.mp4", "ckpt_path={in}/runs_code.ckpt"],
        "holds Python objects (posix.system) that could run code when loaded: safe (weights_only) loading refuses it",
        "result.mp4",
    ),
    "infer: random file as checkpoint": Case(
        "infer",
        ["input={in}/good.mp4", "output={out}/result.mp4", "ckpt_path={in}/noise.ckpt"],
        "noise.ckpt is not a PyTorch checkpoint",
        "result.mp4",
    ),
    "infer: no output=": Case(
        "infer", ["input={in}/good.mp4", "preset=bicubic_blend"], "output= is required"
    ),
    "infer: unreadable video": Case(
        "infer", _infer("input={in}/noise.mp4"), "cannot open video", "result.mp4"
    ),
    "infer: missing input": Case(
        "infer", _infer("input={in}/missing.mp4"), "input not found", "result.mp4"
    ),
    "infer: single frame": Case(
        "infer", _infer("input={in}/single"), "need at least 2 frames", "result.mp4"
    ),
    "infer: empty folder": Case(
        "infer", _infer("input={in}/empty"), "no frame images", "result.mp4"
    ),
    "infer: bad scale": Case(
        "infer",
        _infer("input={in}/good.mp4", "space_scale=0.5"),
        "would shrink the video",
        "result.mp4",
    ),
    "infer: wrong preset": Case(
        "infer",
        ["input={in}/good.mp4", "output={out}/result.mp4"]
        + ["ckpt_path={in}/bicubic.ckpt", "preset=stno_tiny"],
        "preset=stno_tiny was asked for",
        "result.mp4",
    ),
    # --- stno-eval --------------------------------------------------------------------------
    "eval: checkpoint that runs code": Case(
        "eval",
        ["ckpt_path={in}/runs_code.ckpt", "benchmark=video", "benchmark.root={in}/good.mp4"]
        + ["output_dir={out}/eval"],
        "could run code when loaded: safe (weights_only) loading refuses it",
        "eval",
    ),
    # --- stno-train -------------------------------------------------------------------------
    "train: mixed frame sizes": Case(
        "train",
        ["data=frames", "data.root={in}/mixed_train", "debug=fdr"],
        "seq0 differ in size: 000.png is 160x160, 015.png is 176x160",
    ),
    "train: random file as ckpt_path": Case(
        "train", ["debug=fdr", "ckpt_path={in}/noise.ckpt"], "is not a PyTorch checkpoint"
    ),
    "train: ckpt_path runs code": Case(
        "train", ["debug=fdr", "ckpt_path={in}/runs_code.ckpt"], "could run code when loaded"
    ),
    "train: resume runs code": Case(
        "train", ["debug=fdr", "resume={in}/runs_code.ckpt"], "could run code when loaded"
    ),
    "train: auto-resume runs code": Case(
        "train",
        ["debug=limit"],
        "checkpoints/last.ckpt holds Python objects (posix.system) that could run code",
        setup=["copy {in}/runs_code.ckpt {out}/checkpoints/last.ckpt"],
    ),
    "train: init_ckpt runs code": Case(
        "train", ["debug=fdr", "init_ckpt={in}/runs_code.ckpt"], "could run code when loaded"
    ),
    "train: W&B without login": Case(
        "train",
        ["debug=fdr", "logger=wandb"],
        "not logged in to Weights & Biases; run `wandb login`",
        env={"WANDB_MODE": None, "WANDB_API_KEY": None, "NETRC": "{out}/no_netrc"},
    ),
    "train: 5-frame video": Case(
        "train",
        ["data=video", "data.root={in}/five.mp4", "debug=fdr"],
        "'five.mp4' has 5 frames, its training part (frames 0..3",
    ),
    "train: unreadable video": Case(
        "train", ["data=video", "data.root={in}/noise.mp4", "debug=fdr"], "cannot open video"
    ),
    "train: truncated video": Case(
        "train",
        ["data=video", "data.root={in}/truncated.mp4", "debug=fdr"],
        "truncated.mp4 ends early at frame",
    ),
}


def _prepare(case: Case, inputs: Path, out: Path, monkeypatch) -> list[str]:
    def fill(text: str) -> str:
        return text.replace("{in}", str(inputs)).replace("{out}", str(out))

    for step in case.setup:
        action, *paths = fill(step).split()
        if action == "write":
            Path(paths[0]).write_text("precious\n")
        else:
            Path(paths[1]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(paths[0], paths[1])
    for name, value in case.env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, fill(value))
    args = [fill(arg) for arg in case.args]
    if case.program == "train":
        args += TINY_DATA
    return args


def _assert_nothing_left(case: Case, inputs: Path, out: Path) -> None:
    assert not (inputs / "PWNED").exists(), "a checkpoint ran code"
    if case.output:
        assert not (out / case.output).exists()
    for step in case.setup:  # files that were there before are untouched
        if step.startswith("write"):
            assert Path(step.split()[1].replace("{out}", str(out))).read_text() == "precious\n"
    leftovers = [p.name for p in out.rglob("*") if ".tmp" in p.name or ".probe" in p.name]
    assert not leftovers
    if case.program == "train":
        written = {p.name for p in out.iterdir()} - {"checkpoints", ".hydra", "train.log"}
        assert not written, f"a failed run wrote {written}"
        checkpoints = out / "checkpoints"
        if checkpoints.exists():  # only what the case put there
            assert [p.name for p in checkpoints.iterdir()] == ["last.ckpt"]


def _run_in_process(program: str, args: list[str], out: Path) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from stno.io.configs import config_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        if program == "train":
            from stno.cli.train import train

            cfg = compose(config_name="train", overrides=[f"paths.output_dir={out}", *args])
            one_line_errors("stno-train")(train)(cfg)
        else:
            module = __import__(f"stno.cli.{program}", fromlist=["run"])
            module.run(compose(config_name=program, overrides=args))


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_with_exit_code_2(name, inputs, tmp_path, monkeypatch, capsys):
    case = CASES[name]
    out = tmp_path / "out"
    out.mkdir()
    args = _prepare(case, inputs, out, monkeypatch)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        _run_in_process(case.program, args, out)
    err = capsys.readouterr().err
    assert stopped.value.code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"stno-{case.program}: error: "), err
    assert case.message in lines[0], lines[0]
    _assert_nothing_left(case, inputs, out)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_command_prints_one_line(name, inputs, tmp_path, monkeypatch):
    case = CASES[name]
    out = tmp_path / "out"
    out.mkdir()
    args = _prepare(case, inputs, out, monkeypatch)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if case.program == "train":
        args.append(f"hydra.run.dir={out}")
    result = subprocess.run(
        [sys.executable, "-m", f"stno.cli.{case.program}", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"stno-{case.program}: error: "), lines
    assert case.message in lines[0], lines[0]
    _assert_nothing_left(case, inputs, out)


def test_overwrite_true_replaces_an_existing_output(inputs, tmp_path):
    from stno.inference import upscale_video

    output = tmp_path / "result.mp4"
    output.write_text("old\n")
    summary = upscale_video(
        BicubicBlend(), inputs / "good.mp4", output, 1.0, progress=False, overwrite=True
    )
    assert summary["output_frames"] == 23 and output.read_bytes()[:8] != b"old\n"
    folder = tmp_path / "frames"
    upscale_video(BicubicBlend(), inputs / "good.mp4", folder, 1.0, progress=False)
    (folder / "notes.txt").write_text("mine\n")
    with pytest.raises(ValueError, match="holds other files than frame images"):
        upscale_video(
            BicubicBlend(), inputs / "good.mp4", folder, 1.0, progress=False, overwrite=True
        )
    (folder / "notes.txt").unlink()
    upscale_video(
        BicubicBlend(), inputs / "good.mp4", folder, 1.0, 1, progress=False, overwrite=True
    )
    assert len(list(folder.iterdir())) == 12
