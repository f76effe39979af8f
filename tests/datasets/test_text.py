"""text: byte ids of stdlib files, split by file, windows with next-byte targets."""

import sysconfig
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradinfo.datasets import load
from gradinfo.datasets.text import stdlib_files


def test_files_are_stdlib_sources_not_site_packages() -> None:
    files = stdlib_files()
    root = Path(sysconfig.get_paths()["stdlib"])
    assert files == sorted(files) and all(p.parent == root and p.suffix == ".py" for p in files)
    assert not any("site-packages" in str(p) for p in files)


def test_splits_are_disjoint_by_file_and_cover_all() -> None:
    train, test = load("text", split="train", seed=1), load("text", split="test", seed=1)
    a, b = set(train.info["files"]), set(test.info["files"])
    assert not a & b and a | b == {p.name for p in stdlib_files()}
    assert len(b) == round(0.1 * len(stdlib_files()))


def test_stream_is_the_files_bytes() -> None:
    ds = load("text", split="test", seed=2)
    root = stdlib_files()[0].parent
    raw = b"".join((root / name).read_bytes() for name in ds.info["files"])
    ref = torch.tensor(list(raw), dtype=torch.int64)  # [L]
    assert ds.x.dtype == torch.int64 and ds.num_classes == 256
    torch.testing.assert_close(ds.x, ref[:-1], rtol=0, atol=0)
    torch.testing.assert_close(ds.y, ref[1:], rtol=0, atol=0)


def test_windows_and_max_bytes() -> None:
    ds = load("text", split="train", block_size=32, max_bytes=3000)
    assert ds.x.shape == ds.y.shape == ((3000 - 1) // 32, 32)
    assert ds.x.min() >= 0 and ds.x.max() < 256
    torch.testing.assert_close(ds.x[:, 1:], ds.y[:, :-1], rtol=0, atol=0)  # y is x shifted by one
    torch.testing.assert_close(ds.x[1:, 0], ds.y[:-1, -1], rtol=0, atol=0)  # windows tile the stream
    flat = load("text", split="train", max_bytes=3000)
    assert len(flat) == 2999
    torch.testing.assert_close(ds.x.flatten(), flat.x[: ds.x.numel()], rtol=0, atol=0)


def test_seed_changes_the_split_deterministically() -> None:
    a, b, c = (load("text", split="test", seed=s, max_bytes=500) for s in (0, 0, 1))
    assert a.info["files"] == b.info["files"] and a.info["files"] != c.info["files"]
    torch.testing.assert_close(a.x, b.x, rtol=0, atol=0)


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="block_size"):
        load("text", block_size=0)
    with pytest.raises(ValueError, match="too few"):
        load("text", block_size=100, max_bytes=50)
    with pytest.raises(ValueError, match="test_fraction"):
        load("text", test_fraction=0.0)


@settings(max_examples=10, deadline=None)
@given(block_size=st.integers(1, 64), max_bytes=st.integers(70, 2000), seed=st.integers(0, 5))
def test_windows_tile_the_stream_with_shifted_targets(block_size: int, max_bytes: int, seed: int) -> None:
    flat = load("text", split="test", seed=seed, max_bytes=max_bytes)
    ds = load("text", split="test", seed=seed, max_bytes=max_bytes, block_size=block_size)
    n = (max_bytes - 1) // block_size
    assert ds.x.shape == (n, block_size)
    torch.testing.assert_close(ds.x.flatten(), flat.x[: n * block_size], rtol=0, atol=0)
    torch.testing.assert_close(ds.y.flatten(), flat.y[: n * block_size], rtol=0, atol=0)
