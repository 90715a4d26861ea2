"""Binarized images held as tensors on the training device: what every dataset shares.

- Splits: training, validation and test images, as the dataset defines them (a seeded split of
  the official training images for MNIST and its kin; the official test set untouched).
- Binarization: x ~ Bernoulli(pixel intensity). `dynamic` draws a fresh binarization every
  time a training image is used (the usual choice since Salakhutdinov & Murray 2008); `fixed`
  draws the training set once from `binarization_seed`. Validation and test are always
  binarized once from `binarization_seed`, so their numbers compare across runs. A dataset whose
  files are already binary (binarized_mnist) is used as it is.

A dataset is a subclass that says where its files are (prepare_data), how to read its three
splits (_splits) and the shape of its images (image_shape).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import lightning as L
import torch
from torch import Tensor

from vae.data.batches import TensorBatches
from vae.errors import require, require_positive_int

BINARIZATIONS = ("dynamic", "fixed")


def binarize(images: Tensor, seed: int) -> Tensor:
    """One fixed Bernoulli draw of (N, C, H, W) intensities, from `seed`."""
    generator = torch.Generator(device=images.device).manual_seed(seed)
    return torch.bernoulli(images, generator=generator)


class BinarizedImages(L.LightningDataModule, ABC):
    """Base class of the datasets: binarization, on-device batches, and the resume check.

    Args:
        root: folder holding the dataset's files (data.root=).
        batch_size: training images per step.
        eval_batch_size: images per validation and test batch.
        binarization: dynamic or fixed (see the module docstring).
        binarization_seed: the fixed binarization of validation and test (and of training if fixed).
        shuffle_seed: the training order.
        download: fetch missing files where the network allows.
    """

    image_shape: tuple[int, int, int]  # (C, H, W)
    already_binary = False  # the files hold 0/1 pixels: no binarization is drawn

    def __init__(
        self,
        root: str = "data",
        batch_size: int = 100,
        eval_batch_size: int = 1000,
        binarization: str = "dynamic",
        binarization_seed: int = 0,
        shuffle_seed: int = 0,
        download: bool = True,
    ) -> None:
        super().__init__()
        require_positive_int("batch_size", batch_size)
        require_positive_int("eval_batch_size", eval_batch_size)
        require(binarization in BINARIZATIONS, "binarization", binarization, f"one of {BINARIZATIONS}")
        self.root = root
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.binarization, self.binarization_seed = binarization, binarization_seed
        self.shuffle_seed, self.download = shuffle_seed, download
        self.train_images: Tensor | None = None  # (N_train, C, H, W): intensities, or binary if fixed
        self.val_images: Tensor | None = None  # (N_val, C, H, W), binary
        self.test_images: Tensor | None = None  # (N_test, C, H, W), binary

    @abstractmethod
    def prepare_data(self) -> None:
        """The files on disk (downloaded if allowed and possible), or a DataError saying what is
        missing where and how to point data.root= at it."""

    @property
    @abstractmethod
    def num_train_images(self) -> int:
        """Training images per epoch (known once prepare_data has run; nothing is read)."""

    def train_batches_per_epoch(self, world_size: int = 1) -> int:
        """Optimizer steps in one epoch (each of world_size processes takes every world_size-th image)."""
        per_process = -(-self.num_train_images // world_size)
        return -(-per_process // self.batch_size)

    @abstractmethod
    def _splits(self, device: torch.device | str) -> tuple[Tensor, Tensor, Tensor]:
        """(train, val, test) float intensities in [0, 1], (N, C, H, W) each, on `device`."""

    def train_mean(self) -> Tensor:
        """The training images' mean intensity per pixel, (C, H, W) (reads the files)."""
        return self._splits("cpu")[0].mean(0)

    def setup(self, stage: str | None = None) -> None:
        if self.test_images is not None:
            return
        self.prepare_data()  # a no-op when the files are there; the error message otherwise
        device = self.trainer.strategy.root_device if self.trainer is not None else "cpu"
        train, val, test = self._splits(device)
        if self.already_binary:
            self.train_images, self.val_images, self.test_images = train, val, test
            return
        self.val_images = binarize(val, self.binarization_seed)
        self.test_images = binarize(test, self.binarization_seed + 1)
        if self.binarization == "fixed":
            train = binarize(train, self.binarization_seed + 2)
        self.train_images = train

    def fixed_train_images(self) -> Tensor:
        """The training images as one fixed binary set (N_train, C, H, W), after setup(): the
        images training sees when data.binarization=fixed (or the files are binary), else the one
        draw that binarization would train on."""
        if self.binarization == "fixed" or self.already_binary:
            return self.train_images
        return binarize(self.train_images, self.binarization_seed + 2)

    # What defines the data. Lightning saves it in every checkpoint (under the class's name) and
    # hands it back on resume, where a run with other data settings is refused.
    def state_dict(self) -> dict[str, Any]:
        return {"binarization": self.binarization, "binarization_seed": self.binarization_seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """On resume: the data must be the one the checkpoint was trained on."""
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
            binarize_each_time=self.binarization == "dynamic" and not self.already_binary,
            seed=self.shuffle_seed,
            **self._distributed(),
        )

    def val_dataloader(self) -> TensorBatches:
        return TensorBatches(self.val_images, self.eval_batch_size, **self._distributed())

    def test_dataloader(self) -> TensorBatches:
        return TensorBatches(self.test_images, self.eval_batch_size, **self._distributed())


def seeded_split(num_images: int, val_size: int, split_seed: int) -> tuple[Tensor, Tensor]:
    """Indices (training, validation) into num_images images, from a permutation seeded by split_seed."""
    order = torch.randperm(num_images, generator=torch.Generator().manual_seed(split_seed))
    return order[:-val_size], order[-val_size:]
