"""The data module: splits, binarization, batches, and the message when MNIST is missing."""

import pytest
import torch
from torchvision.datasets import MNIST

from vae.data import MNIST_FILES, DataNotFoundError, MNISTDataModule, TensorBatches


@pytest.fixture(scope="module")
def datamodule(mnist_root):
    dm = MNISTDataModule(root=str(mnist_root), val_size=5000)
    dm.setup()
    return dm


def test_split_sizes_and_the_official_test_set(datamodule, mnist_root):
    assert datamodule.train_images.shape == (55_000, 1, 28, 28)
    assert datamodule.val_images.shape == (5_000, 1, 28, 28)
    assert datamodule.test_images.shape == (10_000, 1, 28, 28)
    # Test images are the official ones, in order, binarized: black stays 0, white stays 1.
    official = MNIST(str(mnist_root), train=False).data.unsqueeze(1)
    assert (datamodule.test_images[official == 0] == 0).all()
    assert (datamodule.test_images[official == 255] == 1).all()
    grey = (official > 50) & (official < 200)
    assert 0.2 < datamodule.test_images[grey].mean() < 0.8


def test_validation_and_test_binarization_is_fixed_across_instances(datamodule, mnist_root):
    again = MNISTDataModule(root=str(mnist_root), binarization="fixed")
    again.setup()
    assert torch.equal(again.val_images, datamodule.val_images)
    assert torch.equal(again.test_images, datamodule.test_images)
    other_split = MNISTDataModule(root=str(mnist_root), split_seed=1)
    other_split.setup()
    assert not torch.equal(other_split.val_images, datamodule.val_images)


def test_dynamic_binarization_draws_anew_each_epoch_fixed_does_not(datamodule, mnist_root):
    images = datamodule.train_images[:200]
    loader = TensorBatches(images, 200, binarize_each_time=True)
    first = next(iter(loader))
    loader.set_epoch(1)
    second = next(iter(loader))
    assert set(first.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(first, second)
    # The Bernoulli mean is the intensity: averaged over pixels, draws match the images.
    assert abs(first.mean() - images.mean()) < 0.01

    fixed = MNISTDataModule(root=str(mnist_root), binarization="fixed")
    fixed.setup()
    assert set(fixed.train_images.unique().tolist()) == {0.0, 1.0}
    loader = fixed.train_dataloader()
    assert torch.equal(torch.cat(list(loader)).sum(0), fixed.train_images.sum(0))


def test_dynamic_binarization_is_bernoulli_of_the_intensity_per_pixel():
    # 4 pixels of intensity 0, 0.1, 0.7, 1 in every image; 4000 images binarized in batches.
    intensities = torch.tensor([0.0, 0.1, 0.7, 1.0])
    images = intensities.view(1, 1, 2, 2).expand(4000, 1, 2, 2).contiguous()
    draws = torch.cat(list(TensorBatches(images, 100, shuffle=True, binarize_each_time=True)))
    frequency = draws.mean(0).flatten()
    assert frequency[0] == 0 and frequency[3] == 1  # black never flips on, white never off
    standard_error = (intensities * (1 - intensities) / len(images)).sqrt()
    assert ((frequency - intensities).abs()[1:3] < 5 * standard_error[1:3]).all(), frequency
    # Pixels are drawn independently: the two grey pixels' draws are uncorrelated.
    grey = draws.flatten(1)[:, 1:3]
    covariance = ((grey - grey.mean(0)).prod(1)).mean()
    assert abs(covariance) < 5 * (0.1 * 0.9 * 0.7 * 0.3 / len(images)) ** 0.5


def test_shuffling_is_seeded_per_epoch_and_covers_every_image():
    images = torch.arange(1000.0).view(1000, 1, 1, 1)
    loader = TensorBatches(images, 64, shuffle=True, seed=3)
    epoch0 = torch.cat(list(loader)).flatten()
    assert len(loader) == 16 and sorted(epoch0.tolist()) == list(range(1000))
    assert torch.equal(epoch0, torch.cat(list(TensorBatches(images, 64, shuffle=True, seed=3))).flatten())
    loader.set_epoch(1)
    assert not torch.equal(epoch0, torch.cat(list(loader)).flatten())


def test_distributed_ranks_split_the_batches():
    images = torch.arange(1000.0).view(1000, 1, 1, 1)
    parts = [torch.cat(list(TensorBatches(images, 100, rank=r, world_size=2))) for r in (0, 1)]
    assert sorted(torch.cat(parts).flatten().tolist()) == list(range(1000))


def test_missing_data_names_the_folder_the_files_and_the_override(tmp_path):
    dm = MNISTDataModule(root=str(tmp_path / "nowhere"), download=False)
    with pytest.raises(DataNotFoundError) as error:
        dm.setup()
    message = str(error.value)
    assert str((tmp_path / "nowhere" / "MNIST" / "raw").resolve()) in message
    assert all(name in message for name in MNIST_FILES)
    assert "data.root=" in message
