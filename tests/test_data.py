"""The datasets: splits, binarization, batches, and the messages when files are missing or bad.

The fast tests read files written in each dataset's real format (tests/datasets.py); the ones
marked slow read the real MNIST.
"""

import urllib.error

import numpy as np
import pytest
import torch
import torchvision.datasets
from datasets import grey_images, write_binarized_mnist, write_torchvision_dataset

from vae.data import BinarizedMNIST, SyntheticImages, TensorBatches, TorchvisionImages
from vae.data.binarized_mnist import read_amat
from vae.errors import DataError


@pytest.mark.parametrize("dataset", ["MNIST", "FashionMNIST", "KMNIST"])
def test_torchvision_datasets_read_their_idx_files_and_split_them(tmp_path, dataset):
    write_torchvision_dataset(tmp_path, dataset, num_train=300, num_test=100)
    data = TorchvisionImages(dataset=dataset, root=str(tmp_path), val_size=50)
    data.setup()
    assert data.train_images.shape == (250, 1, 28, 28) and data.val_images.shape == (50, 1, 28, 28)
    assert data.test_images.shape == (100, 1, 28, 28)
    # The test images are the file's, in order, binarized: black stays 0, white stays 1.
    official = torch.from_numpy(grey_images(100, seed=2)).unsqueeze(1)
    assert (data.test_images[official == 0] == 0).all() and (data.test_images[official == 255] == 1).all()
    assert set(data.test_images.unique().tolist()) == {0.0, 1.0}
    # Training and validation images are the training file's, split by the seeded permutation.
    train_file = torch.from_numpy(grey_images(300, seed=1)).float().unsqueeze(1) / 255
    train_indices, val_indices = data.split_indices(300)
    assert sorted([*train_indices.tolist(), *val_indices.tolist()]) == list(range(300))
    assert torch.equal(data.train_images, train_file[train_indices])  # intensities: binarized per batch
    assert ((data.val_images == 1) <= (train_file[val_indices] > 0)).all()  # binarized once


def test_validation_and_test_binarization_is_fixed_across_instances(tmp_path):
    write_torchvision_dataset(tmp_path, "MNIST")
    make = lambda **kw: TorchvisionImages(root=str(tmp_path), val_size=50, **kw)  # noqa: E731
    first, again, other_split = make(), make(binarization="fixed"), make(split_seed=1)
    for data in (first, again, other_split):
        data.setup()
    assert torch.equal(again.val_images, first.val_images)
    assert torch.equal(again.test_images, first.test_images)
    assert not torch.equal(other_split.val_images, first.val_images)


