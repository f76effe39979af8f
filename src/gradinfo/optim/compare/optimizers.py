"""The optimizers a comparison trains, and the papers' split of a model into matrices and the rest.

SinkGD, GaLore and Q-GaLore treat matrices specially: every ``nn.Linear`` weight but the output head is
normalised / projected (Q-GaLore: also stored INT8, :func:`gradinfo.optim.quantize_linears`), everything else
(embeddings, head, norms, biases, convolutions) runs AdamW at the run's ``adamw`` learning rate.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradinfo.optim.diffgrad import DiffGrad
from gradinfo.optim.galore import GaLoreAdamW, QGaLoreAdamW, quantize_linears
from gradinfo.optim.mfac import MFAC
from gradinfo.optim.sinkgd import SinkGD

OPTIMIZERS: dict[str, str] = {
    "adamw": "torch.optim.AdamW",
    "diffgrad": "diffGrad: Adam damped by sigmoid(|g_{t-1} - g_t|)",
    "sinkgd": "SinkGD: stateless row/column normalisation of matrix gradients, AdamW elsewhere",
    "galore": "GaLore: Adam on rank-r projections (SVD every T steps), AdamW elsewhere",
    "qgalore": "Q-GaLore: GaLore with INT4 projectors, lazy refresh, INT8 weights (stochastic rounding)",
    "mfac": "M-FAC: inverse empirical Fisher of the last m gradients (dynamic algorithm)",
}
"""Optimizer names, with what each is."""

RANK, GAP, SCALE = 16, 50, 0.25
"""GaLore / Q-GaLore rank, refresh gap ``T`` and scale ``alpha``."""
NGRADS, DAMPING = 32, 1e-3
"""M-FAC window ``m`` and damping ``lambda``."""


def _head(model: nn.Module) -> nn.Module | None:
    if hasattr(model, "get_output_embeddings"):
        return model.get_output_embeddings()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def matrix_layers(model: nn.Module) -> list[str]:
    """Names of the ``nn.Linear`` modules that SinkGD normalises and GaLore projects (all but the head)."""
    head = _head(model)
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and m is not head]


def _split(model: nn.Module, names: list[str]) -> tuple[list[Tensor], list[Tensor]]:
    matrices = [model.get_submodule(n).weight for n in names]
    chosen = {id(p) for p in matrices}
    return matrices, [p for p in model.parameters() if id(p) not in chosen]


def make_optimizer(
    name: str, model: nn.Module, lr: float, adam_lr: float, seed: int
) -> torch.optim.Optimizer:
    """The optimizer ``name`` for ``model`` (Q-GaLore first swaps the matrix layers for INT8 ones, in place).

    Args:
        name: a key of :data:`OPTIMIZERS`.
        model: the model (fresh from :meth:`gradinfo.tasks.Task.model`).
        lr: its learning rate.
        adam_lr: learning rate of the parameters SinkGD / GaLore / Q-GaLore leave to AdamW.
        seed: seeds Q-GaLore's stochastic rounding.
    """
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr)
    if name == "diffgrad":
        return DiffGrad(model.parameters(), lr=lr)
    if name == "mfac":
        return MFAC(model.named_parameters(), lr=lr, ngrads=NGRADS, damping=DAMPING)
    names = matrix_layers(model)
    if name == "sinkgd":
        matrices, rest = _split(model, names)
        return SinkGD(
            [
                {"params": matrices, "lr": lr, "sinkhorn": True},
                {"params": rest, "lr": adam_lr, "sinkhorn": False},
            ]
        )
    common = {"lr": lr, "rank": RANK, "update_proj_gap": GAP, "scale": SCALE}
    if name == "galore":
        matrices, rest = _split(model, names)
        return GaLoreAdamW([{"params": matrices}, {"params": rest, "rank": None, "lr": adam_lr}], **common)
    layers = quantize_linears(model, names, group_size=256)
    matrices, rest = _split(model, names)
    groups = [{"params": matrices}, {"params": rest, "rank": None, "lr": adam_lr}]
    return QGaLoreAdamW(groups, **common, int8_layers=layers, seed=seed)
