"""Training order and augmentation draws that a resumed run reproduces exactly.

The training sampler shuffles with a permutation seeded by ``(seed, epoch)``, takes this
process's share under DDP, and hands each index to the dataset as a :class:`SeededIndex`:
an ``int`` that also carries the seed of that sample's random draws (crop, flips, reversal),
a pure function of ``(seed, epoch, rank, index)``. So the draws do not depend on which
DataLoader worker loads a sample, nor on how many batches ran before in this process, and a
run resumed from a checkpoint (which stores the epoch and the batches already trained on, see
:class:`ResumableSampler`) sees the same batches as a run that was never interrupted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import numpy as np
import torch
from torch.utils.data import DistributedSampler

__all__ = ["SeededIndex", "ResumableSampler", "draw_seed", "sample_generator"]


def draw_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from non-negative integers (e.g. seed, epoch, rank, index)."""
    state = np.random.SeedSequence([int(key) % (2**63) for key in keys]).generate_state(
        1, np.uint64
    )
    return int(state[0]) >> 1


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
