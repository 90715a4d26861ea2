"""The datasets, one file each, and what they share (base.py): binarized images held as tensors on
the training device, batched by indexing. Chosen with data=mnist (default), fashion_mnist, kmnist,
binarized_mnist or synthetic.
"""

from vae.data.base import BinarizedImages, binarize
from vae.data.batches import TensorBatches
from vae.data.binarized_mnist import BinarizedMNIST
from vae.data.synthetic import SyntheticImages
from vae.data.torchvision_images import TorchvisionImages

__all__ = [
    "BinarizedImages",
    "BinarizedMNIST",
    "SyntheticImages",
    "TensorBatches",
    "TorchvisionImages",
    "binarize",
]
