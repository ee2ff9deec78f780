"""Epoch-seeded example order, optionally grouped by length to cut padding on CPU."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class EpochShuffleSampler(Sampler[int]):
    """A permutation fixed by ``(seed, epoch)``, so a resumed run replays the same order.

    With ``group_size > 1`` the permutation is cut into chunks of ``group_size`` examples and
    each chunk is sorted by length (longest first): consecutive batches then hold sentences of
    similar length while every epoch still sees all examples in a fresh random order.
    Accelerate calls ``set_epoch`` through the prepared data loader.
    """

    def __init__(self, lengths: Sequence[int], seed: int, group_size: int = 1) -> None:
        self.lengths = list(lengths)
        self.seed = seed
        self.group_size = group_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        if self.group_size <= 1:
            return iter(order)
        grouped: list[int] = []
        for start in range(0, len(order), self.group_size):
            chunk = order[start : start + self.group_size]
            grouped.extend(sorted(chunk, key=lambda i: -self.lengths[i]))
        return iter(grouped)
