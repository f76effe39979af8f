"""Claim (survey): gradient leakage falls as the batch size and the number of local steps grow.

Guo et al., "Exploring the Vulnerabilities of Federated Learning: A Deep Dive into Gradient Inversion
Attacks" (2025) list batch size and local steps among the factors that weaken optimisation attacks.
Setting (seeded, fixed before running): an MLP 64-32-10 on 8x8 digits; one victim batch for every
B in {1, 4, 8} (the first B of a seeded permutation) and every K in {1, 3, 5} local SGD steps at lr 0.5;
:func:`local_steps_inversion` (Inverting Gradients at K = 1, the unrolled attack for K > 1; labels from
label recovery), 100 iterations, 1 restart. PSNR per cell is the mean over the batch under the best
one-to-one matching of recovered and true examples (the batch order is not recoverable).

Pass: mean PSNR over K at B = 1 exceeds that at B = 8 by >= 3 dB, and mean PSNR over B at K = 1 exceeds
that at K = 5 by >= 2 dB. The whole grid is reported.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from gradinfo.claims import ClaimResult
from gradinfo.datasets import load
from gradinfo.models import mlp
from gradinfo.privacy import psnr, share
from gradinfo.privacy.attacks.local_steps_inversion import local_steps_inversion

SLOW = True  # a few minutes of CPU: nine attacks, the K = 5 ones unrolled
CLAIM = "PSNR(B=1) - PSNR(B=8) >= 3 dB (mean over K) and PSNR(K=1) - PSNR(K=5) >= 2 dB (mean over B)"
BATCHES = (1, 4, 8)
STEPS = (1, 3, 5)
CLIENT_LR = 0.5
ITERATIONS = 100


def matched_psnr(found: Tensor, true: Tensor) -> float:
    """Mean PSNR of ``found`` ``[B, ...]`` against ``true`` under the best one-to-one matching."""
    b = true.shape[0]
    table = psnr(found.repeat_interleave(b, 0), true.repeat(b, *([1] * (true.dim() - 1))))  # [B * B]
    table = table.view(b, b).clamp_max(200.0)  # [found, true]
    rows, cols = linear_sum_assignment(table.numpy(), maximize=True)
    return float(table[rows, cols].mean())


def check(seed: int = 0) -> ClaimResult:
    data = load("digits", seed=seed)
    model = mlp(64, 10, hidden=(32,), seed=seed)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    grid: dict[tuple[int, int], float] = {}
    for b in BATCHES:
        x, y = data.x[order[:b]], data.y[order[:b]]  # [B, 1, 8, 8], [B]
        for k in STEPS:
            update = share(model, F.cross_entropy, x, y, local_steps=k, lr=CLIENT_LR, seed=seed)
            rec = local_steps_inversion(
                model, update, input_shape=(1, 8, 8), iterations=ITERATIONS, restarts=1, seed=seed
            )
            grid[b, k] = matched_psnr(rec.inputs, x)
    by_b = {b: sum(grid[b, k] for k in STEPS) / len(STEPS) for b in BATCHES}
    by_k = {k: sum(grid[b, k] for b in BATCHES) / len(BATCHES) for k in STEPS}
    gap_b = by_b[BATCHES[0]] - by_b[BATCHES[-1]]
    gap_k = by_k[STEPS[0]] - by_k[STEPS[-1]]
    figures = {f"psnr_b{b}_k{k}_db": v for (b, k), v in grid.items()}
    figures.update({"batch_gap_db": gap_b, "steps_gap_db": gap_k})
    return ClaimResult(
        method="local_steps_inversion",
        claim=CLAIM,
        passed=bool(gap_b >= 3 and gap_k >= 2),
        figures=figures,
        seed=seed,
    )
