"""Sweeps: every job writes result.json; a multirun ends with summary.csv / summary.md."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from test_train import TINY_DATA, _stno_train

from stno.cli.sweep import SweepSummary
from stno.lit.results import collect_results, write_result, write_summary


def _fake_job(sweep_dir: Path, name: str, overrides: list[str], result: dict | None) -> None:
    job = sweep_dir / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {item}\n" for item in overrides))
    if result is not None:
        write_result(job, result)


def test_write_result_is_atomic_json(tmp_path):
    path = write_result(tmp_path / "run", {"best_psnr_y": 21.5, "steps": 3})
    assert json.loads(path.read_text()) == {"best_psnr_y": 21.5, "steps": 3}
    write_result(tmp_path / "run", {"best_psnr_y": 22.0, "steps": 6})
    assert json.loads(path.read_text())["steps"] == 6
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["result.json"]  # no temporary left


def test_summary_has_one_row_per_job_with_the_swept_overrides(tmp_path):
    sweep = tmp_path / "sweep"
    shared = ["experiment=quickstart", "trainer.max_steps=200"]
    _fake_job(
        sweep,
        "0",
        [*shared, "model.optimizer.lr=0.0002"],
        {
            "best_psnr_y": 21.25,
            "bicubic_psnr_y": 20.5,
            "gain_psnr_y": 0.75,
            "final_psnr_y": 21.0,
            "steps": 200,
            "wall_time_s": 61.2,
            "status": "done",
        },
    )
    _fake_job(sweep, "1", [*shared, "model.optimizer.lr=0.001"], None)  # crashed: no result
    _fake_job(
        sweep,
        "10",
        [*shared, "model.optimizer.lr=0.005"],
        {"best_psnr_y": 19.0, "bicubic_psnr_y": 20.5, "gain_psnr_y": -1.5, "steps": 120},
    )
    (sweep / "multirun.yaml").write_text("hydra: {}\n")

    SweepSummary().on_multirun_end(config=_sweep_config(sweep))
    with open(sweep / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["job"] for row in rows] == ["0", "1", "10"]  # numeric order, not 0, 1, 10 by text
    assert [row["overrides"] for row in rows] == [
        "model.optimizer.lr=0.0002",
        "model.optimizer.lr=0.001",
        "model.optimizer.lr=0.005",
    ]
    assert float(rows[0]["best_psnr_y"]) == 21.25 and float(rows[0]["gain_psnr_y"]) == 0.75
    assert rows[0]["steps"] == "200" and float(rows[0]["wall_time_s"]) == pytest.approx(61.2)
    assert rows[1]["status"] == "no result" and rows[1]["best_psnr_y"] == ""
    assert rows[2]["status"] == "done" and rows[2]["final_psnr_y"] == ""

    table = (sweep / "summary.md").read_text().splitlines()
    assert table[0].startswith(
        "| job | overrides | best val Y-PSNR (dB) | bicubic_blend (dB) | gain"
    )
    assert len(table) == 2 + 3
    assert table[2] == (
        "| 0 | `model.optimizer.lr=0.0002` | 21.25 | 20.50 | +0.75 | 21.00 | 200 | 61 | done |"
    )
    assert "| -1.50 |" in table[4]


def test_summary_of_a_single_job_keeps_its_overrides(tmp_path):
    _fake_job(tmp_path, "0", ["model.optimizer.lr=0.001"], {"best_psnr_y": 20.0})
    assert collect_results(tmp_path)[0]["overrides"] == "model.optimizer.lr=0.001"
    csv_path, md_path = write_summary(tmp_path)
    assert csv_path.is_file() and md_path.is_file()


def _sweep_config(sweep_dir: Path):
    from omegaconf import OmegaConf

    return OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}}})


SHORT_RUN = [
    "trainer=cpu",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.limit_val_batches=1",
    "callbacks.last_checkpoint.every_n_train_steps=1",
    "data.val_dataset.lr_patch=8",
    *TINY_DATA,
]


@pytest.mark.slow
def test_two_job_sweep_writes_job_dirs_and_a_summary(tmp_path):
    sweep = tmp_path / "sweep"
    result = _stno_train(
        ["-m", *SHORT_RUN, "model.optimizer.lr=1e-4,2e-4", f"hydra.sweep.dir={sweep}"], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0", "1"):
        last = sweep / job / "checkpoints" / "last.ckpt"
        assert torch.load(last, weights_only=True)["global_step"] == 2
        assert json.loads((sweep / job / "result.json").read_text())["steps"] == 2
    with open(sweep / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["overrides"] for row in rows] == [
        "model.optimizer.lr=0.0001",
        "model.optimizer.lr=0.0002",
    ]
    assert all(row["status"] == "done" and float(row["best_psnr_y"]) > 10 for row in rows)
    assert "Sweep summary:" in result.stdout


def _has_optuna_sweeper() -> bool:
    try:
        return importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(
    not _has_optuna_sweeper(), reason="needs the sweep extra (hydra-optuna-sweeper)"
)
def test_optuna_search_maximises_the_returned_metric(tmp_path):
    sweep = tmp_path / "optuna"
    result = _stno_train(
        [
            "hparams_search=lr_optuna",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.sampler.n_startup_trials=2",
            *SHORT_RUN,
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    best = (sweep / "optimization_results.yaml").read_text()
    values = [json.loads((sweep / job / "result.json").read_text()) for job in ("0", "1")]
    best_value = max(value["final_psnr_y"] for value in values)
    assert (
        f"best_value: {best_value}"[:18] in best
    )  # the sweeper saw the metric stno-train returned
    with open(sweep / "summary.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 2
