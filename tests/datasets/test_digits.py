"""digits: matches scikit-learn's data, stratified disjoint split, resize, and a real task."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from gradinfo.datasets import load


def test_native_size_matches_sklearn_pixels() -> None:
    bunch = load_digits()
    ds = load("digits", split="train", seed=0)
    assert ds.x.shape == (len(ds), 1, 8, 8) and ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64
    ref = torch.as_tensor(bunch.data[ds.info["indices"].numpy()], dtype=torch.float32) / 16.0  # [N, 64]
    torch.testing.assert_close(ds.x.flatten(1), ref, rtol=0, atol=0)
    torch.testing.assert_close(
        ds.y, torch.as_tensor(bunch.target[ds.info["indices"].numpy()]), rtol=0, atol=0
    )


def test_split_is_disjoint_complete_and_stratified() -> None:
    train, test = load("digits", split="train", seed=3), load("digits", split="test", seed=3)
    a, b = set(train.info["indices"].tolist()), set(test.info["indices"].tolist())
    assert not a & b and len(a | b) == 1797
    assert len(test) == pytest.approx(0.2 * 1797, abs=1)
    counts_train = torch.bincount(train.y, minlength=10).double()
    counts_test = torch.bincount(test.y, minlength=10).double()
    share = counts_test / (counts_train + counts_test)  # per-class test share
    assert torch.all((share - 0.2).abs() < 0.02)


def test_seed_determines_the_split() -> None:
    a, b, c = (load("digits", split="test", seed=s) for s in (1, 1, 2))
    torch.testing.assert_close(a.x, b.x, rtol=0, atol=0)
    assert not torch.equal(a.info["indices"], c.info["indices"])


@pytest.mark.parametrize("size", [16, 32])
def test_resize_keeps_range_and_average_intensity(size: int) -> None:
    small, big = load("digits", size=8), load("digits", size=size)
    assert big.x.shape == (len(small), 1, size, size)
    assert big.x.min() >= 0 and big.x.max() <= 1
    # bilinear upsampling with align_corners=False preserves each image's mean up to edge effects
    torch.testing.assert_close(big.x.mean((1, 2, 3)), small.x.mean((1, 2, 3)), rtol=0, atol=0.03)
    torch.testing.assert_close(big.y, small.y, rtol=0, atol=0)


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="size"):
        load("digits", size=28)
    with pytest.raises(ValueError, match="test_fraction"):
        load("digits", test_fraction=1.0)


def test_logistic_regression_learns_digits() -> None:
    train, test = load("digits", split="train"), load("digits", split="test")
    clf = LogisticRegression(max_iter=2000).fit(train.x.flatten(1).numpy(), train.y.numpy())
    acc = float(np.mean(clf.predict(test.x.flatten(1).numpy()) == test.y.numpy()))
    assert acc > 0.9
