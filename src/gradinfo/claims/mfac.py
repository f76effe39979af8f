"""Claim check for M-FAC (paper 43): exact inverse-Fisher products, and an optimizer that beats tuned SGD.

1. Exactness (float64, d = 300, m = 32, lambda = 1e-3): the static algorithm's IHVP and inverse diagonal,
   full and in blocks of 64, match the dense inverse of ``lambda I + (1/m) G^T G`` (or of its block
   diagonal) to relative error <= 1e-8.
2. Optimizer: an MLP (64-64-10) on digits, 300 steps of batch 64, the same seed and batches for both.
   The baseline is SGD with momentum, as in the paper's optimization experiments, and both get the same
   tuning budget: every ``lr`` of ``LRS`` (1e-3 to 1, half-decades) times momentum in ``MOMENTA`` (0, 0.9);
   M-FAC runs with m = 32, lambda = 1e-3. Pass: M-FAC's best final training loss is below SGD's best.

Result (criterion fixed before the run): it fails at 4 of 5 seeds. Best final training losses, SGD vs
M-FAC: seed 0 0.015 vs 0.037, seed 1 0.008 vs 0.019, seed 2 0.009 vs 0.024, seed 4 0.010 vs 0.015 (SGD's
best at lr 0.3 with momentum 0.9, inside the grid); seed 3 0.039 vs 0.010 (SGD's best there at lr 1
without momentum). M-FAC's best is at lr 0.01. The old check's win came from SGD without momentum. M-FAC stays
``implemented``; its exactness part passes (relative errors ~1e-12). The paper's window is m = 1024
gradients (its ``m^3`` Gram updates are out of reach here), so a larger window might still close the gap.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gradinfo.capture.inverse_fisher import InverseFisher
from gradinfo.claims import ClaimResult
from gradinfo.claims._digits import flat_digits, train
from gradinfo.models import mlp
from gradinfo.optim.mfac import MFAC

SLOW = True

PAPER_EFFECT = (
    "optimization experiments (CIFAR ResNets): M-FAC matches or beats tuned SGD with momentum at the same "
    "epochs; the digest gives no table figure, so the margin is 0"
)

LRS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
MOMENTA = (0.0, 0.9)
STEPS, BATCH, NGRADS, DAMPING = 300, 64, 32, 1e-3


def _rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _exactness(seed: int) -> dict[str, float]:
    gen = torch.Generator().manual_seed(seed)
    m, d, lam, block = 32, 300, 1e-3, 64
    grads = torch.randn(m, d, generator=gen, dtype=torch.float64)  # [m, d]
    v = torch.randn(d, generator=gen, dtype=torch.float64)  # [d]
    dense = lam * torch.eye(d, dtype=torch.float64) + grads.T @ grads / m  # [d, d]
    inv = torch.linalg.inv(dense)  # [d, d]
    blocks = torch.zeros_like(dense)  # [d, d]
    for s in range(0, d, block):
        blocks[s : s + block, s : s + block] = torch.linalg.inv(dense[s : s + block, s : s + block])
    full, split = InverseFisher(grads, lam), InverseFisher(grads, lam, block_size=block)
    return {
        "ihvp_rel_err": _rel(full.ihvp(v), inv @ v),
        "diag_rel_err": _rel(full.diag(), inv.diag()),
        "block_ihvp_rel_err": _rel(split.ihvp(v), blocks @ v),
        "block_diag_rel_err": _rel(split.diag(), blocks.diag()),
    }


def _train(make_opt, seed: int) -> float:
    """The final training loss of a seeded MLP trained by ``make_opt(model)`` (inf if it diverged)."""
    x, y = flat_digits("train", seed)  # [N, 64], [N]
    model = mlp(64, 10, hidden=(64,), seed=seed)
    train(model, make_opt(model), x, y, steps=STEPS, batch=BATCH, gen=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        loss = float(nn.functional.cross_entropy(model(x), y))
    return loss if math.isfinite(loss) else math.inf


def _sgd(model: nn.Module, lr: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)


def _mfac(model: nn.Module, lr: float, momentum: float) -> torch.optim.Optimizer:
    return MFAC(model.named_parameters(), lr=lr, ngrads=NGRADS, damping=DAMPING, momentum=momentum)


def check(seed: int = 0) -> ClaimResult:
    """Run both parts; figures: relative errors, best final training losses and their learning rates."""
    figures = _exactness(seed)
    exact = all(v <= 1e-8 for v in figures.values())
    grid = [(lr, mom) for lr in LRS for mom in MOMENTA]
    sgd = {(lr, mom): _train(lambda m, lr=lr, mom=mom: _sgd(m, lr, mom), seed) for lr, mom in grid}
    fac = {(lr, mom): _train(lambda m, lr=lr, mom=mom: _mfac(m, lr, mom), seed) for lr, mom in grid}
    sgd_at, mfac_at = min(sgd, key=sgd.get), min(fac, key=fac.get)
    figures |= {
        "sgd_final_loss": sgd[sgd_at],
        "sgd_best_lr": sgd_at[0],
        "sgd_best_momentum": sgd_at[1],
        "mfac_final_loss": fac[mfac_at],
        "mfac_best_lr": mfac_at[0],
        "mfac_best_momentum": mfac_at[1],
    }
    return ClaimResult(
        "mfac",
        "IHVP/diag (full and block) relative error <= 1e-8 vs dense float64; M-FAC final train loss < SGD's "
        f"(MLP on digits, {STEPS} steps, best of the same lr x momentum grid for both)",
        bool(exact and fac[mfac_at] < sgd[sgd_at]),
        figures,
        seed=seed,
    )
