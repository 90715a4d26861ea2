"""Batches formed by indexing a tensor that already sits on the training device.

No per-image Python transform and no DataLoader worker in the training loop: a batch is
`images[index]`, binarized on the device when the binarization is dynamic.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor


class TensorBatches:
    """Iterates over (B, C, H, W) float batches of `images`, formed by indexing.

    Args:
        images: (N, C, H, W) intensities in [0, 1] if binarize_each_time, else binary.
        batch_size: images per batch; the last batch may be smaller.
        shuffle: a new permutation each epoch, drawn from `seed` and the epoch number, so a
            resumed run sees the same order as an uninterrupted one.
        binarize_each_time: draw x ~ Bernoulli(images[batch]) for every batch (dynamic).
        rank, world_size: each process of a distributed run takes every world_size-th image of
            the (shuffled) order; a shuffled (training) order is padded by wrapping around so
            every process gets the same number of batches, as DDP requires.
    """

    def __init__(
        self,
        images: Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        binarize_each_time: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.images, self.batch_size = images, batch_size
        self.shuffle, self.binarize_each_time, self.seed = shuffle, binarize_each_time, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        # Lightning calls loader.sampler.set_epoch(epoch) each epoch, and reads batch_sampler
        # from anything that has a sampler.
        self.sampler, self.batch_sampler = self, None
        self._generator = torch.Generator(device=images.device)
        self._yielded = 0  # batches of the current epoch handed out so far
        self._resume_at: tuple[int, int] | None = None  # (epoch, batches already trained on)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    # Lightning saves a loader's state_dict in every checkpoint and hands it back on resume (it
    # fetches no batch ahead of a loader with a length), so a run resumed from a checkpoint written
    # mid-epoch continues with the epoch's next batch, the same as an uninterrupted run.
    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches": self._yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume_at = (state["epoch"], state["batches"])

    def __len__(self) -> int:
        n = len(self.images)
        if self.shuffle:
            n += -n % self.world_size
        return -(-len(range(self.rank, n, self.world_size)) // self.batch_size)

    def __iter__(self) -> Iterator[Tensor]:
        n = len(self.images)
        self._generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        device = self.images.device
        if self.shuffle:
            order = torch.randperm(n, device=device, generator=self._generator)
        else:
            order = torch.arange(n, device=device)
        if self.shuffle and n % self.world_size:
            order = torch.cat([order, order[: self.world_size - n % self.world_size]])
        skip = 0
        if self._resume_at is not None:
            epoch, skip = self._resume_at
            skip = skip if epoch == self.epoch else 0
            self._resume_at = None
        self._yielded = 0
        for index, batch in enumerate(order[self.rank :: self.world_size].split(self.batch_size)):
            x = self.images[batch]  # (B, C, H, W)
            if self.binarize_each_time:
                # x ~ Bernoulli(p) drawn as u < p, u ~ U[0, 1): the same distribution as
                # torch.bernoulli, and faster on a CPU. Drawn for skipped batches too, so that the
                # batches after them get the same draws as in an uninterrupted epoch.
                u = torch.rand(x.shape, dtype=x.dtype, device=device, generator=self._generator)
                x = u.lt_(x)  # (B, C, H, W), 0. or 1.
            self._yielded = index + 1
            if index >= skip:
                yield x
