"""Training batches of similar token length (train.group_by_length): less padding per batch, same rows per epoch.

    make train EXP=exp001 ARGS="train.group_by_length=true"

Each epoch the rows are shuffled, cut into megabatches of MEGA x batch_size rows, each megabatch is sorted
by token length (longest first) and cut into batches, and the batches are shuffled. Every row is in exactly
one batch per epoch (the last, incomplete batch is dropped as the plain shuffled loader drops it), a batch
holds texts of similar length, so dynamic padding pads less, and the batch order is still random.

When it helps: texts of very different lengths with dynamic padding (most of the step is padding otherwise):
fewer padded tokens, faster epochs. When it hurts: batches are no longer random samples of the data (their
length correlates with their content), which makes the gradient noisier in a way that can cost a little
score; BatchNorm-free transformers mind little. With similar lengths it only changes the order.

Randomness comes from the training loader's torch.Generator only (the one kfold.py seeds with seed + k and
saves in the resume point), so every epoch has its own order, the same seed gives the same orders, and a
resumed run replays them exactly. Under DDP (make train NPROC=n) Accelerate wraps this batch sampler in its
BatchSamplerShard: with split_batches every process takes its slice of the same batch, and every process
draws the same orders from its identically seeded generator.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch

MEGA = 50  # batches per megabatch: sorting reaches this far, shuffling keeps the rest random


class LengthGroupedBatchSampler:
    """A DataLoader batch_sampler: lists of row indices of similar length; len() batches per epoch.
    batch_size and drop_last are attributes Accelerate reads when it shards the batches (split_batches)."""

    def __init__(self, lengths: Sequence[int], batch_size: int, generator: torch.Generator | None,
                 drop_last: bool, mega: int = MEGA):
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.int64)
        self.batch_size, self.drop_last, self.mega = batch_size, drop_last, mega
        self.generator = generator

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def batches(self) -> list[list[int]]:
        """One epoch's batches; every draw happens here, when the epoch's iterator is made."""
        n, bs = len(self.lengths), self.batch_size
        perm = torch.randperm(n, generator=self.generator)
        out: list[list[int]] = []
        for start in range(0, n, self.mega * bs):
            part = perm[start:start + self.mega * bs]
            part = part[torch.argsort(-self.lengths[part], stable=True)]
            out.extend(part[i:i + bs].tolist() for i in range(0, len(part), bs))
        if self.drop_last and out and len(out[-1]) < bs:
            out.pop()
        order = torch.randperm(len(out), generator=self.generator)
        return [out[i] for i in order.tolist()]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())
