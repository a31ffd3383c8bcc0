"""Training runs of the real configs on CPU: fast dev run, checkpoints, resume, stno-train itself."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stno.cli.train import train
from stno.lit import AtomicCheckpointIO, STNOLitModule, charbonnier_loss

# Tiny crops and batches so a CPU runs a training step in well under a second.
TINY_DATA = [
    "data.batch_size=2",
    "data.val_batch_size=1",
    "data.train_dataset.lr_patch=8",
    "data.val_dataset.lr_patch=12",
    "data.num_workers=0",
]
PLAIN_TYPES = (dict, list, str, int, float, bool, type(None))


def _assert_plain(value, where="hyper_parameters"):
    assert isinstance(value, PLAIN_TYPES), f"{where} holds a {type(value).__name__}"
    if isinstance(value, dict):
        for key, item in value.items():
            _assert_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _assert_plain(item, f"{where}[{index}]")


def _csv_rows(output_dir: Path, column: str) -> list[tuple[int, float]]:
    rows = []
    for path in sorted((output_dir / "csv").rglob("metrics.csv")):
        with open(path) as handle:
            rows += [
                (int(r["step"]), float(r[column])) for r in csv.DictReader(handle) if r.get(column)
            ]
    return rows


def test_charbonnier_loss_equals_the_formula():
    prediction, target = torch.rand(2, 3, 3, 5, 7), torch.rand(2, 3, 3, 5, 7)
    expected = torch.sqrt((prediction - target) ** 2 + 1e-6).mean()
    assert charbonnier_loss(prediction, target, 1e-3).item() == pytest.approx(
        expected.item(), rel=1e-6
    )
    # Equal images cost exactly eps per element.
    assert charbonnier_loss(target, target, 1e-3).item() == pytest.approx(1e-3, rel=1e-5)


def test_atomic_checkpoint_io_keeps_the_old_file_when_saving_fails(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1}, path)
    assert torch.load(path, weights_only=True) == {"global_step": 1}

    def broken_save(obj, file, *args, **kwargs):
        Path(file).write_bytes(b"torn")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"global_step": 2}, path)
    assert torch.load(path, weights_only=True) == {"global_step": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_fast_dev_run_trains_on_cpu(train_config, tmp_path):
    cfg = train_config(["debug=fdr", *TINY_DATA])
    metrics = train(cfg)
    assert math.isfinite(metrics["val/psnr_y"]) and math.isfinite(metrics["val/bicubic_psnr_y"])
    assert metrics["val/gain_psnr_y"] == pytest.approx(
        metrics["val/psnr_y"] - metrics["val/bicubic_psnr_y"], abs=1e-4
    )
    assert 0 < metrics["val/ssim_y"] <= 1


def test_bicubic_blend_validates_without_training(train_config, capsys):
    metrics = train(
        train_config(["model=bicubic_blend", "trainer.limit_val_batches=1", *TINY_DATA])
    )
    # The model is the baseline, so it gains exactly nothing over it.
    assert metrics["val/gain_psnr_y"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["val/psnr_y"] > 10
    assert "no trainable parameters: skipping training" in capsys.readouterr().out


def _short_run(train_config, output_dir: Path, max_steps: int, extra=()) -> dict:
    return train(
        train_config(
            [
                "trainer=cpu",
                f"trainer.max_steps={max_steps}",
                "trainer.val_check_interval=2",
                "trainer.limit_val_batches=1",
                "trainer.log_every_n_steps=1",
                "callbacks.last_checkpoint.every_n_train_steps=1",
                *TINY_DATA,
                *extra,
            ],
            output_dir=output_dir,
        )
    )


def test_checkpoints_load_safely_with_plain_hyperparameters_and_ema(train_config, tmp_path):
    output_dir = tmp_path / "run"
    _short_run(train_config, output_dir, 2, ["model.ema_decay=0.9", "logger=csv_tensorboard"])
    checkpoints = output_dir / "checkpoints"
    best = sorted(checkpoints.glob("best-*.ckpt"))
    assert (checkpoints / "last.ckpt").is_file() and len(best) == 1
    for path in [checkpoints / "last.ckpt", best[0]]:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        hparams = checkpoint["hyper_parameters"]
        _assert_plain(hparams)
        assert hparams["preset"] == "stno_tiny" and hparams["net"]["_target_"] == "stno.nn.STNO"
        keys = checkpoint["state_dict"].keys()
        assert {k.split(".")[0] for k in keys} <= {"net", "ema"}
        net_keys = sorted(k[4:] for k in keys if k.startswith("net."))
        assert net_keys and net_keys == sorted(k[4:] for k in keys if k.startswith("ema."))
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 2

    # The module rebuilds from the checkpoint alone (the network from hparams["net"]).
    restored = STNOLitModule.load_from_checkpoint(
        checkpoints / "last.ckpt", map_location="cpu", weights_only=True
    )
    assert restored.ema is not None
    # Sample frames (bicubic | model | GT) went to TensorBoard.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(output_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert "val/samples_bicubic_model_gt" in events.Tags()["images"]
    image = events.Images("val/samples_bicubic_model_gt")[0]
    assert image.width == 3 * image.height  # one row: three frames side by side


def test_starting_again_in_the_same_directory_resumes_from_last_ckpt(
    train_config, tmp_path, capsys
):
    output_dir = tmp_path / "run"
    _short_run(train_config, output_dir, 3)  # a run "stopped" after 3 steps
    assert (
        torch.load(output_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
    )
    capsys.readouterr()

    _short_run(train_config, output_dir, 5)
    out = capsys.readouterr().out
    assert f"Resuming from {output_dir / 'checkpoints' / 'last.ckpt'} (global step 3)" in out
    assert (
        torch.load(output_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 5
    )
    # Steps 4 and 5 ran in the second run; steps 1..3 were not trained again.
    losses = _csv_rows(output_dir, "train/loss")
    assert sorted(step for step, _ in losses) == [0, 1, 2, 3, 4]


def test_a_resume_with_other_checkpoint_settings_still_writes_last_ckpt(train_config, tmp_path):
    output_dir = tmp_path / "run"
    _short_run(train_config, output_dir, 2)  # last.ckpt every step
    every_third = ["trainer=cpu", "trainer.max_steps=3", *TINY_DATA]
    every_third.append("callbacks.last_checkpoint.every_n_train_steps=3")
    train(train_config(every_third, output_dir=output_dir))
    checkpoints = output_dir / "checkpoints"
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 3
    assert not list(checkpoints.glob("last-v*.ckpt"))


@pytest.mark.slow
def test_forty_steps_of_stno_tiny_lower_the_training_loss(train_config, tmp_path):
    output_dir = tmp_path / "run"
    train(
        train_config(
            [
                "trainer=cpu",
                "trainer.max_steps=40",
                "trainer.val_check_interval=40",
                "trainer.limit_val_batches=1",
                "trainer.log_every_n_steps=1",
                "model.optimizer.lr=1e-3",
                "data.val_dataset.lr_patch=16",
                "data.batch_size=4",
                "data.num_workers=0",
            ],
            output_dir=output_dir,
        )
    )
    losses = [loss for _, loss in sorted(_csv_rows(output_dir, "train/loss"))]
    assert len(losses) == 40
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.9 * first, f"training loss did not fall: {first:.4f} -> {last:.4f}"


def _stno_train(args, cwd, timeout=300):
    env = dict(os.environ, WANDB_MODE="offline")
    script = Path(sys.executable).parent / "stno-train"  # the installed console script
    command = (
        [str(script), *args]
        if script.is_file()
        else [sys.executable, "-m", "stno.cli.train", *args]
    )
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_stno_train_reports_a_missing_data_path_in_one_line(tmp_path):
    result = _stno_train(
        ["data=frames", f"data.root={tmp_path / 'missing'}", f"hydra.run.dir={tmp_path / 'run'}"],
        tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert (
        len(errors) == 1 and errors[0].startswith("stno-train: error: ") and "missing" in errors[0]
    )


@pytest.mark.slow
def test_stno_train_command_runs_fdr_and_prints_both_psnrs(tmp_path):
    result = _stno_train(["debug=fdr", *TINY_DATA, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Final validation Y-PSNR of stno_tiny:" in result.stdout
    assert "Final validation Y-PSNR of bicubic_blend:" in result.stdout
    assert (tmp_path / "run" / ".hydra" / "config.yaml").is_file()
