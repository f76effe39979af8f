"""The one dataset type every loader in :mod:`gradinfo.datasets` returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from gradinfo.core.validate import one_of


@dataclass(frozen=True, eq=False)
class Dataset(torch.utils.data.Dataset):
    """Inputs and targets held in memory, usable directly as a ``torch.utils.data.Dataset``.

    ``dataset[i]`` returns ``(x[i], y[i])``, so a ``DataLoader`` over it yields ``(inputs, targets)``
    batches ready for ``per_example_grads(model, loss_fn, inputs, targets)``.

    Attributes:
        x: inputs ``[N, ...]`` (float32 images/signals, or int64 byte ids for ``text``).
        y: targets ``[N]`` int64 class labels, or ``[N, T]`` next-byte ids for ``text``.
        classes: the name of every class, indexed by label (``len(classes) == num_classes``).
        name: the loader's name, as passed to :func:`gradinfo.datasets.load`.
        split: ``"train"`` or ``"test"``.
        info: loader-specific metadata (the options used, crop positions, file names, ...).
    """

    x: Tensor
    y: Tensor
    classes: tuple[str, ...]
    name: str
    split: str
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"x and y must have the same length, got {len(self.x)} and {len(self.y)}")

    @property
    def num_classes(self) -> int:
        """Number of classes (256 for byte-level text)."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.x[index], self.y[index]


def check_split_seed(split: Any, seed: Any) -> None:
    """Raise if ``split`` is not ``"train"``/``"test"`` or ``seed`` is not a non-negative int."""
    one_of("split", split, ("train", "test"))
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed!r}")
