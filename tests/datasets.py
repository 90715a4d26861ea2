"""Dataset files written in their real formats, from synthetic images: what the data tests and the
end-to-end tests read instead of downloading anything."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

from vae.data.synthetic import synthetic_intensities

IDX_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file (LeCun's format, as torchvision reads it) holding a uint8 array."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def grey_images(num: int, seed: int) -> np.ndarray:
    """(num, 28, 28) uint8 grey images."""
    return (synthetic_intensities(num, (1, 28, 28), 10, seed)[:, 0] * 255).round().to(torch.uint8).numpy()


def write_torchvision_dataset(root: Path, dataset: str, num_train: int = 300, num_test: int = 100) -> Path:
    """torchvision's layout, <root>/<dataset>/raw/, with the four IDX files; returns the raw folder."""
    raw = root / dataset / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for train, num in ((True, num_train), (False, num_test)):
        images, labels = IDX_FILES[train]
        write_idx(raw / images, grey_images(num, seed=1 if train else 2))
        write_idx(raw / labels, np.arange(num) % 10)
    return raw


def write_binarized_mnist(root: Path, sizes: tuple[int, int, int] = (50, 10, 10)) -> Path:
    """Larochelle & Murray's .amat files, one 0/1 image of 784 values per line; returns the folder."""
    raw = root / "BinarizedMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for seed, (split, num) in enumerate(zip(("train", "valid", "test"), sizes, strict=True)):
        pixels = (grey_images(num, seed) > 127).reshape(num, -1).astype(int)
        lines = "".join(" ".join(map(str, row)) + "\n" for row in pixels)
        (raw / f"binarized_mnist_{split}.amat").write_text(lines)
    return raw
