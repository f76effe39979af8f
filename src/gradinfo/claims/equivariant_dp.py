"""Claim check for ``equivariant_dp``: at equal epsilon, a p4 CNN with fewer parameters beats a plain CNN.

Hölzl et al., "Equivariant Differentially Private Deep Learning: Why DP-SGD Needs Sparser Models" (2023), at
small scale: scikit-learn digits (8x8), every train and test image turned by a random multiple of 90 degrees
(the symmetry the p4 model builds in). Both models have the same layout and the same number of feature maps
(32 then 64, 3x3, ReLU, 2x2 max-pool, global pooling, linear head): the equivariant one
(``equivariant_cnn(widths=(8, 16))``, 4 rotations per field) has about 4x fewer parameters. Both are trained
with the same DP-SGD (Poisson rate 256 / N, C = 1, SGD lr 0.5 momentum 0.9, 15 epochs) at epsilon = 8,
delta = 1e-5 (RDP accountant).

Criterion: test accuracy of the equivariant model > that of the standard CNN.
"""

from __future__ import annotations

import torch
from torch import nn

from gradinfo.claims import ClaimResult
from gradinfo.datasets import load
from gradinfo.privacy.defenses.equivariant import dp_sgd_train, equivariant_cnn
from gradinfo.privacy.fedavg import accuracy

SLOW = True

EPSILON, DELTA, EPOCHS, BATCH = 8.0, 1e-5, 15, 256


def _rotated(split: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = load("digits", split=split, seed=seed)
    turns = torch.randint(0, 4, (len(data.y),), generator=torch.Generator().manual_seed(seed + 1))  # [N]
    x = torch.stack([torch.rot90(img, int(k), dims=(-2, -1)) for img, k in zip(data.x, turns, strict=True)])
    return x, data.y  # [N, 1, 8, 8], [N]


def _standard(seed: int) -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # [B, 32, 4, 4]
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # [B, 64, 2, 2]
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),  # [B, 10]
        )  # fmt: skip


def check(seed: int = 0) -> ClaimResult:
    (x, y), (xt, yt) = _rotated("train", seed), _rotated("test", seed)
    figures: dict[str, float] = {}
    for name, model in (
        ("equivariant", equivariant_cnn(widths=(8, 16), seed=seed)),
        ("standard", _standard(seed)),
    ):
        sigma = dp_sgd_train(
            model, x, y, epsilon=EPSILON, delta=DELTA, epochs=EPOCHS, batch_size=BATCH, lr=0.5, seed=seed
        )
        figures[f"accuracy_{name}"] = accuracy(model, xt, yt)
        figures[f"params_{name}"] = sum(p.numel() for p in model.parameters())
    figures["noise_multiplier"] = sigma
    return ClaimResult(
        method="equivariant_dp",
        claim=f"DP-SGD at epsilon {EPSILON:g}, delta {DELTA:g}: accuracy(p4 CNN, 4x fewer params) > acc(CNN)",
        passed=bool(figures["accuracy_equivariant"] > figures["accuracy_standard"]),
        figures=figures,
        seed=seed,
    )
