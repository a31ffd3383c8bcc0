"""Exact resume: a run stopped (or killed with SIGKILL) and resumed ends with the same weights
as a run that was never interrupted, also with DataLoader workers; the final step is always
in last.ckpt."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from stno.cli.train import train
from stno.data.sampling import ResumableSampler, SeededIndex
from stno.io.checkpoint import atomic_torch_save, remove_orphan_temporaries

TINY_DATA = [
    "data.batch_size=2",
    "data.val_batch_size=1",
    "data.train_dataset.lr_patch=8",
    "data.val_dataset.lr_patch=12",
]


def _overrides(max_steps: int, every: int, workers: int = 0, val_every: int = 1000) -> list[str]:
    return [
        f"trainer.max_steps={max_steps}",
        f"trainer.val_check_interval={val_every}",
        "trainer.limit_val_batches=1",
        "trainer.log_every_n_steps=1",
        f"callbacks.last_checkpoint.every_n_train_steps={every}",
        "logger=csv",
        *TINY_DATA,
        f"data.num_workers={workers}",
    ]


def _weights(run_dir: Path) -> tuple[int, dict[str, torch.Tensor]]:
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    return checkpoint["global_step"], checkpoint["state_dict"]


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


def test_sampler_skips_the_batches_already_trained_on_and_carries_seeds():
    dataset = range(10)
    full = list(ResumableSampler(dataset, batch_size=2, seed=3))
    assert sorted(full) == list(range(10)) and all(isinstance(i, SeededIndex) for i in full)
    resumed = ResumableSampler(dataset, batch_size=2, seed=3)
    resumed.resume_at(0, 2)
    rest = list(resumed)
    assert rest == full[4:] and [i.seed for i in rest] == [i.seed for i in full[4:]]
    assert list(resumed) == full  # the skip applies once
    # Another epoch: another order and other draws for the same index.
    resumed.set_epoch(1)
    next_epoch = list(resumed)
    assert next_epoch != full
    seeds = {int(i): i.seed for i in full}
    assert all(seeds[int(i)] != i.seed for i in next_epoch)
    # Past the end of an epoch: the next epoch from its start.
    ended = ResumableSampler(dataset, batch_size=2, seed=3)
    ended.resume_at(0, 5)
    assert list(ended) == next_epoch


def test_ddp_ranks_get_their_own_samples_and_draws():
    ranks = [ResumableSampler(range(9), 2, seed=0, num_replicas=2, rank=r) for r in (0, 1)]
    first, second = (list(sampler) for sampler in ranks)
    assert len(first) == len(second) == 5
    assert set(first) | set(second) == set(range(9))
    assert {i.seed for i in first}.isdisjoint({i.seed for i in second})


def test_stopped_and_resumed_run_matches_an_uninterrupted_one(train_config, tmp_path):
    # 21 training batches per epoch: stop inside the first epoch, end inside the second.
    # The learning-rate schedule spans 24 steps in both runs (its length follows max_steps).
    schedule = ["model.scheduler.T_max=24"]
    uninterrupted, resumed = tmp_path / "uninterrupted", tmp_path / "resumed"
    cpu = ["trainer=cpu", *schedule]
    train(train_config(_overrides(24, every=5) + cpu, output_dir=uninterrupted))
    train(train_config(_overrides(12, every=5) + cpu, output_dir=resumed))
    assert _weights(resumed)[0] == 12  # the final step, not the last multiple of 5
    train(train_config(_overrides(24, every=5) + cpu, output_dir=resumed))
    step_a, weights_a = _weights(uninterrupted)
    step_b, weights_b = _weights(resumed)
    assert step_a == step_b == 24
    _assert_same_weights(weights_a, weights_b)


def test_last_checkpoint_holds_the_final_step(train_config, tmp_path, capsys):
    run_dir = tmp_path / "run"
    orphan = run_dir / "checkpoints" / ".last.ckpt.999999999.tmp"  # left by a killed writer
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"torn")
    train(train_config(_overrides(7, every=5) + ["trainer=cpu"], output_dir=run_dir))
    assert not orphan.exists()
    assert _weights(run_dir)[0] == 7
    assert f"Last checkpoint: {(run_dir / 'checkpoints' / 'last.ckpt').resolve()} (step 7)" in (
        capsys.readouterr().out
    )


def test_checkpoints_reach_the_disk_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append("replace") or real_replace(a, b))
    atomic_torch_save({"global_step": 1}, tmp_path / "last.ckpt")
    assert events[:2] == ["fsync", "replace"]
    live = tmp_path / f".last.ckpt.{os.getppid()}.tmp"  # a writer that is still running
    dead = tmp_path / ".best.ckpt.999999999.tmp"
    live.write_bytes(b"")
    dead.write_bytes(b"")
    assert remove_orphan_temporaries(tmp_path) == [dead]
    assert live.exists() and (tmp_path / "last.ckpt").exists()


@pytest.mark.slow
def test_ddp_run_stopped_and_resumed_matches_an_uninterrupted_one(train_config, tmp_path):
    # Validation at the final steps: no validation after training, which with ddp_spawn and
    # the CSV logger fails in Lightning's CSV writer (also before this change).
    ddp = ["trainer=ddp_cpu", "model.scheduler.T_max=8"]
    uninterrupted, resumed = tmp_path / "uninterrupted", tmp_path / "resumed"
    train(train_config(_overrides(8, every=3, val_every=4) + ddp, output_dir=uninterrupted))
    train(train_config(_overrides(4, every=3, val_every=4) + ddp, output_dir=resumed))
    assert _weights(resumed)[0] == 4
    train(train_config(_overrides(8, every=3, val_every=4) + ddp, output_dir=resumed))
    step_a, weights_a = _weights(uninterrupted)
    step_b, weights_b = _weights(resumed)
    assert step_a == step_b == 8
    _assert_same_weights(weights_a, weights_b)


def _command(run_dir: Path, max_steps: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "stno.cli.train",
        f"hydra.run.dir={run_dir}",
        "trainer=cpu",
        *_overrides(max_steps, every=4, workers=workers),
    ]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights_with_workers(tmp_path):
    env = dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS="1")
    max_steps, workers = 30, 2
    uninterrupted, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    done = subprocess.run(
        _command(uninterrupted, max_steps, workers), env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]

    process = subprocess.Popen(
        _command(killed, max_steps, workers),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    # Kill -9 (workers included) once a checkpoint in the second epoch exists.
    while time.monotonic() < deadline and process.poll() is None:
        if last.is_file() and torch.load(last, weights_only=True)["global_step"] >= 24:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = torch.load(last, weights_only=True)["global_step"]
    assert killed_at < max_steps

    resumed = subprocess.run(
        _command(killed, max_steps, workers), env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"global step {killed_at}" in resumed.stdout
    step_a, weights_a = _weights(uninterrupted)
    step_b, weights_b = _weights(killed)
    assert step_a == step_b == max_steps
    _assert_same_weights(weights_a, weights_b)
    assert not list((killed / "checkpoints").glob(".*.tmp"))
