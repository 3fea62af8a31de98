"""Datasets: the genuine MNIST through torchvision's loader, the bundled digits, batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data import data_root, iterate_batches, load_dataset, TensorData
from cnnlab.errors import DataNotFoundError, UnknownNameError

from conftest import md5


@pytest.mark.mnist
def test_mnist_files_are_genuine(mnist_root, mnist_md5):
    raw = mnist_root / "MNIST" / "raw"
    assert mnist_md5, "MD5SUMS missing beside the data"
    for name, digest in mnist_md5.items():
        assert md5(raw / name) == digest, name


@pytest.mark.mnist
def test_mnist_loads_as_uint8_tensors(mnist_root):
    train, test = load_dataset("mnist", mnist_root, download=False)
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (10000, 1, 28, 28)
    assert train.labels.dtype == torch.long and set(train.labels.unique().tolist()) == set(range(10))
    # first training label of MNIST is a 5, first test label a 7
    assert int(train.labels[0]) == 5 and int(test.labels[0]) == 7


@pytest.mark.mnist
def test_batches_equal_torchvision_totensor(mnist_root):
    """Our in-memory batches are bitwise what ToTensor() gives per sample."""
    from torchvision import datasets, transforms

    ref = datasets.MNIST(str(mnist_root), train=False, download=False, transform=transforms.ToTensor())
    _, test = load_dataset("mnist", mnist_root, download=False)
    x, y = next(iterate_batches(test, 16))
    expected = torch.stack([ref[i][0] for i in range(16)])
    assert torch.equal(x, expected)
    assert y.tolist() == [ref[i][1] for i in range(16)]


def test_missing_data_is_one_clear_error(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("mnist", tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in message and "train-images-idx3-ubyte" in message
    assert "--data-dir" in message and "\n" not in message


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root(None) == tmp_path / "env"
    monkeypatch.delenv("CNNLAB_DATA")
    assert data_root(None) == Path.home() / ".cache" / "cnnlab" / "data"


def test_digits_split_is_fixed_stratified_and_offline():
    from sklearn.datasets import load_digits

    train, test = load_dataset("digits")
    assert len(train) + len(test) == 1797
    assert train.images.shape[1:] == (1, 8, 8) and train.images.dtype == torch.uint8
    assert 350 <= len(test) <= 370
    counts = torch.bincount(test.labels, minlength=10)
    assert counts.min() >= 34  # every class ~20% of its ~180 samples
    train2, test2 = load_dataset("digits")
    assert torch.equal(test.images, test2.images)
    # the pixel values are sklearn's 0..16 scaled to 0..255
    ref = load_digits()
    assert int(train.images.max()) == 255
    assert np.isclose(train.images.float().mean() / 255 * 16, ref.images.mean(), atol=0.05)


def test_unknown_dataset():
    with pytest.raises(UnknownNameError, match="cifar10, digits, fashion-mnist, imagefolder, mnist"):
        load_dataset("svhn")


def test_iterate_batches_shuffles_with_generator():
    data = TensorData(torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1), torch.arange(10), ["a"])
    order1 = torch.cat([y for _, y in iterate_batches(data, 3, shuffle=True, generator=torch.Generator().manual_seed(0))])
    order2 = torch.cat([y for _, y in iterate_batches(data, 3, shuffle=True, generator=torch.Generator().manual_seed(0))])
    assert torch.equal(order1, order2) and sorted(order1.tolist()) == list(range(10))
    sizes = [len(y) for _, y in iterate_batches(data, 3)]
    assert sizes == [3, 3, 3, 1]
    x, _ = next(iterate_batches(data, 10))
    torch.testing.assert_close(x.flatten(), torch.arange(10) / 255.0)