def test_dynamic_binarization_draws_anew_each_epoch_fixed_does_not():
    data = SyntheticImages()
    data.setup()
    images = data.train_images[:200]
    loader = TensorBatches(images, 200, binarize_each_time=True)
    first = next(iter(loader))
    loader.set_epoch(1)
    second = next(iter(loader))
    assert set(first.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(first, second)
    # The Bernoulli mean is the intensity: averaged over pixels, draws match the images.
    assert abs(first.mean() - images.mean()) < 0.01

    fixed = SyntheticImages(binarization="fixed")
    fixed.setup()
    assert set(fixed.train_images.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(torch.cat(list(fixed.train_dataloader())).sum(0), fixed.train_images.sum(0))


def test_the_fixed_training_set_is_the_one_a_fixed_binarization_trains_on():
    dynamic, fixed = SyntheticImages(), SyntheticImages(binarization="fixed")
    dynamic.setup()
    fixed.setup()
    assert torch.equal(fixed.fixed_train_images(), fixed.train_images)  # what it trains on
    assert torch.equal(dynamic.fixed_train_images(), fixed.train_images)  # the same draw
    assert torch.equal(dynamic.fixed_train_images(), dynamic.fixed_train_images())  # every time
    assert not torch.equal(dynamic.fixed_train_images(), dynamic.train_images)  # intensities


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


def test_synthetic_images_repeat_for_a_seed_and_differ_across_seeds():
    a, b, c = SyntheticImages(), SyntheticImages(), SyntheticImages(seed=1)
    for data in (a, b, c):
        data.setup()
    assert torch.equal(a.test_images, b.test_images) and not torch.equal(a.test_images, c.test_images)
    assert a.train_images.shape == (1800, 1, 28, 28) and a.val_images.shape == (200, 1, 28, 28)
    assert 0.05 < a.train_images.mean() < 0.5  # patterns on a dark background, not blank or full
    small = SyntheticImages(image_shape=(3, 8, 12), num_train=40, val_size=10, num_test=5)
    small.setup()
    assert small.test_images.shape == (5, 3, 8, 12)


# The standard binarized MNIST (Larochelle & Murray) ------------------------------------------


def test_binarized_mnist_reads_its_three_amat_files_as_they_are(tmp_path):
    raw = write_binarized_mnist(tmp_path, sizes=(50, 10, 12))
    data = BinarizedMNIST(root=str(tmp_path))
    data.setup()
    assert data.train_images.shape == (50, 1, 28, 28)
    assert data.val_images.shape == (10, 1, 28, 28) and data.test_images.shape == (12, 1, 28, 28)
    expected = (grey_images(12, seed=2) > 127).astype(np.float32)  # the test file, pixel for pixel
    assert np.array_equal(data.test_images[:, 0].numpy(), expected)
    # No binarization is drawn: training batches are the file's pixels too.
    batches = torch.cat(list(data.train_dataloader()))
    assert torch.equal(batches.sum(0), data.train_images.sum(0))
    assert torch.equal(read_amat(raw / "binarized_mnist_valid.amat"), data.val_images)


def test_a_truncated_or_foreign_amat_file_is_named(tmp_path):
    raw = write_binarized_mnist(tmp_path)
    path = raw / "binarized_mnist_test.amat"
    text = path.read_text()
    path.write_text(text[:-100])  # cut inside the last line: caught before any work
    with pytest.raises(
        DataError, match="binarized_mnist_test.amat: does not end with a whole line: truncated"
    ):
        BinarizedMNIST(root=str(tmp_path)).prepare_data()
    path.write_text(text.splitlines()[0][:-2] + "\n")  # whole lines of the wrong length: caught on reading
    with pytest.raises(DataError, match="binarized_mnist_test.amat: 783 values on 1 lines, not 784 per line"):
        BinarizedMNIST(root=str(tmp_path)).setup()
    path.write_text("0.5 0.25\n")
    with pytest.raises(DataError, match="values other than 0 and 1"):
        BinarizedMNIST(root=str(tmp_path)).setup()


# Missing and broken files ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, folder",
    [
        (lambda root: TorchvisionImages(root=root, download=False), "MNIST/raw"),
        (lambda root: TorchvisionImages(dataset="KMNIST", root=root, download=False), "KMNIST/raw"),
        (lambda root: BinarizedMNIST(root=root, download=False), "BinarizedMNIST/raw"),
    ],
)
def test_missing_data_names_the_folder_the_files_and_the_override(tmp_path, make, folder):
    data = make(str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as error:
        data.setup()
    message = str(error.value)
    assert str((tmp_path / "nowhere" / folder).resolve()) in message
    assert "Expected files: " in message and "data.root=" in message
    assert not (tmp_path / "nowhere").exists()


def test_a_failed_download_leaves_the_data_folder_as_it_was(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", offline)
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError, match="(?s)download failed: .*no network"):
        TorchvisionImages(root=str(tmp_path / "data")).setup()
    assert list((tmp_path / "data").iterdir()) == []  # no empty MNIST/raw/ left behind


def test_truncated_idx_files_are_named(tmp_path):
    raw = write_torchvision_dataset(tmp_path, "FashionMNIST")
    images = raw / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte: 5000 bytes where its header promises 78416"):
        TorchvisionImages(dataset="FashionMNIST", root=str(tmp_path), val_size=50).prepare_data()
    images.write_bytes(b"not an IDX file")
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte: not an IDX file"):
        TorchvisionImages(dataset="FashionMNIST", root=str(tmp_path), val_size=50).prepare_data()


def test_more_validation_images_than_the_files_hold_is_named(tmp_path):
    write_torchvision_dataset(tmp_path, "MNIST", num_train=300)
    with pytest.raises(DataError, match="data.val_size=5000 is not allowed: .* holds 300 training images"):
        TorchvisionImages(root=str(tmp_path)).prepare_data()


# The real MNIST ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_real_mnist_split_sizes_and_the_official_test_set(mnist_root):
    data = TorchvisionImages(root=str(mnist_root), val_size=5000)
    data.setup()
    assert data.train_images.shape == (55_000, 1, 28, 28)
    assert data.val_images.shape == (5_000, 1, 28, 28)
    assert data.test_images.shape == (10_000, 1, 28, 28)
    official = torchvision.datasets.MNIST(str(mnist_root), train=False).data.unsqueeze(1)
    assert (data.test_images[official == 0] == 0).all()
    assert (data.test_images[official == 255] == 1).all()
    grey = (official > 50) & (official < 200)
    assert 0.2 < data.test_images[grey].mean() < 0.8


def test_a_loader_resumed_mid_epoch_hands_out_the_rest_of_that_epoch():
    images = torch.rand(1000, 1, 2, 2)
    loader = TensorBatches(images, 64, shuffle=True, binarize_each_time=True, seed=4)
    loader.set_epoch(2)
    whole = list(loader)
    batches = iter(loader)
    for _ in range(5):
        next(batches)
    state = loader.state_dict()
    assert state == {"epoch": 2, "batches": 5}
    resumed = TensorBatches(images, 64, shuffle=True, binarize_each_time=True, seed=4)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)
    rest = list(resumed)
    assert len(rest) == len(whole) - 5 and all(
        torch.equal(a, b) for a, b in zip(rest, whole[5:], strict=True)
    )
    assert len(list(resumed)) == len(whole)  # the next pass is a whole epoch again
