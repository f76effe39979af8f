"""mnist1d: the package's generator, seeded, balanced, leaving global RNG state alone."""

import random

import numpy as np
import pytest
import torch
from mnist1d.data import get_dataset_args, make_dataset
from sklearn.linear_model import LogisticRegression

from gradinfo.datasets import load


def test_matches_the_generator_called_directly() -> None:
    args = get_dataset_args()
    args.num_samples, args.seed = 500, 42
    ref = make_dataset(args)
    for split, key in (("train", "x"), ("test", "x_test")):
        ds = load("mnist1d", split=split, seed=42, num_samples=500)
        torch.testing.assert_close(ds.x, torch.as_tensor(ref[key], dtype=torch.float32), rtol=0, atol=0)
        torch.testing.assert_close(
            ds.y, torch.as_tensor(ref["y" + key[1:]], dtype=torch.int64), rtol=0, atol=0
        )


def test_shapes_balance_and_channel_dim() -> None:
    train = load("mnist1d", split="train", num_samples=1000)
    test = load("mnist1d", split="test", num_samples=1000, channel_dim=True)
    assert train.x.shape == (800, 40) and test.x.shape == (200, 1, 40)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    counts = torch.bincount(torch.cat([train.y, test.y]), minlength=10)
    assert counts.tolist() == [100] * 10


def test_seeded_and_leaves_global_state_untouched() -> None:
    np.random.seed(123)
    random.seed(123)
    expected_np, expected_py = np.random.rand(), random.random()
    np.random.seed(123)
    random.seed(123)
    a = load("mnist1d", seed=5, num_samples=200)
    assert np.random.rand() == expected_np and random.random() == expected_py
    b, c = load("mnist1d", seed=5, num_samples=200), load("mnist1d", seed=6, num_samples=200)
    torch.testing.assert_close(a.x, b.x, rtol=0, atol=0)
    assert not torch.equal(a.x, c.x)


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="num_samples"):
        load("mnist1d", num_samples=5)
    with pytest.raises(TypeError, match="channel_dim"):
        load("mnist1d", channel_dim=1)


def test_is_learnable_above_chance() -> None:
    train, test = (
        load("mnist1d", split="train", num_samples=2000),
        load("mnist1d", split="test", num_samples=2000),
    )
    clf = LogisticRegression(max_iter=1000).fit(train.x.numpy(), train.y.numpy())
    assert float(np.mean(clf.predict(test.x.numpy()) == test.y.numpy())) > 0.2  # chance is 0.1
