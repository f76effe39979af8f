"""Shared set-up of the inversion-attack claim checks: the default victim (small CNN, ``photos`` 32x32, B=1).

The round-start model is ``gradinfo.models.cnn`` for 3 x 32 x 32 inputs (untrained: the first round of
federated training), seeded; the victims are the first test image of each of the first ``count``
``photos`` classes, one per client. Each client shares its gradient in train mode (dropout active, with
masks drawn from its own seed).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gradinfo.datasets import load
from gradinfo.models import cnn
from gradinfo.privacy import Reconstruction, SharedUpdate, psnr, share

INPUT_SHAPE = (3, 32, 32)


def victim_model(dropout: float, seed: int) -> nn.Module:
    """The default audited model: a LeNet-style CNN for 32x32 RGB, 10 classes, in train mode."""
    return cnn(num_classes=10, in_channels=3, image_size=32, dropout=dropout, seed=seed).train()


def victims(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` test photos of different classes ``[N, 3, 32, 32]`` in [0, 1] and their labels ``[N]``."""
    data = load("photos", split="test", seed=seed, size=32)
    first = torch.tensor([int(torch.nonzero(data.y == c)[0]) for c in range(count)])  # [N]
    return data.x[first], data.y[first]


def mean_psnr(
    model: nn.Module,
    attack: Callable[[nn.Module, SharedUpdate, int], Reconstruction],
    images: torch.Tensor,
    labels: torch.Tensor,
    seed: int,
) -> float:
    """Mean PSNR (dB) of ``attack(model, update, seed)`` over the victims, one B=1 client each."""
    scores = []
    for i in range(images.shape[0]):
        x, y = images[i : i + 1], labels[i : i + 1]  # [1, 3, 32, 32], [1]
        update = share(model, F.cross_entropy, x, y, seed=seed * 1000 + i)
        rec = attack(model, update, seed * 1000 + i)
        scores.append(float(psnr(rec.inputs, x)))
    return sum(scores) / len(scores)
