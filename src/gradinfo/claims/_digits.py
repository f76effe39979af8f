"""Shared set-up of the digits claim checks of paper 43 (M-FAC, OBS pruning): flat data and a seeded loop.

:func:`flat_digits` gives a split of scikit-learn's 8x8 ``digits`` as ``[N, 64]`` pixel rows; :func:`train`
runs an optimizer on the mean cross-entropy of mini-batches drawn with replacement from a seeded generator.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradinfo.datasets import load


def flat_digits(split: str, seed: int) -> tuple[Tensor, Tensor]:
    """The ``digits`` ``split`` (``"train"`` or ``"test"``) as pixel rows ``[N, 64]`` and labels ``[N]``."""
    data = load("digits", split=split, seed=seed)
    return data.x.reshape(len(data.x), -1), data.y  # [N, 64], [N]


def train(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    *,
    steps: int,
    batch: int,
    gen: torch.Generator,
) -> None:
    """``steps`` steps of ``opt`` on the cross-entropy of ``batch`` rows of ``x`` ``[N, 64]``, ``y`` ``[N]``.

    Each batch's indices are drawn uniformly with replacement by ``gen``, which the caller may go on using.
    """
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=gen)  # [B]
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
