"""Claim check for Deep Leakage from Gradients: L-BFGS matching recovers a training example and its label.

Zhu et al., "Deep Leakage from Gradients" (2019): on a small twice-differentiable network (the paper uses
sigmoid activations), matching the shared gradient in L2 with L-BFGS from random noise reconstructs the
victim's input almost pixel-exactly and its label. Set-up (CPU-sized): a tanh MLP 64-64-10 (untrained,
seeded) on 8x8 ``digits``; ``CLIENTS`` clients with one image each; DLG with ``ITERATIONS`` L-BFGS steps
and 4 restarts from N(0, 1), unconstrained,
soft labels learned; the restart with the lowest gradient distance is kept.

Pass: mean PSNR >= 30 dB and every label recovered.
"""

from __future__ import annotations

import torch.nn.functional as F

from gradinfo.claims import ClaimResult
from gradinfo.datasets import load
from gradinfo.models import mlp
from gradinfo.privacy import psnr, share
from gradinfo.privacy.attacks import dlg

CLIENTS = 4
ITERATIONS = 100
RESTARTS = 4


def check(seed: int = 0) -> ClaimResult:
    """Run DLG on ``CLIENTS`` single-image digits clients; see the module docstring."""
    data = load("digits", split="test", seed=seed)
    model = mlp(64, 10, hidden=(64,), activation="tanh", seed=seed).train()
    scores, correct = [], 0
    for c in range(CLIENTS):
        x, y = data.x[c : c + 1], data.y[c : c + 1]  # [1, 1, 8, 8], [1]
        update = share(model, F.cross_entropy, x, y, seed=c)
        rec = dlg(
            model,
            update,
            input_shape=tuple(x.shape[1:]),
            iterations=ITERATIONS,
            restarts=RESTARTS,
            seed=seed * 100 + c,
        )
        scores.append(float(psnr(rec.inputs.clamp(0, 1), x)))
        correct += int(rec.labels.item() == y.item())
    figures = {
        "mean_psnr_db": sum(scores) / CLIENTS,
        "min_psnr_db": min(scores),
        "label_accuracy": correct / CLIENTS,
    }
    return ClaimResult(
        method="dlg",
        claim="mean PSNR >= 30 dB and all labels recovered (tanh MLP on digits, B=1)",
        passed=bool(figures["mean_psnr_db"] >= 30.0 and correct == CLIENTS),
        figures=figures,
        seed=seed,
    )
