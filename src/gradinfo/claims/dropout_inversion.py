"""Claim check for the Dropout Inversion Attack (paper 2): DIA beats Inverting Gradients under dropout.

"Dropout is NOT All You Need to Prevent Gradient Leakage" (2023): a client training with dropout defeats
Inverting Gradients (IG), because the attacker does not know the masks; DIA, which optimises the masks
too, still reconstructs. Set-up (the paper digest's CPU proof, smaller): an MLP 64-256-256-10 with dropout
p after each hidden layer, trained for 20 epochs on 8x8 ``digits`` (Adam 1e-3, batches of 64); the first
``VICTIMS`` test images, one client each (B = 1), sharing its gradient in train mode; both attacks with the
official configuration (``example_configs/attacks/{IG,DIA}.yaml``: signed Adam lr 0.1, TV 1e-5,
ReduceLROnPlateau patience 800, 1 restart; labels by ``label_recovery``, exact at B = 1 like the paper's
known labels), ``ITERATIONS`` steps each (20,000 in the paper); IG is the same optimisation without masks.

Pass: mean PSNR(DIA) - mean PSNR(IG) >= 3 dB at p = 0.25, and mean PSNR(DIA) >= mean PSNR(IG) - 3 dB at
p = 0 (no dropout: DIA has nothing to gain, and must not lose).

On the audit's default CNN, whose only dropout sits before the last layer, dropout hardly hurts IG (the
convolutions' gradients still pin the image down), so that model does not show the paper's effect.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gradinfo.claims import ClaimResult
from gradinfo.datasets import load
from gradinfo.models import mlp
from gradinfo.privacy import psnr, share
from gradinfo.privacy.attacks import dropout_inversion, inverting_gradients

SLOW = True
ITERATIONS = 1000
VICTIMS = 4
EPOCHS = 20
P_DROPOUT = 0.25
TV = 1e-5  # the official IG.yaml / DIA.yaml value


def _trained_mlp(p: float, seed: int) -> nn.Module:
    data = load("digits", split="train", seed=seed)
    model = mlp(64, 10, hidden=(256, 256), dropout=p, seed=seed).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(EPOCHS):
        order = torch.randperm(data.x.shape[0], generator=gen)
        for i in range(0, order.numel(), 64):
            idx = order[i : i + 64]
            opt.zero_grad()
            F.cross_entropy(model(data.x[idx]), data.y[idx]).backward()
            opt.step()
    return model


def check(seed: int = 0) -> ClaimResult:
    """Mean PSNR of DIA and IG on the dropout-0.25 and the dropout-free MLP; see the module docstring."""
    test = load("digits", split="test", seed=seed)
    shape = tuple(test.x.shape[1:])
    figures = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the training's dropout masks
        models = {"p025": _trained_mlp(P_DROPOUT, seed), "p0": _trained_mlp(0.0, seed)}
    for tag, model in models.items():
        ig_scores, dia_scores = [], []
        for i in range(VICTIMS):
            x, y = test.x[i : i + 1], test.y[i : i + 1]  # [1, 1, 8, 8], [1]
            update = share(model, F.cross_entropy, x, y, seed=seed * 1000 + i)
            ig = inverting_gradients(
                model, update, input_shape=shape, iterations=ITERATIONS, restarts=1, tv=TV,
                schedule="plateau", seed=seed * 1000 + i,
            )  # fmt: skip
            dia = dropout_inversion(
                model, update, input_shape=shape, iterations=ITERATIONS, seed=seed * 1000 + i
            )
            ig_scores.append(float(psnr(ig.inputs, x)))
            dia_scores.append(float(psnr(dia.inputs, x)))
        figures[f"psnr_ig_{tag}"] = sum(ig_scores) / VICTIMS
        figures[f"psnr_dia_{tag}"] = sum(dia_scores) / VICTIMS
    gap = figures["psnr_dia_p025"] - figures["psnr_ig_p025"]
    gap0 = figures["psnr_dia_p0"] - figures["psnr_ig_p0"]
    figures["gap_db_p025"] = gap
    figures["gap_db_p0"] = gap0
    return ClaimResult(
        method="dropout_inversion",
        claim="PSNR(DIA) - PSNR(IG) >= 3 dB at dropout 0.25, and >= -3 dB at dropout 0 (MLP, digits, B=1)",
        passed=bool(gap >= 3.0 and gap0 >= -3.0),
        figures=figures,
        seed=seed,
    )
