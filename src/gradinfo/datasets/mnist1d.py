"""MNIST-1D: 40-sample 1-D signals of the ten digits, made by the ``mnist1d`` package's generator.

Reference: Greydanus & Kobak, "Scaling Down Deep Learning with MNIST-1D" (2020, arXiv:2011.14439).
Each example is a digit template (12 points) padded, scaled, sheared, translated, given correlated
and iid noise, then resampled to 40 points; the dataset is standardised to mean 0, std 1.

The generator (``mnist1d.data.make_dataset``) runs locally from a seeded config; its download path
is never used. It seeds NumPy's and Python's global generators, so this loader saves and restores
both around the call: loading leaves the caller's random state untouched. Its default config uses
``seed=42``; pass ``seed=42`` to get the package's canonical generation.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from mnist1d.data import get_dataset_args, make_dataset
from mnist1d.utils import ObjectView

from gradinfo.core.validate import positive_int
from gradinfo.datasets._types import Dataset, check_split_seed

LENGTH = 40


def load(
    *, split: str = "train", seed: int = 0, num_samples: int = 5000, channel_dim: bool = False
) -> Dataset:
    """Generate MNIST-1D with ``seed``; ``x`` ``[N, 40]`` (or ``[N, 1, 40]``) float32, ``y`` ``[N]``.

    Args:
        split: ``"train"`` (the generator's first 80%) or ``"test"`` (the last 20%).
        seed: the generator's seed (noise, shifts and shuffling).
        num_samples: examples over both splits before the 80/20 split; a multiple of 10 keeps
            classes exactly balanced (the generator makes ``num_samples // 10`` per class).
        channel_dim: return ``[N, 1, 40]`` for Conv1d models instead of ``[N, 40]``.

    Returns:
        A :class:`~gradinfo.datasets.Dataset` with classes ``("0", ..., "9")``.

    Raises:
        ValueError: ``num_samples < 10`` or bad split/seed.
        TypeError: ``channel_dim`` not a bool.
    """
    check_split_seed(split, seed)
    positive_int("num_samples", num_samples, minimum=10)
    if not isinstance(channel_dim, bool):
        raise TypeError(f"channel_dim must be a bool, got {type(channel_dim).__name__} {channel_dim!r}")
    args = get_dataset_args(as_dict=True)
    args.update(num_samples=num_samples, seed=seed)
    args.pop("url")  # the generator never needs it; keep the download path out of reach
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(args))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    key = "" if split == "train" else "_test"
    x = torch.as_tensor(data["x" + key], dtype=torch.float32)  # [N, 40]
    y = torch.as_tensor(data["y" + key], dtype=torch.int64)  # [N]
    if channel_dim:
        x = x.unsqueeze(1)  # [N, 1, 40]
    return Dataset(
        x=x.contiguous(),
        y=y,
        classes=tuple(str(c) for c in range(10)),
        name="mnist1d",
        split=split,
        info={"num_samples": num_samples, "channel_dim": channel_dim, "t": torch.as_tensor(data["t"])},
    )
