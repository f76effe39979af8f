"""Claim check for M-FAC (paper 43): exact inverse-Fisher products, and an optimizer that beats SGD.

1. Exactness (float64, d = 300, m = 32, lambda = 1e-3): the static algorithm's IHVP and inverse diagonal,
   full and in blocks of 64, match the dense inverse of ``lambda I + (1/m) G^T G`` (or of its block
   diagonal) to relative error <= 1e-8.
2. Optimizer: an MLP (64-64-10) on digits, 300 steps of batch 64, the same seed and batches for both;
   each optimizer takes its best learning rate from a fixed grid (SGD: 0.03, 0.1, 0.3, 1.0; M-FAC with
   m = 32, lambda = 1e-3: 0.003, 0.01, 0.03). Pass: M-FAC's final training loss is below SGD's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradinfo.capture.inverse_fisher import InverseFisher
from gradinfo.claims import ClaimResult
from gradinfo.claims._digits import flat_digits, train
from gradinfo.models import mlp
from gradinfo.optim.mfac import MFAC

SLOW = True

SGD_LRS = (0.03, 0.1, 0.3, 1.0)
MFAC_LRS = (0.003, 0.01, 0.03)
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
    x, y = flat_digits("train", seed)  # [N, 64], [N]
    model = mlp(64, 10, hidden=(64,), seed=seed)
    train(model, make_opt(model), x, y, steps=STEPS, batch=BATCH, gen=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model(x), y))


def check(seed: int = 0) -> ClaimResult:
    """Run both parts; figures: relative errors, best final training losses and their learning rates."""
    figures = _exactness(seed)
    exact = all(v <= 1e-8 for v in figures.values())
    sgd = {lr: _train(lambda m, lr=lr: torch.optim.SGD(m.parameters(), lr=lr), seed) for lr in SGD_LRS}
    fac = {
        lr: _train(lambda m, lr=lr: MFAC(m.named_parameters(), lr=lr, ngrads=NGRADS, damping=DAMPING), seed)
        for lr in MFAC_LRS
    }
    sgd_lr, mfac_lr = min(sgd, key=sgd.get), min(fac, key=fac.get)
    figures |= {
        "sgd_final_loss": sgd[sgd_lr],
        "sgd_best_lr": sgd_lr,
        "mfac_final_loss": fac[mfac_lr],
        "mfac_best_lr": mfac_lr,
    }
    return ClaimResult(
        "mfac",
        "IHVP/diag (full and block) relative error <= 1e-8 vs dense float64; M-FAC final train loss < SGD's "
        f"(MLP on digits, {STEPS} steps, best lr of each grid)",
        bool(exact and fac[mfac_lr] < sgd[sgd_lr]),
        figures,
        seed=seed,
    )
