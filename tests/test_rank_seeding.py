"""Seeds per DDP rank: two ranks never repeat each other's random draws (crops, flips, scales,
timestamps), for samples of the training sampler, samples indexed by plain ints in DataLoader
workers, and without workers; one rank's draws stay reproducible."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from data_helpers import TensorSource, moving_square

import stno.data.sampling as sampling
from stno.data import ContinuousClipDataset
from stno.data.sampling import WorkerGenerator, loader_generator, rank_seed
from stno.lit.datamodule import ClipDataModule


def _dataset(num_frames: int = 9) -> ContinuousClipDataset:
    source = TensorSource({"clip": moving_square(num_frames, 40, 40)})
    return ContinuousClipDataset(source, window=9, scale_range=(1, 4), lr_patch=8, seed=3)


def _first_batch(rank: int, shuffle: bool, num_workers: int = 0) -> dict:
    module = ClipDataModule(train_dataset=_dataset(), batch_size=1, num_workers=num_workers)
    module.trainer = SimpleNamespace(world_size=2, global_rank=rank)
    module.setup("fit")
    if shuffle:
        loader = module.train_dataloader()
    else:  # plain int indices: the draws come from the worker's generator
        loader = module._loader(module.train_dataset, 1, shuffle=False)
    return next(iter(loader))


def _same_draws(a: dict, b: dict) -> bool:
    return a["scale"] == b["scale"] and torch.equal(a["hr"], b["hr"])


def test_seeds_are_a_function_of_the_rank():
    assert rank_seed(7, 0) == 7  # a single-process run keeps its numbers
    assert len({rank_seed(7, rank) for rank in range(4)}) == 4
    seeds = {loader_generator(7, rank).initial_seed() for rank in range(4)}
    assert len(seeds) == 4


@pytest.mark.parametrize("shuffle", [True, False], ids=["sampler", "plain-index"])
def test_two_ranks_draw_different_augmentations_and_scales_of_one_clip(shuffle):
    # The source holds one window: both ranks load clip 0 (the sampler pads rank 1's share).
    rank0, rank1 = (_first_batch(rank, shuffle, num_workers=0 if shuffle else 1) for rank in (0, 1))
    assert (rank0["name"], rank0["start"]) == (rank1["name"], rank1["start"]) == (["clip"], [0])
    assert not _same_draws(rank0, rank1)
    assert _same_draws(rank0, _first_batch(0, shuffle, num_workers=0 if shuffle else 1))


def test_without_workers_the_generator_depends_on_the_rank(monkeypatch):
    def draws(rank: int) -> torch.Tensor:
        monkeypatch.setattr(sampling, "process_rank", lambda: rank)
        return torch.rand(4, generator=WorkerGenerator(5).get())

    assert torch.equal(draws(0), torch.rand(4, generator=torch.Generator().manual_seed(5)))
    assert not torch.equal(draws(0), draws(1))


class SampleProbe(pl.Callback):
    """Test only: each rank writes its loader's seed and every batch it trained on."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.batches: list[dict] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches.append(
            {
                "clips": [f"{n}:{s}" for n, s in zip(batch["name"], batch["start"], strict=True)],
                "hr": float(batch["hr"].double().sum()),
                "scale": float(batch["scale"]),
            }
        )

    def on_train_end(self, trainer, pl_module):
        record = {
            "loader_seed": trainer.train_dataloader.generator.initial_seed(),
            "batches": self.batches,
        }
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


@pytest.mark.slow
def test_ddp_ranks_see_different_samples_and_draws(train_config, tmp_path):
    from test_ddp import SHORT_RUN

    from stno.cli.train import train

    probe = tmp_path / "probe"
    train(
        train_config(
            [
                *SHORT_RUN,
                "+callbacks.probe._target_=test_rank_seeding.SampleProbe",
                f"+callbacks.probe.folder={probe}",
            ],
            output_dir=tmp_path / "run",
        )
    )
    ranks = [json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["loader_seed"] != ranks[1]["loader_seed"]
    batches = [r["batches"] for r in ranks]
    assert len(batches[0]) == len(batches[1]) == 3
    for step in range(3):  # every step: other clips, or the same clips drawn differently
        assert batches[0][step] != batches[1][step]
    assert {b["hr"] for b in batches[0]}.isdisjoint(b["hr"] for b in batches[1])
