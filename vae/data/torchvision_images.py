"""MNIST, Fashion-MNIST and KMNIST through torchvision's own classes.

All three are 60k training and 10k test 28x28 grey images in the same IDX files, under
`<root>/<dataset>/raw/` (torchvision's layout), downloaded there when missing and the network
allows. The training images are split by a seeded permutation (`split_seed`) into
60k - val_size training and val_size validation images; the official test set is untouched.
"""

from __future__ import annotations

import math
import shutil
import struct
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vae.data.base import BinarizedImages, seeded_split
from vae.errors import DataError, require, require_positive_int

DATASETS = ("MNIST", "FashionMNIST", "KMNIST")  # torchvision.datasets class names
TRAIN_SIZE = 60_000  # official training images of each


def _dataset_class(name: str):
    import torchvision.datasets

    return getattr(torchvision.datasets, name)


class TorchvisionImages(BinarizedImages):
    """One of torchvision's MNIST-format datasets, binarized.

    Args:
        dataset: MNIST, FashionMNIST or KMNIST (the torchvision class).
        val_size: validation images taken from the training images.
        split_seed: the validation split.
        **kwargs: as for BinarizedImages (root, batch sizes, binarization, seeds, download).
    """

    image_shape = (1, 28, 28)

    def __init__(
        self, dataset: str = "MNIST", val_size: int = 5000, split_seed: int = 0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        require(dataset in DATASETS, "dataset", dataset, f"one of {', '.join(DATASETS)}")
        require_positive_int("val_size", val_size)
        require(
            val_size < TRAIN_SIZE,
            "val_size",
            val_size,
            f"must be < {TRAIN_SIZE}, the number of {dataset} training images",
        )
        self.dataset, self.val_size, self.split_seed = dataset, val_size, split_seed
        self._num_train_file_images = TRAIN_SIZE  # what the files hold, read by prepare_data

    @property
    def num_train_images(self) -> int:
        return self._num_train_file_images - self.val_size

    @property
    def raw_folder(self) -> Path:
        return Path(self.root) / self.dataset / "raw"

    @property
    def files(self) -> list[str]:
        """The four IDX file names torchvision expects in raw_folder."""
        return [Path(name).stem for name, _ in _dataset_class(self.dataset).resources]  # drop .gz

    def prepare_data(self) -> None:
        """Download the dataset if it is not on disk; a clear error if that is impossible, or if a
        file is truncated or holds too few training images for val_size."""
        if not all((self.raw_folder / name).exists() for name in self.files):
            self._download()
        counts = {name: _idx_count(self.raw_folder / name) for name in self.files}
        num_train = self._num_train_file_images = counts[self.files[0]]  # train-images-idx3-ubyte
        if self.val_size >= num_train:
            raise DataError(
                f"data.val_size={self.val_size} is not allowed: {self.raw_folder.resolve()} holds"
                f" {num_train} training images; use fewer"
            )

    def _download(self) -> None:
        error: Exception | None = None
        if self.download:
            created = _first_missing_folder(self.raw_folder)
            try:
                for train in (True, False):
                    _dataset_class(self.dataset)(self.root, train=train, download=True)
                return
            except Exception as e:  # torchvision raises RuntimeError or URLError offline
                error = e
                if created is not None:  # leave the user's folder as it was
                    shutil.rmtree(created, ignore_errors=True)
        reason = f"download failed: {error}" if error else "download=false"
        raise DataError(
            f"{self.dataset} not found in {self.raw_folder.resolve()}/ and {reason}.\n"
            f"Expected files: {', '.join(self.files)}.\n"
            f"Put them there, or point the run at the folder that holds {self.dataset}/raw/ with"
            " data.root=/path/to/folder"
        )

    def _read(self, train: bool) -> Tensor:
        """(N, 28, 28) uint8 images of the training or the test file."""
        try:
            return _dataset_class(self.dataset)(self.root, train=train, download=False).data
        except Exception as e:  # a truncated or foreign file: torchvision's own errors vary
            which = "training" if train else "test"
            raise DataError(
                f"{self.raw_folder.resolve()}: the {which} images of {self.dataset} could not be read"
                f" ({type(e).__name__}: {e}); the IDX files may be truncated or corrupt: download"
                " them again"
            ) from None

    def _splits(self, device: torch.device | str) -> tuple[Tensor, Tensor, Tensor]:
        # (N, 28, 28) uint8 -> (N, 1, 28, 28) float intensities in [0, 1]
        train = self._read(train=True).unsqueeze(1).to(device, torch.float32) / 255
        test = self._read(train=False).unsqueeze(1).to(device, torch.float32) / 255
        train_indices, val_indices = (i.to(device) for i in self.split_indices(len(train)))
        return train[train_indices], train[val_indices], test

    def split_indices(self, num_images: int = TRAIN_SIZE) -> tuple[Tensor, Tensor]:
        """Indices into the training images: (training, validation), from split_seed."""
        return seeded_split(num_images, self.val_size, self.split_seed)

    def state_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "val_size": self.val_size,
            "split_seed": self.split_seed,
            **super().state_dict(),
        }


def _first_missing_folder(folder: Path) -> Path | None:
    """The outermost folder of `folder`'s path that does not exist yet (None if it exists)."""
    missing = None
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing = path
    return missing


def _idx_count(path: Path) -> int:
    """The number of items an IDX file (LeCun's format) declares, after checking that the file is
    as long as its header says: a truncated download is caught before any work."""
    with open(path, "rb") as f:
        header = f.read(4)
        if len(header) < 4 or header[:2] != b"\0\0" or header[2] != 0x08:
            raise DataError(f"{path.resolve()}: not an IDX file of unsigned bytes; download it again")
        ndim = header[3]
        dims = struct.unpack(f">{ndim}I", f.read(4 * ndim)) if ndim else ()
    expected = 4 + 4 * ndim + math.prod(dims)
    actual = path.stat().st_size
    if len(dims) != ndim or actual != expected:
        raise DataError(
            f"{path.resolve()}: {actual} bytes where its header promises {expected}: truncated or"
            " corrupt, download it again"
        )
    return dims[0]
