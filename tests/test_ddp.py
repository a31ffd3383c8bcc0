"""DDP on CPU (`trainer=ddp_cpu`: 2 processes, gloo): the multi-GPU code path, run by the tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from test_train import TINY_DATA, _stno_train

from stno.cli.train import train


class RankProbe(pl.Callback):
    """Test only: each rank writes what it saw to `<folder>/rank<r>.json` (metrics, weights, data)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.first_batch: float | None = None
        self.metrics: dict[str, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first_batch is None:
            self.first_batch = float(batch["hr"].double().sum())

    def on_validation_end(self, trainer, pl_module):
        self.metrics = {
            name: float(value)
            for name, value in trainer.callback_metrics.items()
            if name.startswith("val/")
        }

    def on_train_end(self, trainer, pl_module):
        digest = hashlib.sha256()
        for name, tensor in sorted(pl_module.net.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "step": trainer.global_step,
            "first_batch": self.first_batch,
            "metrics": self.metrics,
            "weights": digest.hexdigest(),
        }
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


SHORT_RUN = [
    "trainer=ddp_cpu",
    "trainer.max_steps=3",
    "trainer.val_check_interval=3",
    "trainer.limit_val_batches=2",
    "trainer.log_every_n_steps=1",
    "callbacks.last_checkpoint.every_n_train_steps=1",
    "data.val_dataset.lr_patch=8",
    *TINY_DATA,
]


def test_ddp_cpu_config_is_two_gloo_processes(train_config):
    trainer = train_config(["trainer=ddp_cpu"]).trainer
    assert (trainer.accelerator, trainer.devices, trainer.strategy) == ("cpu", 2, "ddp_spawn")


@pytest.mark.slow
def test_ddp_cpu_trains_with_synced_metrics_and_equal_weights(train_config, tmp_path):
    output_dir, probe = tmp_path / "run", tmp_path / "probe"
    metrics = train(
        train_config(
            [
                *SHORT_RUN,
                "+callbacks.probe._target_=test_ddp.RankProbe",
                f"+callbacks.probe.folder={probe}",
            ],
            output_dir=output_dir,
        )
    )
    ranks = [json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["step"] for r in ranks] == [3, 3]
    # Distributed sampling: the ranks trained on different clips.
    assert ranks[0]["first_batch"] != ranks[1]["first_batch"]
    # Validation metrics are reduced over both ranks, so both report the same numbers.
    assert ranks[0]["metrics"].keys() >= {"val/psnr_y", "val/bicubic_psnr_y", "val/loss"}
    assert ranks[0]["metrics"] == pytest.approx(ranks[1]["metrics"], abs=1e-6)
    # Gradients are all-reduced: the weights are identical after the run.
    assert ranks[0]["weights"] == ranks[1]["weights"]

    # Files are written once, by rank zero.
    checkpoints = sorted(p.name for p in (output_dir / "checkpoints").iterdir())
    assert len([n for n in checkpoints if n.startswith("last")]) == 1, checkpoints
    assert len([n for n in checkpoints if n.startswith("best-")]) == 1, checkpoints
    assert (
        torch.load(output_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
    )
    result = json.loads((output_dir / "result.json").read_text())
    assert result["steps"] == 3
    assert result["best_psnr_y"] == pytest.approx(ranks[0]["metrics"]["val/psnr_y"], abs=1e-4)
    assert metrics["val/psnr_y"] == pytest.approx(ranks[0]["metrics"]["val/psnr_y"], abs=1e-4)
    assert len(list((output_dir / "csv").rglob("metrics.csv"))) == 1


@pytest.mark.slow
def test_multirun_of_ddp_jobs_makes_one_directory_per_job(tmp_path):
    sweep = tmp_path / "sweep"
    # `strategy=ddp` re-runs the command line in every extra process, which would start the
    # sweep again; stno-train switches multirun jobs to spawned processes.
    result = _stno_train(
        [
            "-m",
            *SHORT_RUN,
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "trainer.strategy=ddp",
            "model.optimizer.lr=1e-4,2e-4",
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trainer.strategy=ddp -> ddp_spawn" in result.stdout
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0", "1"], jobs
    for job in jobs:
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
    summary = (sweep / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + 2
    assert list(tmp_path.glob("multirun")) == [] and list(tmp_path.glob("outputs")) == []


def test_freezing_the_motion_stage_lets_ddp_expect_unused_parameters(train_config):
    from stno.lit.run import prepare_run_config

    cfg = prepare_run_config(train_config(["trainer=ddp_cpu", "model.freeze_motion_steps=5"]))
    assert cfg.trainer.strategy == "ddp_spawn_find_unused_parameters_true"
    cfg = prepare_run_config(train_config(["trainer=ddp", "model.freeze_motion_steps=5"]))
    assert cfg.trainer.strategy == "ddp_find_unused_parameters_true"
    assert prepare_run_config(train_config(["trainer=ddp"])).trainer.strategy == "ddp"
