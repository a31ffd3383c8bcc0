"""The run's log: train.log holds the run's lines; progress for a non-terminal is a few short
lines; Lightning's tips and known harmless warnings do not appear."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from stno.cli.train import train
from stno.lit.callbacks import LogProgressBar, progress_bar

TINY_RUN = [
    "trainer=cpu",
    "trainer.val_check_interval=2",
    "trainer.limit_val_batches=1",
    "data.batch_size=2",
    "data.train_dataset.lr_patch=8",
    "data.val_dataset.lr_patch=12",
    "data.num_workers=0",
]


def test_progress_is_log_lines_when_the_output_is_not_a_terminal(train_config, caplog):
    assert isinstance(progress_bar(), LogProgressBar)  # pytest captures stderr: not a tty
    with caplog.at_level(logging.INFO, logger="stno.train"):
        train(
            train_config(
                [*TINY_RUN, "trainer.max_steps=4", "callbacks.progress_bar.log_interval_s=1000"]
            )
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "stno.train"]
    # The interval is long: only the final step's line, and one line per validation.
    steps = [line for line in lines if line.startswith("step ")]
    assert len(steps) == 1 and steps[0].startswith("step 4/4: train/loss "), lines
    validations = [line for line in lines if line.startswith("validation at step")]
    assert [line.split(":")[0] for line in validations] == [
        "validation at step 2",
        "validation at step 4",
    ]


@pytest.mark.slow
def test_train_log_holds_the_run_and_known_noise_is_gone(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "stno.cli.train", f"hydra.run.dir={run_dir}", *TINY_RUN]
    env = dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS="1")
    first = subprocess.run(
        [*command, "trainer.max_steps=4"], env=env, capture_output=True, text=True, timeout=300
    )
    assert first.returncode == 0, first.stderr[-3000:]
    second = subprocess.run(
        [*command, "trainer.max_steps=6"], env=env, capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stderr[-3000:]
    log = (run_dir / "train.log").read_text()
    for expected in ("GPU available", "Last checkpoint:", "Final validation Y-PSNR", "step 6/6"):
        assert expected in log
    assert "Resuming from" in log and "(global step 4)" in log
    output = first.stdout + first.stderr + second.stdout + second.stderr
    for noise in ("Tip:", "LeafSpec", "100% of the batches", "exists and is not empty"):
        assert noise not in output, noise
    # No progress bar redraws: every line is short.
    assert max(len(line) for line in output.splitlines()) < 300
