"""A small synthetic image set, generated in memory from a seed: for tests and quick checks on a
machine without any dataset (`data=synthetic`).

num_prototypes smooth patterns (each the sum of three Gaussian blobs); every image is one of
them, shifted by up to two pixels and scaled by a random contrast in [0.6, 1]. The patterns give
a VAE something to learn within a few hundred steps; the numbers mean nothing beyond that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from vae.data.base import BinarizedImages, seeded_split
from vae.errors import require, require_positive_int


def synthetic_intensities(
    num_images: int, image_shape: Sequence[int], num_prototypes: int, seed: int
) -> Tensor:
    """(num_images, C, H, W) float intensities in [0, 1], the same for the same arguments."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(*shape: int) -> Tensor:
        return torch.rand(shape, generator=generator)

    c, h, w = image_shape
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    centres = uniform(num_prototypes, 3, 2) * 0.6 + 0.2  # (P, 3 blobs, (y, x)) as fractions of the image
    widths = uniform(num_prototypes, 3, 2) * 0.12 + 0.05
    dy = (yy - centres[..., 0, None, None] * h) / (widths[..., 0, None, None] * h)  # (P, 3, H, W)
    dx = (xx - centres[..., 1, None, None] * w) / (widths[..., 1, None, None] * w)
    prototypes = torch.exp(-0.5 * (dy**2 + dx**2)).sum(1).clamp(max=1.0)  # (P, H, W)

    labels = torch.randint(num_prototypes, (num_images,), generator=generator)
    shifts = torch.randint(-2, 3, (num_images, 2), generator=generator)
    contrast = uniform(num_images) * 0.4 + 0.6
    images = torch.stack(
        [
            torch.roll(prototypes[k], (int(s[0]), int(s[1])), dims=(0, 1))
            for k, s in zip(labels, shifts, strict=True)
        ]
    )  # (N, H, W)
    images = images * contrast[:, None, None]
    return images.unsqueeze(1).expand(num_images, c, h, w).contiguous()


class SyntheticImages(BinarizedImages):
    """Seeded synthetic images, split into training, validation and test.

    Args:
        num_train: training plus validation images.
        num_test: test images.
        val_size: validation images taken from the num_train.
        image_shape: (C, H, W).
        num_prototypes: distinct patterns.
        seed: the images (and, as for every dataset, split_seed the validation split).
        root: unused (nothing is read from disk); accepted so that data.root= works for every dataset.
        **kwargs: as for BinarizedImages (batch sizes, binarization, seeds).
    """

    def __init__(
        self,
        num_train: int = 2000,
        num_test: int = 500,
        val_size: int = 200,
        image_shape: Sequence[int] = (1, 28, 28),
        num_prototypes: int = 10,
        seed: int = 0,
        split_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("download", None)
        super().__init__(**kwargs)
        for name, value in (("num_train", num_train), ("num_test", num_test), ("val_size", val_size)):
            require_positive_int(name, value)
        require(val_size < num_train, "val_size", val_size, f"must be < num_train ({num_train})")
        require(
            len(image_shape) == 3 and all(isinstance(s, int) and s > 0 for s in image_shape),
            "image_shape",
            list(image_shape),
            "must be [channels, height, width] of positive integers",
        )
        require_positive_int("num_prototypes", num_prototypes)
        self.num_train, self.num_test, self.val_size = num_train, num_test, val_size
        self.image_shape = tuple(image_shape)
        self.num_prototypes, self.seed, self.split_seed = num_prototypes, seed, split_seed

    def prepare_data(self) -> None:
        """Nothing to fetch: the images are generated."""

    @property
    def num_train_images(self) -> int:
        return self.num_train - self.val_size

    def _splits(self, device: torch.device | str) -> tuple[Tensor, Tensor, Tensor]:
        images = synthetic_intensities(
            self.num_train + self.num_test, self.image_shape, self.num_prototypes, self.seed
        ).to(device)
        train, test = images[: self.num_train], images[self.num_train :]
        train_indices, val_indices = (
            i.to(device) for i in seeded_split(self.num_train, self.val_size, self.split_seed)
        )
        return train[train_indices], train[val_indices], test

    def state_dict(self) -> dict[str, Any]:
        return {
            "dataset": "synthetic",
            "num_train": self.num_train,
            "num_test": self.num_test,
            "val_size": self.val_size,
            "image_shape": list(self.image_shape),
            "num_prototypes": self.num_prototypes,
            "seed": self.seed,
            "split_seed": self.split_seed,
            **super().state_dict(),
        }
