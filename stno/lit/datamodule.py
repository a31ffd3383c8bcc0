"""The DataModule: train/val clip datasets -> seeded DataLoaders of `collate_clips` batches."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from stno.data.sampling import ResumableSampler, loader_generator, seed_worker
from stno.errors import ConfigError


def _rng_states() -> dict[str, Any]:
    """torch (CPU and CUDA), NumPy and `random` states as plain values (safe-loadable)."""
    numpy_state = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": [
            numpy_state[0],
            torch.from_numpy(numpy_state[1].astype(np.int64)),
            *numpy_state[2:],
        ],
        "python": list(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, key, *rest = states["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), *rest))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ClipDataModule(pl.LightningDataModule):
    """Serves training and validation clips (`stno.data` clip datasets) as batches.

    The datasets are built in `setup` from frame sources: `train_dataset(source=...)` on the
    training part and `val_dataset(source=...)` on the validation part, where the validation
    part is `val_source` if given, else the last `val_fraction` of `source`
    (`stno.data.split_sequences`: whole sequences when there are several, else the last frames).

    Args:
        source: frame source of the training clips (`stno.data.FrameFolderSource`, ...).
        root, val_root, exclude: what the configs build their sources from (kept for reference).
        train_dataset: factory `train_dataset(source=...)` (a Hydra `_partial_` of
            `FixedScaleClipDataset` / `ContinuousClipDataset`), or a ready dataset; None when
            only validating.
        val_dataset: factory or dataset of validation clips (deterministic); None: no validation.
        val_source: frame source of the validation clips (e.g. a test list); None: split `source`.
        val_fraction: share of `source` held out for validation when `val_source` is None.
        batch_size: clips per training batch (per process under DDP).
        val_batch_size: clips per validation batch.
        num_workers: DataLoader worker processes (0: load in the main process).
        pin_memory: pin host memory (useful on GPU).
        seed: seed of the training order, of the augmentation draws and of the worker seeds
            (`stno.data.sampling`: a resumed run draws exactly what an uninterrupted one would,
            and every DDP rank draws its own).
    """

    def __init__(
        self,
        source: Any = None,
        root: Any = None,
        train_dataset: Any = None,
        val_dataset: Any = None,
        val_source: Any = None,
        val_fraction: float = 0.2,
        batch_size: int = 4,
        val_batch_size: int = 1,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 0,
        val_root: Any = None,
        exclude: Any = None,
    ) -> None:
        super().__init__()
        if batch_size < 1 or val_batch_size < 1:
            raise ConfigError(f"batch sizes must be >= 1, got {batch_size} and {val_batch_size}")
        if num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
        self.source = source
        self.root = root
        self.val_root = val_root
        self.exclude = exclude
        self.val_source = val_source
        self.val_fraction = val_fraction
        self._train_factory = train_dataset
        self._val_factory = val_dataset
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.seed = seed
        self._resume_position: tuple[int, int] | None = None

    def _split_sources(self) -> tuple[Any, Any]:
        if self.val_source is not None or self._val_factory is None or self.source is None:
            return self.source, self.val_source
        from stno.data import split_sequences

        return split_sequences(self.source, val_fraction=self.val_fraction)

    @staticmethod
    def _build(factory: Any, source: Any) -> Dataset | None:
        if factory is None or isinstance(factory, Dataset):
            return factory
        if source is None:
            raise ConfigError("no frame source configured: set data.source (or data.val_source)")
        return factory(source=source)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None and self.val_dataset is not None:
            return
        train_source, val_source = self._split_sources()
        if self.train_dataset is None and stage in (None, "fit"):
            self.train_dataset = self._build(self._train_factory, train_source)
        if self.val_dataset is None and stage in (None, "fit", "validate"):
            self.val_dataset = self._build(self._val_factory, val_source)

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        from stno.data import collate_clips

        sampler = self._train_sampler(dataset, batch_size) if shuffle else None
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            drop_last=shuffle,
            # Continuous datasets draw one scale and one set of timestamps per batch in collate.
            collate_fn=getattr(dataset, "collate_fn", None) or collate_clips,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            # Worker seeds differ per rank and worker (`stno.data.sampling`).
            worker_init_fn=seed_worker,
            generator=loader_generator(self.seed, self._rank()),
            persistent_workers=self.num_workers > 0,
        )

    def _rank(self) -> int:
        return self.trainer.global_rank if self.trainer is not None else 0

    def _train_sampler(self, dataset: Dataset, batch_size: int) -> ResumableSampler:
        """The training order of this process (its DDP share), at the resumed position if any."""
        trainer = self.trainer
        sampler = ResumableSampler(
            dataset,
            batch_size=batch_size,
            seed=self.seed,
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=self._rank(),
        )
        if self._resume_position is not None:
            # Lightning creates the loader's iterator before it sets the sampler's epoch: set it here.
            sampler.resume_at(*self._resume_position)
            self._resume_position = None
        return sampler

    def state_dict(self) -> dict[str, Any]:
        """Where training stands in the data (epoch, batches of it trained on) and the RNG states.

        Saved in every checkpoint, so that a resumed run draws the same batches, crops and flips
        (see `stno.data.sampling`) and the same global random numbers as an uninterrupted run.
        """
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        return {
            "epoch": int(trainer.current_epoch),
            "batches_done": int(trainer.fit_loop.epoch_loop.batch_progress.current.processed),
            "rng": _rng_states(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "epoch" in state_dict:
            self._resume_position = (int(state_dict["epoch"]), int(state_dict["batches_done"]))
        if "rng" in state_dict:
            _set_rng_states(state_dict["rng"])

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise ConfigError("no training data configured: set data.train_dataset")
        if len(self.train_dataset) < self.batch_size:
            raise ConfigError(
                f"the training set has {len(self.train_dataset)} clips, fewer than "
                f"data.batch_size={self.batch_size}: lower the batch size or add data"
            )
        return self._loader(self.train_dataset, self.batch_size, shuffle=True)

    def val_dataloader(self) -> Any:
        if self.val_dataset is None:
            return []
        return self._loader(self.val_dataset, self.val_batch_size, shuffle=False)
