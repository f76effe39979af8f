"""Claim check for gradient-normalised-smoothness Newton (paper 26): a global linear rate with approximate
Hessians on softmax regression, in far fewer iterations than gradient descent with line search.

"Gradient-Normalized Smoothness for Optimization with Approximate Hessians" (2025).

L2-regularised (mu = 1e-3) softmax regression on the digits training split (64 pixels + a bias input, 10
classes: 650 parameters, float64), from zero. Hessians: the exact one; the sampled-label Fisher
``(1/N) sum_n g_n g_n^T + mu I`` with ``g_n`` the per-example gradient
(``gradinfo.capture.per_example_grads``)
at a label drawn from the model's own prediction; and the exact Hessian of a fresh 10% subsample (+ mu I).
The baseline is gradient descent with the official backtracking line search (``L`` halved after a success,
doubled after a failure: it tunes its own step), given up to ``GD_ITERS = 20000`` iterations so that it can
reach the target (it does, in about 1.7k: the old check's "GD not there after 1000" compared against a
budget the baseline could not meet). Pass: GD reaches ``||grad f|| <= 1e-8``; the Fisher and the subsampled
Hessian reach it within 200 iterations with ``log ||grad f||`` falling linearly (least-squares slope < 0,
R^2 > 0.9) and in at most ``1 / SPEEDUP`` of GD's iterations. Wall-clock seconds of each are figures, not
criteria: the paper's claim is an iteration rate, and at 650 parameters a Newton step (a Hessian and a
Cholesky solve) costs about as much as 40 line-searched GD steps (seed 0, one thread: GD 1674 iterations in
4.9 s, Fisher-Newton 40 in 5.8 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from gradinfo.capture import per_example_grads
from gradinfo.claims import ClaimResult
from gradinfo.datasets import load
from gradinfo.optim.gns_newton import gns_newton

SLOW = True

PAPER_EFFECT = (
    "softmax/logistic regression figures: approximate-Hessian (Fisher, subsampled) regularised Newton "
    "converges linearly to ||grad|| 1e-8 in tens to ~200 iterations, first-order methods need > 1000 "
    "(digest of paper 26)"
)

MU, TOL, NEWTON_ITERS, GD_ITERS, CLASSES = 1e-3, 1e-8, 200, 20000, 10
SPEEDUP = 10


def _problem(seed: int) -> tuple[Tensor, Tensor]:
    train = load("digits", split="train", seed=seed)
    x = train.x.reshape(len(train.x), -1).double()  # [N, 64]
    return torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1), train.y  # [N, 65], [N]


def _loss(w: Tensor, x: Tensor, y: Tensor) -> Tensor:
    return nn.functional.cross_entropy(x @ w.reshape(CLASSES, -1).T, y) + MU / 2 * w.square().sum()


def _hessian(w: Tensor, x: Tensor) -> Tensor:
    """Exact Hessian of the mean cross-entropy + mu/2 |w|^2: (1/n) sum_n (diag p - p p^T) (x) x x^T + mu I."""
    p = torch.softmax(x @ w.reshape(CLASSES, -1).T, 1)  # [n, C]
    a = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # [n, C, C]
    h = torch.einsum("ncd,ni,nj->cidj", a, x, x).reshape(w.numel(), w.numel()) / len(x)  # [P, P]
    return h + MU * torch.eye(w.numel(), dtype=w.dtype)


def _fisher(x: Tensor, gen: torch.Generator) -> Callable[[Tensor], Tensor]:
    layer = nn.Linear(x.shape[1], CLASSES, bias=False).double()

    def fisher(w: Tensor) -> Tensor:
        with torch.no_grad():
            layer.weight.copy_(w.reshape(CLASSES, -1))
            p = torch.softmax(layer(x), 1)  # [N, C]
        sampled = torch.multinomial(p, 1, generator=gen)[:, 0]  # [N]
        g = per_example_grads(layer, nn.functional.cross_entropy, x, sampled)["weight"].reshape(len(x), -1)
        return g.T @ g / len(x) + MU * torch.eye(w.numel(), dtype=w.dtype)  # [P, P]

    return fisher


def _linear_fit(grad_norms: Tensor) -> tuple[float, float]:
    """Least-squares slope of log ||grad f|| against the iteration, and its R^2."""
    logs = grad_norms.log()  # [k]
    k = torch.arange(len(logs), dtype=torch.float64)
    design = torch.stack([k, torch.ones_like(k)], 1)  # [k, 2]
    coef = torch.linalg.lstsq(design, logs[:, None]).solution[:, 0]  # [2]
    resid = logs - design @ coef
    return float(coef[0]), float(1 - resid.square().sum() / (logs - logs.mean()).square().sum())


def _gradient_descent(f: Callable[[Tensor], Tensor], w: Tensor) -> tuple[int, float]:
    """Gradient method with the official backtracking line search; (iterations, final ||grad f||)."""
    lip = 1.0
    for k in range(GD_ITERS):
        with torch.enable_grad():
            wk = w.detach().requires_grad_(True)
            value = f(wk)
            (g,) = torch.autograd.grad(value, wk)
        if g.norm() <= TOL:
            return k, float(g.norm())
        for _ in range(30):
            trial = w - g / lip
            if f(trial) <= value + g @ (trial - w) + 0.5 * lip * (trial - w).square().sum():
                lip = max(lip / 2, 1e-5)
                break
            lip *= 2
        w = trial.detach()
    with torch.enable_grad():
        wk = w.requires_grad_(True)
        (g,) = torch.autograd.grad(f(wk), wk)
    return GD_ITERS, float(g.norm())


def check(seed: int = 0) -> ClaimResult:
    """Run the three Newton variants and gradient descent; figures per variant and for GD."""
    x, y = _problem(seed)
    gen = torch.Generator().manual_seed(seed)
    w0 = torch.zeros(CLASSES * x.shape[1], dtype=torch.float64)

    def f(w: Tensor) -> Tensor:
        return _loss(w, x, y)

    def subsampled(w: Tensor) -> Tensor:
        idx = torch.randperm(len(x), generator=gen)[: len(x) // 10]
        return _hessian(w, x[idx])

    hessians = {"exact": lambda w: _hessian(w, x), "fisher": _fisher(x, gen), "subsampled": subsampled}
    figures: dict[str, float] = {}
    ok = True
    start = time.perf_counter()
    gd_iters, gd_norm = _gradient_descent(f, w0)
    gd_seconds = time.perf_counter() - start
    figures |= {"gd_iters": gd_iters, "gd_final_grad_norm": gd_norm, "gd_seconds": gd_seconds}
    ok = gd_norm <= TOL
    for name, hessian in hessians.items():
        start = time.perf_counter()
        run = gns_newton(f, w0, hessian=hessian, iters=NEWTON_ITERS, grad_tol=TOL)
        seconds = time.perf_counter() - start
        slope, r2 = _linear_fit(run.grad_norms)
        figures |= {
            f"{name}_iters": run.iterations,
            f"{name}_slope": slope,
            f"{name}_r2": r2,
            f"{name}_seconds": seconds,
        }
        if name != "exact":
            linear = run.converged and slope < 0 and r2 > 0.9
            ok = ok and linear and run.iterations * SPEEDUP <= gd_iters
    return ClaimResult(
        "gns_newton",
        f"GD with line search reaches ||grad|| <= {TOL:g} (within {GD_ITERS}); Fisher and 10%-subsampled "
        f"Hessians reach it within {NEWTON_ITERS} iterations with log||grad|| linear (slope < 0, R^2 > 0.9) "
        f"and in <= 1/{SPEEDUP} of GD's iterations",
        bool(ok),
        figures,
        seed=seed,
    )
