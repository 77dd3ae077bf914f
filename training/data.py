"""Data for training: a shuffled order that can resume mid-epoch, and bounded skipping.

The order of an epoch is a permutation drawn from ``(seed, epoch)`` alone, split between ranks
as DistributedSampler does (padded to a multiple of the world size, every rank taking each
world-size-th index), so a run resumed at (epoch, batch) sees exactly the batches the
uninterrupted run would have seen, on every rank. The loader draws nothing from the global RNG.

A sample whose files cannot be read (DataError) is replaced by a :class:`Skipped` marker
naming the error, so the main process sees it even from worker processes; the trainer counts
skips and stops after ``max_consecutive_bad_samples`` in a row (a dataset whose images were
never unpacked fails in seconds, naming the first missing file, instead of logging forever).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from occvla_ros.errors import DataError
from training.settings import TrainingSettings

logger = logging.getLogger(__name__)


class ResumableSampler(Sampler[int]):
    """This rank's indices of epoch ``epoch``'s permutation, from index ``start`` on."""

    def __init__(self, size: int, *, seed: int, rank: int, world_size: int, shuffle: bool):
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.shuffle = shuffle
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def _indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        per_rank = -(-self.size // self.world_size)
        order += order[: per_rank * self.world_size - self.size]  # pad as DistributedSampler
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.start :])

    def __len__(self) -> int:
        return max(0, -(-self.size // self.world_size) - self.start)


@dataclass
class Skipped:
    """A sample that could not be read, and why."""

    reason: str


class GuardedDataset(Dataset):
    """Returns :class:`Skipped` instead of raising DataError for an unreadable sample."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            return self.dataset[index]
        except DataError as error:
            return Skipped(str(error))

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


@dataclass
class Batch:
    samples: dict | None  # the stage's collated batch; None when every sample was skipped
    skipped: list[str] = field(default_factory=list)  # reasons, in sample order


class GuardedCollate:
    """The stage's collate over the readable samples; skipped ones are reported alongside."""

    def __init__(self, collate: Callable[[list[dict]], dict]) -> None:
        self.collate = collate

    def __call__(self, samples: list) -> Batch:
        kept = [s for s in samples if not isinstance(s, Skipped)]
        skipped = [s.reason for s in samples if isinstance(s, Skipped)]
        return Batch(self.collate(kept) if kept else None, skipped)


class SkipCounter:
    """Counts unreadable samples; raises DataError after ``limit`` in a row."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self.consecutive = 0
        self.first_reason: str | None = None

    def update(self, batch: Batch) -> None:
        for reason in batch.skipped:
            self.total += 1
            self.consecutive += 1
            if self.consecutive == 1:
                self.first_reason = reason
            logger.warning("skipping a sample (%d so far): %s", self.total, reason)
            if self.consecutive >= self.limit:
                raise DataError(
                    f"{self.consecutive} unreadable samples in a row, the first: "
                    f"{self.first_reason} (are the dataset's sample folders unpacked?)"
                )
        if batch.samples is not None:
            self.consecutive = 0


def probe(dataset: Dataset, limit: int) -> None:
    """Read samples from the start until one is usable; DataError after ``limit`` that are not.

    Run before the model is built, so a dataset without its image files fails in seconds.
    """
    counter = SkipCounter(limit)
    for index in range(min(limit, len(dataset))):
        try:
            dataset[index]
            return
        except DataError as error:
            counter.update(Batch(None, [str(error)]))
    if counter.first_reason is not None:
        raise DataError(
            f"none of the {counter.total} samples read is usable, the first: {counter.first_reason}"
        )


def make_loader(
    dataset: Dataset,
    sampler: ResumableSampler,
    collate: Callable[[list[dict]], dict],
    settings: TrainingSettings,
) -> DataLoader:
    return DataLoader(
        GuardedDataset(dataset),
        batch_size=settings.batch_size,
        sampler=sampler,
        num_workers=settings.num_workers,
        collate_fn=GuardedCollate(collate),
        drop_last=False,
        # Its own generator: creating an iterator must not draw from the global RNG (resume).
        generator=torch.Generator().manual_seed(sampler.seed),
    )


class EpochCursor:
    """Endless batches over epochs, with the position (epoch, batches taken) to resume from."""

    def __init__(self, loader: DataLoader, sampler: ResumableSampler, batch_size: int) -> None:
        self.loader, self.sampler, self.batch_size = loader, sampler, batch_size
        self.epoch, self.batch_in_epoch = 0, 0

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}

    def restore(self, state: dict[str, int]) -> None:
        self.epoch, self.batch_in_epoch = int(state["epoch"]), int(state["batch_in_epoch"])

    def __iter__(self) -> Iterator[Batch]:
        while True:
            self.sampler.set_position(self.epoch, self.batch_in_epoch * self.batch_size)
            self.loader.dataset.set_epoch(self.epoch)
            for batch in self.loader:
                self.batch_in_epoch += 1
                yield batch
            self.epoch += 1
            self.batch_in_epoch = 0
