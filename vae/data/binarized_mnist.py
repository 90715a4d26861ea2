"""The standard statically binarized MNIST (Larochelle & Murray 2011; Salakhutdinov & Murray 2008).

50k training, 10k validation and 10k test images, binarized once by their authors: the split and
the binarization that Jang et al. (2017), Burda et al. (IWAE) and Paulus et al. (2021) report on.
Three text files, `binarized_mnist_{train,valid,test}.amat`, each line one image of 784 values
0 or 1 separated by spaces, in `<root>/BinarizedMNIST/raw/`, downloaded there when missing and
the network allows. The pixels are used as they are: no binarization is drawn.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vae.data.base import BinarizedImages
from vae.errors import DataError

URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
SPLITS = ("train", "valid", "test")
PIXELS = 28 * 28


def amat_file(split: str) -> str:
    return f"binarized_mnist_{split}.amat"


def read_amat(path: Path) -> Tensor:
    """(N, 1, 28, 28) float 0/1 images from an .amat file; DataError if it is not one."""
    raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    zero, one = ord("0"), ord("1")
    is_digit = (raw == zero) | (raw == one)
    if not np.isin(raw[~is_digit], np.frombuffer(b" \t\r\n", dtype=np.uint8)).all():
        raise DataError(f"{path}: not a binarized-MNIST .amat file (values other than 0 and 1)")
    pixels = raw[is_digit] - zero
    lines = int((raw == ord("\n")).sum()) + (len(raw) > 0 and raw[-1] != ord("\n"))
    if len(pixels) != lines * PIXELS or lines == 0:
        raise DataError(
            f"{path}: {len(pixels)} values on {lines} lines, not {PIXELS} per line:"
            " truncated or corrupt, download it again"
        )
    return torch.from_numpy(pixels.astype(np.float32)).view(lines, 1, 28, 28)


class BinarizedMNIST(BinarizedImages):
    """Larochelle & Murray's binarized MNIST: its own split and binarization.

    Args: root, batch_size, eval_batch_size, shuffle_seed, download as for BinarizedImages.
    """

    image_shape = (1, 28, 28)
    already_binary = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(binarization="fixed", **kwargs)

    @property
    def raw_folder(self) -> Path:
        return Path(self.root) / "BinarizedMNIST" / "raw"

    def prepare_data(self) -> None:
        """Download the files that are missing; a clear error if that is impossible, or if a file
        does not end with a whole line (a truncated download; reading checks every value)."""
        missing = [s for s in SPLITS if not (self.raw_folder / amat_file(s)).exists()]
        if missing:
            self._download(missing)
        for split in SPLITS:
            path = self.raw_folder / amat_file(split)
            with open(path, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(size - 1, 0))
                whole = size > 0 and f.read(1) == b"\n"
            if not whole:
                raise DataError(
                    f"{path.resolve()}: does not end with a whole line: truncated, download it again"
                )

    @property
    def num_train_images(self) -> int:
        """Lines of the training file (50,000 in the original)."""
        with open(self.raw_folder / amat_file("train"), "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b""))

    def _download(self, missing: list[str]) -> None:
        error: Exception | None = None
        if self.download:
            created = None if self.raw_folder.exists() else self.raw_folder
            try:
                from torchvision.datasets.utils import download_url

                for split in missing:
                    download_url(URL + amat_file(split), str(self.raw_folder))
                return
            except Exception as e:  # offline: URLError, OSError
                error = e
                if created is not None:
                    shutil.rmtree(created, ignore_errors=True)
        reason = f"download from {URL} failed: {error}" if error else "download=false"
        raise DataError(
            f"binarized MNIST not found in {self.raw_folder.resolve()}/ and {reason}.\n"
            f"Expected files: {', '.join(amat_file(s) for s in SPLITS)}.\n"
            "Put them there, or point the run at the folder that holds BinarizedMNIST/raw/ with"
            " data.root=/path/to/folder"
        )

    def _splits(self, device: torch.device | str) -> tuple[Tensor, Tensor, Tensor]:
        train, val, test = (read_amat(self.raw_folder / amat_file(s)).to(device) for s in SPLITS)
        return train, val, test

    def state_dict(self) -> dict[str, Any]:
        return {"dataset": "BinarizedMNIST"}
