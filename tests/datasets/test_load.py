"""The ``load``/``names`` front door and the shared ``Dataset`` type."""

import pytest
import torch
from torch.utils.data import DataLoader

from gradinfo.datasets import Dataset, load, names


def test_names_are_the_four_loaders() -> None:
    assert names() == ("digits", "mnist1d", "photos", "text")


def test_bad_name_lists_every_valid_name() -> None:
    with pytest.raises(ValueError, match="unknown dataset name 'cifar10'") as info:
        load("cifar10")
    for name in names():
        assert name in str(info.value)


def test_unknown_option_lists_accepted_options() -> None:
    with pytest.raises(TypeError, match="bogus") as info:
        load("digits", bogus=1)
    assert "size" in str(info.value) and "test_fraction" in str(info.value)


@pytest.mark.parametrize("name", ["digits", "mnist1d", "photos", "text"])
def test_bad_split_and_seed_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="split"):
        load(name, split="validation")
    with pytest.raises(TypeError, match="seed"):
        load(name, seed=1.5)
    with pytest.raises(ValueError, match="seed"):
        load(name, seed=-1)


def test_dataset_is_a_torch_dataset() -> None:
    ds = load("digits")
    x, y = ds[3]
    torch.testing.assert_close(x, ds.x[3], rtol=0, atol=0)
    assert int(y) == int(ds.y[3])
    batches = list(DataLoader(ds, batch_size=100))
    assert sum(len(b[0]) for b in batches) == len(ds)
    torch.testing.assert_close(torch.cat([b[0] for b in batches]), ds.x, rtol=0, atol=0)
    assert ds.num_classes == len(ds.classes) == 10


def test_dataset_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="same length"):
        Dataset(x=torch.zeros(3, 2), y=torch.zeros(4), classes=("a",), name="n", split="train")
