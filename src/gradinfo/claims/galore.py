"""Claim check for GaLore (paper 13): AdamW's loss at a fraction of its optimizer-state bytes.

"Q-GaLore: Quantized GaLore with INT4 Projection and Layer-Adaptive Low-Rank Gradients" (2024) restates
GaLore's claim: projecting weight gradients into a low-rank subspace reduces memory "without compromising
performance". The same set-up as the Q-GaLore check: a tiny Llama (hidden 128, 4 layers, byte vocabulary)
trained on the ``text`` corpus, batch 16 x 64 bytes, 300 steps; GaLore with rank 32, ``T = 20``, scale 0.25
on every ``nn.Linear`` but the head (embeddings, head and norms on full-rank AdamW, as in the paper).
Each optimizer gets a fixed 3-point learning-rate grid around its usual value (AdamW 1e-3, 3e-3, 1e-2;
GaLore 3e-3, 1e-2, 3e-2) and its best held-out loss counts.

Pass (both, thresholds fixed before the first run): GaLore's best held-out loss <= 1.05 x AdamW's, and
GaLore's optimizer state plus projectors (every tensor it holds, fp32) <= 0.5 x AdamW's optimizer state.
"""

from __future__ import annotations

import torch
from torch import nn

from gradinfo.claims import ClaimResult
from gradinfo.claims._tiny_lm import train
from gradinfo.optim.galore import GaLoreAdamW, memory_bytes

SLOW = True
STEPS = 300
HIDDEN, LAYERS = 128, 4
RANK, GAP, SCALE = 32, 20, 0.25
ADAMW_LRS = (1e-3, 3e-3, 1e-2)
GALORE_LRS = (3e-3, 1e-2, 3e-2)


def _groups(model: nn.Module) -> list[dict[str, object]]:
    """Linear weights but the head in the projected group; embeddings, head and norms full-rank."""
    head = model.get_output_embeddings()
    matrices = [m.weight for m in model.modules() if isinstance(m, nn.Linear) and m is not head]
    chosen = {id(p) for p in matrices}
    return [
        {"params": matrices},
        {"params": [p for p in model.parameters() if id(p) not in chosen], "rank": None},
    ]


def _run(make: object, lr: float, seed: int) -> tuple[float, int]:
    """Held-out loss after training, and the optimizer's state + projector bytes."""
    made: list[tuple[nn.Module, torch.optim.Optimizer]] = []

    def build(model: nn.Module) -> torch.optim.Optimizer:
        made.append((model, make(model, lr)))  # type: ignore[operator]
        return made[-1][1]

    run = train(build, STEPS, seed, hidden_size=HIDDEN, num_layers=LAYERS)
    sizes = memory_bytes(*made[0])
    return run.eval_loss, sizes["optimizer_state"] + sizes["projectors"]


def check(seed: int = 0) -> ClaimResult:
    """Train AdamW and GaLore on the same grid; figures: best losses, their learning rates, byte counts."""
    adamw = {
        lr: _run(lambda model, lr: torch.optim.AdamW(model.parameters(), lr=lr), lr, seed) for lr in ADAMW_LRS
    }
    galore = {
        lr: _run(
            lambda model, lr: GaLoreAdamW(_groups(model), lr=lr, rank=RANK, update_proj_gap=GAP, scale=SCALE),
            lr,
            seed,
        )
        for lr in GALORE_LRS
    }
    adamw_lr = min(adamw, key=lambda lr: adamw[lr][0])
    galore_lr = min(galore, key=lambda lr: galore[lr][0])
    (adamw_loss, adamw_bytes), (galore_loss, galore_bytes) = adamw[adamw_lr], galore[galore_lr]
    figures = {
        "adamw_loss": adamw_loss,
        "adamw_best_lr": adamw_lr,
        "galore_loss": galore_loss,
        "galore_best_lr": galore_lr,
        "loss_ratio": galore_loss / adamw_loss,
        "adamw_state_bytes": adamw_bytes,
        "galore_state_and_projector_bytes": galore_bytes,
        "bytes_ratio": galore_bytes / adamw_bytes,
        **{f"adamw_loss_lr{lr:g}": v[0] for lr, v in adamw.items()},
        **{f"galore_loss_lr{lr:g}": v[0] for lr, v in galore.items()},
    }
    return ClaimResult(
        method="galore",
        claim="best held-out loss (3-point lr grid each) GaLore <= 1.05 x AdamW on a tiny Llama; GaLore's "
        "optimizer state + projector bytes <= 0.5 x AdamW's optimizer state",
        passed=bool(figures["loss_ratio"] <= 1.05 and figures["bytes_ratio"] <= 0.5),
        figures=figures,
        seed=seed,
    )
