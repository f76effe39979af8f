"""Claim check for SinkGD (paper 31): the normalisation reaches its targets, and training matches AdamW.

"Gradient Multi-Normalization for Stateless and Scalable LLM Training" (2025). Two parts:

1. Convergence: ``sinkhorn_normalize`` with ``L = 20`` on seeded random ``[m, n]`` matrices and on real
   weight gradients of the tiny Llama: every row norm within 1e-3 of ``sqrt(n)`` and every column norm
   within 1e-3 of ``sqrt(m)`` (relative).
2. Training: a tiny Llama (hidden 64, 2 layers) on the ``text`` corpus, 200 steps, batch 16 x 64 bytes.
   Each optimizer gets the same 3-point learning-rate grid around its usual value (AdamW: 1e-3, 3e-3,
   1e-2; SinkGD matrices: 3e-3, 1e-2, 3e-2 with its AdamW group at 3e-3), the best held-out loss of each
   counts. Pass: SinkGD's <= 1.05 x AdamW's, and all matrix parameters hold no optimizer state.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gradinfo.claims import ClaimResult
from gradinfo.claims._tiny_lm import train
from gradinfo.models import tiny_llama
from gradinfo.optim.sinkgd import SinkGD, sinkgd_param_groups, sinkhorn_normalize

SLOW = True
STEPS = 200
ADAMW_LRS = (1e-3, 3e-3, 1e-2)
SINKGD_LRS = (3e-3, 1e-2, 3e-2)
SINKGD_ADAM_LR = 3e-3


def _norm_error(g: torch.Tensor) -> float:
    m, n = g.shape
    out = sinkhorn_normalize(g.double(), iterations=20)
    rows = (out.norm(dim=1) / math.sqrt(n) - 1).abs().max()
    cols = (out.norm(dim=0) / math.sqrt(m) - 1).abs().max()
    return max(rows.item(), cols.item())


def _model_gradients(seed: int) -> list[torch.Tensor]:
    model = tiny_llama(seed=seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(256, (4, 32), generator=gen)  # [B, T]
    logits = model(input_ids=x).logits  # [B, T, V]
    nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten()).backward()
    return [m.weight.grad for m in model.modules() if isinstance(m, nn.Linear)]


def check(seed: int = 0) -> ClaimResult:
    gen = torch.Generator().manual_seed(seed)
    randoms = [torch.randn(m, n, generator=gen) for m, n in [(8, 32), (64, 64), (128, 16)]]
    norm_error = max(_norm_error(g) for g in randoms + _model_gradients(seed))

    adamw = min(
        train(lambda model, lr=lr: torch.optim.AdamW(model.parameters(), lr=lr), STEPS, seed).eval_loss
        for lr in ADAMW_LRS
    )
    sink_losses, matrix_state = [], 0
    for lr in SINKGD_LRS:
        optimizers: list[SinkGD] = []

        def make(model: nn.Module, lr: float = lr, optimizers: list[SinkGD] = optimizers) -> SinkGD:
            optimizers.append(SinkGD(sinkgd_param_groups(model, lr=lr, adam_lr=SINKGD_ADAM_LR)))
            return optimizers[-1]

        sink_losses.append(train(make, STEPS, seed).eval_loss)
        opt = optimizers[0]
        matrix_state += sum(len(opt.state[p]) for p in opt.param_groups[0]["params"])
    sinkgd = min(sink_losses)
    ratio = sinkgd / adamw
    return ClaimResult(
        method="sinkgd",
        claim="row/column norms within 1e-3 of sqrt(n)/sqrt(m) after 20 iterations; no matrix state; "
        "best held-out loss (3-point lr grid each) SinkGD <= 1.05 x AdamW on a tiny Llama",
        passed=bool(norm_error <= 1e-3 and matrix_state == 0 and ratio <= 1.05),
        figures={
            "max_relative_norm_error": norm_error,
            "matrix_state_entries": matrix_state,
            "adamw_loss": adamw,
            "sinkgd_loss": sinkgd,
            "loss_ratio": ratio,
            **{f"sinkgd_loss_lr{lr:g}": v for lr, v in zip(SINKGD_LRS, sink_losses, strict=True)},
        },
        seed=seed,
    )
