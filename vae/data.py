"""Binarized MNIST, held as tensors on the training device.

- Train / validation: the 60k official training images, split by a seeded permutation
  (`split_seed`) into 60k - val_size training and val_size validation images.
- Test: the official 10k test images, untouched.
- Binarization: x ~ Bernoulli(pixel intensity). `dynamic` draws a fresh binarization every
  time a training image is used (the usual choice since Salakhutdinov & Murray 2008);
  `fixed` draws the training set once from `binarization_seed`. Validation and test are
  always binarized once from `binarization_seed`, so their numbers compare across runs.

The images sit on the device as one tensor, and a batch is an index into it: no per-image
Python transform and no DataLoader worker in the training loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor

from vae.validation import require, require_positive_int

MNIST_TRAIN_SIZE = 60_000
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
BINARIZATIONS = ("dynamic", "fixed")


class DataNotFoundError(RuntimeError):
    """MNIST is neither on disk nor downloadable."""


class TensorBatches:
    """Iterates over (B, 1, 28, 28) float batches of `images`, formed by indexing.

    Args:
        images: (N, 1, 28, 28) intensities in [0, 1] if binarize_each_time, else binary.
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

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

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
        for batch in order[self.rank :: self.world_size].split(self.batch_size):
            x = self.images[batch]  # (B, 1, 28, 28)
            if self.binarize_each_time:
                # x ~ Bernoulli(p) drawn as u < p, u ~ U[0, 1): the same distribution as
                # torch.bernoulli, about 3x faster on a CPU (it saves ~0.7 ms per batch of 100 here).
                u = torch.rand(x.shape, dtype=x.dtype, device=device, generator=self._generator)
                x = u.lt_(x)  # (B, 1, 28, 28), 0. or 1.
            yield x


def _binarize(images: Tensor, seed: int) -> Tensor:
    """One fixed Bernoulli draw of (N, 1, 28, 28) intensities, from `seed`."""
    generator = torch.Generator(device=images.device).manual_seed(seed)
    return torch.bernoulli(images, generator=generator)


class MNISTDataModule(L.LightningDataModule):
    def __init__(
        self,
        root: str = "data",
        batch_size: int = 100,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        binarization: str = "dynamic",
        split_seed: int = 0,
        binarization_seed: int = 0,
        shuffle_seed: int = 0,
        download: bool = True,
    ) -> None:
        super().__init__()
        require_positive_int("batch_size", batch_size)
        require_positive_int("eval_batch_size", eval_batch_size)
        require_positive_int("val_size", val_size)
        require(
            val_size < MNIST_TRAIN_SIZE,
            "val_size",
            val_size,
            f"must be < {MNIST_TRAIN_SIZE}, the number of MNIST training images",
        )
        require(binarization in BINARIZATIONS, "binarization", binarization, f"one of {BINARIZATIONS}")
        self.root = Path(root)
        self.batch_size, self.eval_batch_size, self.val_size = batch_size, eval_batch_size, val_size
        self.binarization, self.download = binarization, download
        self.split_seed, self.binarization_seed = split_seed, binarization_seed
        self.shuffle_seed = shuffle_seed
        self.train_images: Tensor | None = None  # (60k - val_size, 1, 28, 28)
        self.val_images: Tensor | None = None  # (val_size, 1, 28, 28), binary
        self.test_images: Tensor | None = None  # (10k, 1, 28, 28), binary

    def _mnist(self, train: bool):
        from torchvision.datasets import MNIST

        return MNIST(str(self.root), train=train, download=False)

    def prepare_data(self) -> None:
        """Download MNIST if it is not on disk; a clear error if that is impossible."""
        from torchvision.datasets import MNIST

        raw = self.root / "MNIST" / "raw"
        if all((raw / name).exists() for name in MNIST_FILES):
            return
        error: Exception | None = None
        if self.download:
            try:
                MNIST(str(self.root), train=True, download=True)
                MNIST(str(self.root), train=False, download=True)
                return
            except Exception as e:  # torchvision raises RuntimeError or URLError offline
                error = e
        reason = f"download failed: {error}" if error else "download=false"
        raise DataNotFoundError(
            f"MNIST not found in {raw.resolve()}/ and {reason}.\n"
            f"Expected files: {', '.join(MNIST_FILES)}.\n"
            "Put them there, or point the run at a folder holding MNIST/raw/ with "
            "data.root=/path/to/folder"
        )

    def split_indices(self) -> tuple[Tensor, Tensor]:
        """Indices into the 60k official training images: (training, validation), from split_seed."""
        order = torch.randperm(MNIST_TRAIN_SIZE, generator=torch.Generator().manual_seed(self.split_seed))
        return order[: -self.val_size], order[-self.val_size :]

    def setup(self, stage: str | None = None) -> None:
        if self.test_images is not None:
            return
        self.prepare_data()  # a no-op when the files are there; the error message otherwise
        device = self.trainer.strategy.root_device if self.trainer is not None else "cpu"
        # (N, 28, 28) uint8 -> (N, 1, 28, 28) float intensities in [0, 1]
        train = self._mnist(train=True).data.unsqueeze(1).to(device, torch.float32) / 255
        test = self._mnist(train=False).data.unsqueeze(1).to(device, torch.float32) / 255

        train_indices, val_indices = (i.to(device) for i in self.split_indices())
        train, val = train[train_indices], train[val_indices]

        self.val_images = _binarize(val, self.binarization_seed)
        self.test_images = _binarize(test, self.binarization_seed + 1)
        if self.binarization == "fixed":
            train = _binarize(train, self.binarization_seed + 2)
        self.train_images = train

    # Saved in every checkpoint (Lightning stores it under "MNISTDataModule"), so evaluation
    # rebuilds the same validation split and the same fixed binarization.
    def state_dict(self) -> dict[str, Any]:
        return {
            "val_size": self.val_size,
            "binarization": self.binarization,
            "split_seed": self.split_seed,
            "binarization_seed": self.binarization_seed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """On resume: the split and binarization must be the ones the checkpoint was trained on."""
        for key, trained_with in state.items():
            now = self.state_dict().get(key)
            require(
                now == trained_with,
                key,
                now,
                f"the checkpoint was trained with {trained_with!r}; resume with the same data settings",
            )

    def _distributed(self) -> dict[str, int]:
        if self.trainer is None:
            return {"rank": 0, "world_size": 1}
        return {"rank": self.trainer.global_rank, "world_size": self.trainer.world_size}

    def train_dataloader(self) -> TensorBatches:
        return TensorBatches(
            self.train_images,
            self.batch_size,
            shuffle=True,
            binarize_each_time=self.binarization == "dynamic",
            seed=self.shuffle_seed,
            **self._distributed(),
        )

    def val_dataloader(self) -> TensorBatches:
        return TensorBatches(self.val_images, self.eval_batch_size, **self._distributed())

    def test_dataloader(self) -> TensorBatches:
        return TensorBatches(self.test_images, self.eval_batch_size, **self._distributed())
