"""photos: offline, seeded, disjoint train/test regions, balanced labels, a learnable task."""

import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from gradinfo.datasets import load
from gradinfo.datasets.photos import PHOTOS, _read, photo_paths


@pytest.mark.parametrize("size", [32, 64])
def test_shapes_range_and_balance(size: int) -> None:
    ds = load("photos", split="test", size=size, n_per_photo=7)
    assert ds.x.shape == (70, 3, size, size) and ds.x.dtype == torch.float32
    assert ds.x.min() >= 0 and ds.x.max() <= 1
    assert torch.bincount(ds.y).tolist() == [7] * 10
    assert ds.classes == PHOTOS and len(set(PHOTOS)) == 10


def test_loads_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert all(p.is_file() for p in photo_paths().values())
    assert len(load("photos", n_per_photo=2)) == 20


def _boxes(ds: object) -> list[tuple[int, int, int, int, int]]:
    """(label, top, left, bottom, right) of every crop, half-open."""
    s = ds.info["size"]
    return [
        (int(y), t, l, t + s, l + s) for y, (t, l) in zip(ds.y, ds.info["positions"].tolist(), strict=True)
    ]


@pytest.mark.parametrize(("size", "seed"), [(32, 0), (64, 1)])
def test_no_train_crop_overlaps_a_test_crop(size: int, seed: int) -> None:
    train = load("photos", split="train", size=size, seed=seed, n_per_photo=40)
    test = load("photos", split="test", size=size, seed=seed, n_per_photo=40)
    for label, name in enumerate(PHOTOS):
        h, w = train.info["photo_shapes"][name]
        tr = np.array([b[1:] for b in _boxes(train) if b[0] == label])  # [n, 4]
        te = np.array([b[1:] for b in _boxes(test) if b[0] == label])  # [n, 4]
        assert (tr[:, 0] >= 0).all() and (te[:, 2] <= h).all() and (te[:, 3] <= w).all()
        # rectangles [t, b) x [l, r) overlap iff both intervals overlap; check every pair
        rows = (tr[:, None, 0] < te[None, :, 2]) & (te[None, :, 0] < tr[:, None, 2])
        cols = (tr[:, None, 1] < te[None, :, 3]) & (te[None, :, 1] < tr[:, None, 3])
        assert not (rows & cols).any(), name


def test_crops_are_the_pixels_at_their_positions() -> None:
    ds = load("photos", split="train", size=32, n_per_photo=3, seed=4)
    for i in (0, 13, 29):
        name = PHOTOS[int(ds.y[i])]
        img = _read(photo_paths()[name], 256)  # [3, H, W]
        t, l = ds.info["positions"][i].tolist()
        torch.testing.assert_close(ds.x[i], img[:, t : t + 32, l : l + 32], rtol=0, atol=0)


def test_seed_determines_crop_positions() -> None:
    a, b, c = (load("photos", seed=s, n_per_photo=5) for s in (2, 2, 3))
    torch.testing.assert_close(a.x, b.x, rtol=0, atol=0)
    assert not torch.equal(a.info["positions"], c.info["positions"])


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="size"):
        load("photos", size=48)
    with pytest.raises(ValueError, match="n_per_photo"):
        load("photos", n_per_photo=0)
    with pytest.raises(ValueError, match="narrower than size=64"):
        load("photos", split="test", size=64, photo_side=64)


def test_photo_identity_is_learnable_on_held_out_regions() -> None:
    train = load("photos", split="train", n_per_photo=50)
    test = load("photos", split="test", n_per_photo=50)

    def features(ds: object) -> np.ndarray:
        return F.avg_pool2d(ds.x, 4).flatten(1).numpy()  # [N, 3 * 8 * 8]

    clf = LogisticRegression(max_iter=2000).fit(features(train), train.y.numpy())
    assert float(np.mean(clf.predict(features(test)) == test.y.numpy())) > 0.3  # chance is 0.1


@settings(max_examples=4, deadline=None)
@given(train_width=st.floats(0.4, 0.7), seed=st.integers(0, 100), size=st.sampled_from([32, 64]))
def test_train_and_test_columns_never_meet(train_width: float, seed: int, size: int) -> None:
    train = load("photos", split="train", seed=seed, size=size, n_per_photo=10, train_width=train_width)
    test = load("photos", split="test", seed=seed, size=size, n_per_photo=10, train_width=train_width)
    for label, name in enumerate(PHOTOS):
        c = train.info["boundary"][name]
        assert c == round(train_width * train.info["photo_shapes"][name][1])
        assert (train.info["positions"][train.y == label, 1] + size <= c).all()
        assert (test.info["positions"][test.y == label, 1] >= c).all()
