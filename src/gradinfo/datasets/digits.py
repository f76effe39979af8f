"""scikit-learn's handwritten digits (1797 images, 8x8, 10 classes), optionally resized to 16 or 32.

The images ship inside scikit-learn (``sklearn.datasets.load_digits``), so nothing is downloaded.
Pixel values 0..16 are scaled to [0, 1]. The train/test split is stratified by class and seeded.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from gradinfo.core.validate import fraction
from gradinfo.datasets._types import Dataset, check_split_seed

SIZES = (8, 16, 32)


def load(*, split: str = "train", seed: int = 0, size: int = 8, test_fraction: float = 0.2) -> Dataset:
    """Load the digits, ``x`` ``[N, 1, size, size]`` float32 in [0, 1], ``y`` ``[N]`` int64.

    Args:
        split: ``"train"`` or ``"test"``.
        seed: seeds the stratified split.
        size: output side in pixels, one of 8 (native), 16, 32; upsampling is bilinear
            (``align_corners=False``) and clamped back to [0, 1].
        test_fraction: share of the 1797 images in the test split, stratified by class.

    Returns:
        A :class:`~gradinfo.datasets.Dataset` with classes ``("0", ..., "9")``; ``info`` holds
        ``size``, ``test_fraction`` and ``indices`` (positions in ``load_digits()`` order, ``[N]``).

    Raises:
        ValueError: ``size`` not in (8, 16, 32), ``test_fraction`` outside (0, 1), bad split/seed.
    """
    check_split_seed(split, seed)
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    fraction("test_fraction", test_fraction)
    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32) / 16.0  # [1797, 8, 8]
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)  # [1797]
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, stratify=labels.numpy(), random_state=seed
    )
    idx = torch.as_tensor(train_idx if split == "train" else test_idx)  # [N]
    x = images[idx].unsqueeze(1)  # [N, 1, 8, 8]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0.0, 1.0)
    return Dataset(
        x=x.contiguous(),
        y=labels[idx],
        classes=tuple(str(c) for c in range(10)),
        name="digits",
        split=split,
        info={"size": size, "test_fraction": test_fraction, "indices": idx},
    )
