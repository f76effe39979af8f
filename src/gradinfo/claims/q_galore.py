"""Claim check for Q-GaLore (paper 13): GaLore's loss at far less memory and fewer SVDs.

"Q-GaLore: Quantized GaLore with INT4 Projection and Layer-Adaptive Low-Rank Gradients" (2024). A tiny
Llama (hidden 128, 4 layers, byte vocabulary) trained on the ``text`` corpus, batch 16 x 64 bytes, 300 steps,
lr 1e-2, scale 0.25, rank 32, ``T = 20``; embeddings, head and norms on full-rank AdamW (``rank=None``):

- GaLore: fp32 weights and projectors, fixed ``T``;
- Q-GaLore: every ``nn.Linear`` but the head as INT8 (group 256) updated with stochastic rounding, INT4
  projectors (group 256), lazy refresh (queue 5, ``|cos| >= 0.4`` doubles ``T``);
- Q-GaLore with round-to-nearest instead of stochastic rounding;
- fp32 AdamW, one step, for the byte count only.

Pass (all four, thresholds fixed before the first run): Q-GaLore's held-out loss <= 1.05 x GaLore's; its
SVD calls <= 0.7 x GaLore's; round-to-nearest "clearly worse": held-out loss >= 1.02 x stochastic rounding's;
Q-GaLore's bytes (weights + optimizer state + projectors) <= 0.5 x fp32 AdamW's.
"""

from __future__ import annotations

import torch
from torch import nn

from gradinfo.claims import ClaimResult
from gradinfo.claims._tiny_lm import train
from gradinfo.optim.galore import (
    GaLoreAdamW,
    Int8Linear,
    QGaLoreAdamW,
    memory_bytes,
    quantize_linears,
    svd_calls,
)
from gradinfo.transform import TransformOptimizer

SLOW = True
STEPS = 300
HIDDEN, LAYERS = 128, 4
LR, RANK, GAP, SCALE = 1e-2, 32, 20, 0.25


def _groups(model: nn.Module) -> list[dict[str, object]]:
    """Linear weights but the head in the projected group; embeddings, head and norms full-rank."""
    head = model.get_output_embeddings()
    matrices = [m.weight for m in model.modules() if isinstance(m, (nn.Linear, Int8Linear)) and m is not head]
    chosen = {id(p) for p in matrices}
    rest = [p for p in model.parameters() if id(p) not in chosen]
    return [{"params": matrices}, {"params": rest, "rank": None}]


def _run(kind: str, seed: int) -> tuple[float, int, dict[str, int]]:
    made: list[tuple[nn.Module, TransformOptimizer]] = []
    layers: list[Int8Linear] = []

    def prepare(model: nn.Module) -> None:
        if kind != "galore":
            layers.extend(quantize_linears(model, group_size=256))

    def make(model: nn.Module) -> TransformOptimizer:
        common = {"lr": LR, "rank": RANK, "update_proj_gap": GAP, "scale": SCALE}
        if kind == "galore":
            opt: TransformOptimizer = GaLoreAdamW(_groups(model), **common)
        else:
            opt = QGaLoreAdamW(
                _groups(model), **common, int8_layers=layers, stochastic_round=kind == "q_galore", seed=seed
            )
        made.append((model, opt))
        return opt

    run = train(make, STEPS, seed, hidden_size=HIDDEN, num_layers=LAYERS, prepare=prepare)
    model, opt = made[0]
    return run.eval_loss, svd_calls(opt), memory_bytes(model, opt)


def _adamw_bytes(seed: int) -> int:
    made: list[tuple[nn.Module, torch.optim.Optimizer]] = []

    def make(model: nn.Module) -> torch.optim.Optimizer:
        made.append((model, torch.optim.AdamW(model.parameters(), lr=LR)))
        return made[-1][1]

    train(make, 1, seed, hidden_size=HIDDEN, num_layers=LAYERS)
    return memory_bytes(*made[0])["total"]


def check(seed: int = 0) -> ClaimResult:
    galore_loss, galore_svd, _ = _run("galore", seed)
    q_loss, q_svd, q_bytes = _run("q_galore", seed)
    rtn_loss, _, _ = _run("q_galore_rtn", seed)
    adamw_bytes = _adamw_bytes(seed)
    figures = {
        "galore_loss": galore_loss,
        "q_galore_loss": q_loss,
        "q_galore_rtn_loss": rtn_loss,
        "loss_ratio_q_over_galore": q_loss / galore_loss,
        "loss_ratio_rtn_over_sr": rtn_loss / q_loss,
        "galore_svd_calls": galore_svd,
        "q_galore_svd_calls": q_svd,
        "svd_ratio": q_svd / galore_svd,
        "q_galore_weight_bytes": q_bytes["weights"],
        "q_galore_state_bytes": q_bytes["optimizer_state"],
        "q_galore_projector_bytes": q_bytes["projectors"],
        "q_galore_total_bytes": q_bytes["total"],
        "adamw_total_bytes": adamw_bytes,
        "bytes_ratio": q_bytes["total"] / adamw_bytes,
    }
    passed = (
        figures["loss_ratio_q_over_galore"] <= 1.05
        and figures["svd_ratio"] <= 0.7
        and figures["loss_ratio_rtn_over_sr"] >= 1.02
        and figures["bytes_ratio"] <= 0.5
    )
    return ClaimResult(
        method="q_galore",
        claim="loss <= 1.05 x GaLore's; SVD calls <= 0.7 x; round-to-nearest INT8 loss >= 1.02 x stochastic "
        "rounding's; weights + state + projector bytes <= 0.5 x fp32 AdamW's",
        passed=bool(passed),
        figures=figures,
        seed=seed,
    )
