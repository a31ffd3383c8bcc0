"""Training order, augmentation draws and worker seeds: a resumed run reproduces them exactly,
and every DDP rank draws its own.

The training sampler shuffles with a permutation seeded by ``(seed, epoch)``, takes this
process's share under DDP, and hands each index to the dataset as a :class:`SeededIndex`:
an ``int`` that also carries the seed of that sample's random draws (crop, flips, reversal),
a pure function of ``(seed, epoch, rank, index)``. So the draws do not depend on which
DataLoader worker loads a sample, nor on how many batches ran before in this process, and a
run resumed from a checkpoint (which stores the epoch and the batches already trained on, see
:class:`ResumableSampler`) sees the same batches as a run that was never interrupted.

Everything else a DataLoader worker draws follows the worker's seed: the loader's generator
(:func:`loader_generator`, seeded by ``(seed, rank)``) gives worker ``w`` of each loader the
torch seed ``base + w``, :func:`seed_worker` seeds ``random`` and NumPy from it, and
:class:`WorkerGenerator` (the draws of samples indexed by plain ints) from it too, or from
``(seed, rank)`` without workers. So seeds are a function of (seed, epoch, rank, index) per
sample and of (seed, rank, worker) per worker, never the same on two ranks.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sized

import numpy as np
import torch
from torch.utils.data import DistributedSampler, get_worker_info

__all__ = [
    "ResumableSampler",
    "SeededIndex",
    "WorkerGenerator",
    "draw_seed",
    "loader_generator",
    "process_rank",
    "rank_seed",
    "sample_generator",
    "seed_worker",
]


def draw_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from non-negative integers (e.g. seed, epoch, rank, index)."""
    state = np.random.SeedSequence([int(key) % (2**63) for key in keys]).generate_state(
        1, np.uint64
    )
    return int(state[0]) >> 1


def process_rank() -> int:
    """This process's rank under ``torch.distributed`` (0 outside DDP)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return int(torch.distributed.get_rank())
    return 0


def rank_seed(seed: int, rank: int) -> int:
    """The seed of process ``rank``: ``seed`` itself on rank 0 (a single-process run keeps its
    numbers), a well-mixed seed of ``(seed, rank)`` on the other ranks."""
    return int(seed) if rank == 0 else draw_seed(seed, rank)


def loader_generator(seed: int, rank: int = 0) -> torch.Generator:
    """The generator of a DataLoader of process ``rank``: it draws the base seed of the loader's
    workers (worker ``w`` gets ``base + w``), so no two ranks' workers share a seed."""
    return torch.Generator().manual_seed(rank_seed(seed, rank))


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed ``random`` and NumPy from the worker's torch seed."""
    seed = torch.initial_seed() % (2**32)
    random.seed(seed)
    np.random.seed(seed)


class WorkerGenerator:
    """A torch.Generator re-seeded whenever it finds itself in a new DataLoader worker: from the
    worker's seed, or without workers from ``seed`` (default ``torch.initial_seed()``) and the
    process's DDP rank (:func:`rank_seed`)."""

    def __init__(self, seed: int | None, offset: int = 0) -> None:
        self.seed = seed
        self.offset = offset  # decorrelates two generators living in the same worker
        self._generator: torch.Generator | None = None
        self._seeded_with: int | None = None

    def get(self) -> torch.Generator:
        info = get_worker_info()
        if info is not None:
            seed = info.seed
        else:
            base = self.seed if self.seed is not None else torch.initial_seed()
            seed = rank_seed(base, process_rank())
        if self._generator is None or self._seeded_with != seed:
            self._generator = torch.Generator().manual_seed((seed + self.offset) % (2**63))
            self._seeded_with = seed
        return self._generator

    def __getstate__(self) -> dict:
        # A generator is not picklable (spawned workers); each worker makes its own.
        return {"seed": self.seed, "offset": self.offset, "_generator": None, "_seeded_with": None}


class SeededIndex(int):
    """A dataset index that carries the seed of the sample's random draws (``.seed``)."""

    seed: int

    def __new__(cls, index: int, seed: int) -> SeededIndex:
        value = super().__new__(cls, index)
        value.seed = int(seed)
        return value

    def __reduce__(self):  # DataLoader workers receive indices pickled
        return SeededIndex, (int(self), self.seed)

    def __repr__(self) -> str:
        return f"SeededIndex({int(self)}, seed={self.seed})"


def sample_generator(index: int) -> torch.Generator | None:
    """The generator of a sample's draws when its index is a :class:`SeededIndex`, else None."""
    seed = getattr(index, "seed", None)
    return None if seed is None else torch.Generator().manual_seed(seed)


class ResumableSampler(DistributedSampler):
    """Shuffled training indices for one process, resumable mid-epoch.

    A ``DistributedSampler`` (so Lightning leaves it in place under DDP) with ``num_replicas=1``
    outside DDP. Each index comes as a :class:`SeededIndex`. After
    ``resume_at(epoch, batches)`` the next iteration over ``epoch`` skips the first ``batches``
    batches, those the checkpoint's weights were already trained on.

    Args:
        dataset: the training dataset (only its length is used).
        batch_size: batch size of the DataLoader (to skip whole batches).
        seed: seed of the permutations and of the draws.
        num_replicas, rank: DDP world size and this process's rank.
    """

    def __init__(
        self, dataset: Sized, batch_size: int, seed: int = 0, num_replicas: int = 1, rank: int = 0
    ) -> None:
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False
        )
        self.batch_size = batch_size
        self._skip_epoch: int | None = None
        self._skip_batches = 0

    def resume_at(self, epoch: int, batches: int) -> None:
        """Start at ``epoch`` with its first ``batches`` batches already consumed."""
        batches_per_epoch = self.num_samples // self.batch_size
        if batches_per_epoch and batches >= batches_per_epoch:
            epoch, batches = epoch + batches // batches_per_epoch, batches % batches_per_epoch
        self.set_epoch(epoch)
        self._skip_epoch, self._skip_batches = epoch, batches

    def __iter__(self) -> Iterator[SeededIndex]:
        indices = list(super().__iter__())
        epoch = self.epoch
        if self._skip_epoch == epoch:
            indices = indices[self._skip_batches * self.batch_size :]
        self._skip_epoch = None  # skip once: the next pass over this epoch is a full one
        for index in indices:
            yield SeededIndex(index, draw_seed(self.seed, epoch, self.rank, index))
