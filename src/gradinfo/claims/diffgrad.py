"""Claim check for diffGrad (paper 25): it ends lower than Adam on the paper's synthetic 1-D functions.

"diffGrad: An Optimization Method for Convolutional Neural Networks" (2019), section on the three
non-convex 1-D functions (the repository's ``diffGrad_analytical.ipynb``): both optimizers start at
``x0 = -1`` and run 300 steps with ``lr = 0.1``, ``betas = (0.95, 0.999)``, ``eps = 1e-8``. The functions
(continuous antiderivatives of the notebook's piecewise gradients):

- F1: ``x^2 + 0.6 x`` for ``x <= 0``, ``x^2 - 0.4 x`` for ``x > 0`` (global minimum -0.09 at -0.3, a local
  one at 0.2);
- F2: ``x^3 + x sin(8x)/8 - 7 cos(8x)/64`` for ``x > -0.9``, continued linearly with slope -40 below;
- F3: ``x^2`` for ``|x| >= 0.5``, slopes ``+1, -7/8, 7/8, -1`` on ``(-0.5, -0.4], (-0.4, 0], (0, 0.4],
  (0.4, 0.5]`` (global minimum 0 at 0, local ones at +-0.5).

Pass: diffGrad's final ``F(x)`` is below Adam's on at least 2 of the 3. The experiment is deterministic (no
random draws); ``seed`` is recorded only.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from gradinfo.claims import ClaimResult
from gradinfo.optim.diffgrad import DiffGrad

STEPS = 300
LR = 0.1
BETAS = (0.95, 0.999)
X0 = -1.0


def f1(x: Tensor) -> Tensor:
    return torch.where(x <= 0, x**2 + 0.6 * x, x**2 - 0.4 * x)


def _f2_smooth(x: Tensor) -> Tensor:
    return x**3 + x * torch.sin(8 * x) / 8 - 7 * torch.cos(8 * x) / 64


def f2(x: Tensor) -> Tensor:
    edge = torch.full_like(x, -0.9)
    return torch.where(x <= -0.9, _f2_smooth(edge) - 40 * (x + 0.9), _f2_smooth(x))


def f3(x: Tensor) -> Tensor:
    return torch.where(
        x <= -0.5,
        x**2,
        torch.where(
            x <= -0.4,
            0.25 + (x + 0.5),
            torch.where(
                x <= 0,
                -7 / 8 * x,
                torch.where(x <= 0.4, 7 / 8 * x, torch.where(x <= 0.5, 0.35 - (x - 0.4), x**2)),
            ),
        ),
    )


FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {"f1": f1, "f2": f2, "f3": f3}


def minimize(fn: Callable[[Tensor], Tensor], optimizer: str) -> float:
    """Run ``STEPS`` steps of ``"adam"`` or ``"diffgrad"`` on ``fn`` from ``X0``; return ``fn(x_final)``."""
    x = torch.nn.Parameter(torch.tensor([X0], dtype=torch.float64))
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam([x], lr=LR, betas=BETAS, eps=1e-8)
    else:
        opt = DiffGrad([x], lr=LR, betas=BETAS, eps=1e-8)
    for _ in range(STEPS):
        opt.zero_grad()
        fn(x).sum().backward()
        opt.step()
    value = fn(x.detach()).item()
    return value if math.isfinite(value) else math.inf


def check(seed: int = 0) -> ClaimResult:
    figures: dict[str, float] = {}
    wins = 0
    for name, fn in FUNCTIONS.items():
        adam, diffgrad = minimize(fn, "adam"), minimize(fn, "diffgrad")
        figures[f"{name}_adam"] = adam
        figures[f"{name}_diffgrad"] = diffgrad
        wins += diffgrad < adam
    figures["diffgrad_wins"] = wins
    return ClaimResult(
        method="diffgrad",
        claim="diffGrad's final F(x) < Adam's on >= 2 of the paper's 3 synthetic 1-D functions",
        passed=bool(wins >= 2),
        figures=figures,
        seed=seed,
    )
