"""Regularised Newton steps with approximate Hessians, regularised by the gradient norm (Algorithm 1).

From "Gradient-Normalized Smoothness for Optimization with Approximate Hessians" (2025, Doikov,
Stich, Jaggi; arXiv:2506.13710). With ``g = grad f(x)``, an approximate Hessian ``H`` (exact,
Fisher, Gauss-Newton, subsampled, ...) and ``gamma_k > 0``, one step is

    x+ = x - (H + lambda_k I)^{-1} g,     lambda_k = ||g|| / (gamma_k + eps),

and the adaptive search of Algorithm 1 accepts it when

    f(x) - f(x+) >= ||grad f(x+)||^2 / (8 lambda_k),

then doubles ``gamma`` (``gamma <- max(2 gamma, gamma_min)``); otherwise it halves ``gamma`` and retries,
at most 40 times (after which the last trial step is taken, as in the official code). Defaults follow
epfml/grad-norm-smooth (``src/methods.py``): ``gamma_0 = 1``, ``gamma_min = 1e-9``, ``eps = 1e-8``,
Euclidean norm (``B = I``).

Two forms:

- :func:`gns_newton` minimises a function of a flat vector with explicit ``[d, d]`` Hessians (exact by
  autograd, or any approximation given as a function), solving by Cholesky as the paper's experiments do;
- :class:`GNSNewton` is a ``torch.optim.Optimizer`` for models: a closure gives the loss and gradients,
  a curvature-vector product (``gradinfo.capture.hvp`` / ``gnvp`` bound to a batch, or any ``Grads ->
  Grads`` function) gives ``H v``, and the system is solved matrix-free by conjugate gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from gradinfo.core.registry import Conformance, register
from gradinfo.core.types import Grads
from gradinfo.core.validate import positive, positive_int

MAX_SEARCH = 40
"""Adaptive-search tries per iteration (Algorithm 1; the official code's ``adaptive_search_max_iter``)."""


@dataclass(frozen=True)
class GNSResult:
    """What :func:`gns_newton` did.

    Attributes:
        x: ``[d]`` the last iterate.
        losses: ``[k + 1]`` ``f`` at every iterate, the start included.
        grad_norms: ``[k + 1]`` ``||grad f||`` at every iterate.
        gammas: ``[k + 1]`` ``gamma`` before every iteration's search (the last: after the final one).
        iterations: accepted steps ``k``.
        solves: linear systems solved (one per search try).
        converged: ``grad_tol`` was given and reached.
    """

    x: Tensor
    losses: Tensor
    grad_norms: Tensor
    gammas: Tensor
    iterations: int
    solves: int
    converged: bool


def _check_search(gamma0: float, gamma_min: float, eps: float) -> tuple[float, float, float]:
    return (
        positive("gamma0", gamma0),
        positive("gamma_min", gamma_min, allow_zero=True),
        positive("eps", eps, allow_zero=True),
    )


def _value_and_grad(f: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        value = f(x)
        if not isinstance(value, Tensor) or value.numel() != 1:
            raise ValueError(f"f must return a scalar tensor, got {type(value).__name__} {value!r}")
        (grad,) = torch.autograd.grad(value.reshape(()), x)
    return value.detach().reshape(()), grad  # [], [d]


def exact_hessian(f: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``x -> [d, d]`` Hessian of ``f`` at ``x`` by autograd (for problems small enough to hold it)."""

    def hessian(x: Tensor) -> Tensor:
        return torch.autograd.functional.hessian(f, x.detach())  # [d, d]

    return hessian


@register(
    "gns_newton",
    family="optim",
    paper=26,
    summary="Regularised Newton step (H + λI)^-1 ∇f with λ = ‖∇f‖/γ and an adaptive search on γ",
    claim="gradinfo.claims.gns_newton:check",
    example="gradinfo.optim.gns_newton:CONFORMANCE",
)
def gns_newton(
    f: Callable[[Tensor], Tensor],
    x0: Tensor,
    *,
    hessian: Callable[[Tensor], Tensor] | None = None,
    iters: int = 100,
    grad_tol: float | None = None,
    gamma0: float = 1.0,
    gamma_min: float = 1e-9,
    eps: float = 1e-8,
) -> GNSResult:
    """Minimise ``f`` by gradient-regularised Newton steps with approximate Hessians (Algorithm 1).

    The method of "Gradient-Normalized Smoothness for Optimization with Approximate Hessians" (2025):
    ``x+ = x - (H + lambda I)^{-1} grad f(x)`` with ``lambda = ||grad f(x)|| / (gamma + eps)``, ``gamma``
    doubled after a step with ``f(x) - f(x+) >= ||grad f(x+)||^2 / (8 lambda)`` and halved (the step
    retried) otherwise. Each try costs one Cholesky solve and one evaluation of ``f`` and its gradient.

    Args:
        f: ``x [d] -> scalar`` tensor, differentiable by autograd.
        x0: ``[d]`` floating point starting point (float64 recommended for tight tolerances).
        hessian: ``x [d] -> [d, d]`` symmetric positive semi-definite approximation of the Hessian at ``x``
            (exact, Fisher, Gauss-Newton, subsampled); ``None``: the exact Hessian (:func:`exact_hessian`).
        iters: at most this many iterations.
        grad_tol: stop once ``||grad f|| <= grad_tol`` (None: run all ``iters``).
        gamma0, gamma_min, eps: the search's start, floor and ``lambda``'s guard (official defaults).

    Returns:
        A :class:`GNSResult` with the iterate and the per-iteration trace.

    Raises:
        TypeError: ``f``/``hessian`` not callable, ``x0`` not a floating point tensor, a number of the wrong
            type.
        ValueError: ``x0`` not 1-D and non-empty, ``iters < 1``, a negative or non-finite setting, ``f`` not
            scalar, or ``hessian`` returning the wrong shape.
    """
    if not callable(f):
        raise TypeError(f"f must be callable (x [d] -> scalar tensor), got {type(f).__name__}")
    if hessian is not None and not callable(hessian):
        raise TypeError(f"hessian must be callable (x [d] -> [d, d]) or None, got {type(hessian).__name__}")
    if not isinstance(x0, Tensor) or not x0.is_floating_point():
        what = x0.dtype if isinstance(x0, Tensor) else type(x0).__name__
        raise TypeError(f"x0 must be a floating point tensor [d], got {what}")
    if x0.dim() != 1 or x0.numel() == 0:
        raise ValueError(f"x0 must be a non-empty vector [d], got shape {tuple(x0.shape)}; flatten it")
    positive_int("iters", iters)
    tol = None if grad_tol is None else positive("grad_tol", grad_tol, allow_zero=True)
    gamma, gamma_min, eps = _check_search(gamma0, gamma_min, eps)
    hessian = exact_hessian(f) if hessian is None else hessian
    dim = x0.numel()
    eye = torch.eye(dim, dtype=x0.dtype, device=x0.device)  # [d, d]
    x = x0.detach().clone()  # [d]
    value, grad = _value_and_grad(f, x)
    losses, norms, gammas = [float(value)], [float(grad.norm())], [gamma]
    solves, steps = 0, 0
    for _ in range(iters):
        if tol is not None and norms[-1] <= tol:
            break
        h = hessian(x)  # [d, d]
        if not isinstance(h, Tensor) or h.shape != (dim, dim):
            what = tuple(h.shape) if isinstance(h, Tensor) else type(h).__name__
            raise ValueError(f"hessian(x) must return a [{dim}, {dim}] tensor, got {what}")
        h = h.detach().to(x.dtype)
        for _ in range(MAX_SEARCH):
            lam = norms[-1] / (gamma + eps)
            factor, info = torch.linalg.cholesky_ex(h + lam * eye)  # [d, d]
            solves += 1
            if info != 0:  # not positive definite at this lambda: regularise more
                gamma /= 2
                continue
            delta = torch.cholesky_solve(-grad[:, None], factor)[:, 0]  # [d]
            new_value, new_grad = _value_and_grad(f, x + delta)
            if float(value - new_value) >= float(new_grad.square().sum()) / (8 * lam):
                gamma = max(2 * gamma, gamma_min)
                break
            gamma /= 2
        else:
            if info != 0:
                raise ValueError("hessian(x) + lambda I stayed indefinite through the whole search")
        x, value, grad = x + delta, new_value, new_grad
        steps += 1
        losses.append(float(value))
        norms.append(float(grad.norm()))
        gammas.append(gamma)
    dtype = torch.float64
    return GNSResult(
        x=x,
        losses=torch.tensor(losses, dtype=dtype),
        grad_norms=torch.tensor(norms, dtype=dtype),
        gammas=torch.tensor(gammas, dtype=dtype),
        iterations=steps,
        solves=solves,
        converged=tol is not None and norms[-1] <= tol,
    )


class GNSNewton(torch.optim.Optimizer):
    """Gradient-regularised Newton steps for a model, matrix-free (needs a closure and ``H v`` products).

    The method of "Gradient-Normalized Smoothness for Optimization with Approximate Hessians" (2025) as a
    ``torch.optim.Optimizer``: each ``step(closure)`` solves ``(H + lambda I) delta = -g`` by conjugate
    gradients with ``curvature`` products, tries ``p + delta`` through the closure and runs the adaptive
    ``gamma`` search of :func:`gns_newton`. The parameters end at the accepted point, with their ``.grad``
    from the closure's last call there. ``lr`` scales nothing in the paper's method; it is 1 and kept only
    so LR schedulers have a field to read.

    Caveats: all parameters form one vector (one ``gamma``); the closure must zero the gradients, compute
    the loss on a fixed batch, call ``backward()`` and return the loss (as for ``torch.optim.LBFGS``); the
    curvature must use the same batch. For an exact Hessian pass ``partial(gradinfo.capture.hvp, model,
    loss_fn, x, y)``, for Gauss-Newton ``partial(gnvp, ...)``, for a subsampled one the same on a subset.

    Args:
        params: ``(name, parameter)`` pairs (``model.named_parameters()``); names key ``curvature``'s dicts.
        curvature: ``v -> H v`` on ``{name: [*shape]}`` dicts.
        gamma0, gamma_min, eps: as :func:`gns_newton`.
        cg_iters: conjugate-gradient iterations per solve, >= 1.
        cg_tol: stop CG when the residual norm falls below ``cg_tol * ||g||``.

    Raises:
        TypeError: ``params`` are not named, ``curvature`` not callable, or ``step`` called without closure.
        ValueError: a setting out of range.
    """

    def __init__(
        self,
        params: Iterable[tuple[str, Tensor]],
        curvature: Callable[[Grads], Grads],
        *,
        gamma0: float = 1.0,
        gamma_min: float = 1e-9,
        eps: float = 1e-8,
        cg_iters: int = 100,
        cg_tol: float = 1e-10,
    ) -> None:
        if not callable(curvature):
            raise TypeError(f"curvature must be callable (Grads -> Grads), got {type(curvature).__name__}")
        items = list(params)
        if not items or not all(
            isinstance(i, tuple) and len(i) == 2 and isinstance(i[0], str) for i in items
        ):
            raise TypeError("params must be non-empty (name, parameter) pairs, e.g. model.named_parameters()")
        gamma0, gamma_min, eps = _check_search(gamma0, gamma_min, eps)
        defaults = {
            "lr": 1.0,
            "gamma0": gamma0,
            "gamma_min": gamma_min,
            "eps": eps,
            "cg_iters": positive_int("cg_iters", cg_iters),
            "cg_tol": positive("cg_tol", cg_tol, allow_zero=True),
        }
        super().__init__([{"params": [p for _, p in items], "names": [n for n, _ in items]}], defaults)
        self.curvature = curvature

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:  # type: ignore[override]
        """One accepted regularised Newton step (up to 40 closure calls); returns the loss at the new point.

        Raises:
            TypeError: no closure.
        """
        if closure is None:
            raise TypeError("GNSNewton.step needs a closure that recomputes the loss and calls backward()")
        group = self.param_groups[0]
        names, params = group["names"], group["params"]
        state = self.state[params[0]]
        gamma = state.get("gamma", group["gamma0"])
        with torch.enable_grad():
            value = closure().detach()
        grad = [_grad(p) for p in params]
        norm = math.sqrt(sum(float(g.square().sum()) for g in grad))
        start = [p.detach().clone() for p in params]

        def apply(v: list[Tensor], lam: float) -> list[Tensor]:
            hv = self.curvature(dict(zip(names, v, strict=True)))
            return [hv[n] + lam * x for n, x in zip(names, v, strict=True)]

        for _ in range(MAX_SEARCH):
            lam = norm / (gamma + group["eps"])
            delta = _cg(
                lambda v, lam=lam: apply(v, lam), [-g for g in grad], group["cg_iters"], group["cg_tol"]
            )
            for p, s, d in zip(params, start, delta, strict=True):
                p.copy_(s + d)
            with torch.enable_grad():
                new_value = closure().detach()
            new_sq = sum(float(_grad(p).square().sum()) for p in params)
            if float(value - new_value) >= new_sq / (8 * lam):
                gamma = max(2 * gamma, group["gamma_min"])
                break
            gamma /= 2
        state["gamma"] = gamma
        return new_value


def _grad(p: Tensor) -> Tensor:
    return torch.zeros_like(p) if p.grad is None else p.grad.detach()


def _dot(a: list[Tensor], b: list[Tensor]) -> float:
    return sum(float((x * y).sum()) for x, y in zip(a, b, strict=True))


def _cg(
    matvec: Callable[[list[Tensor]], list[Tensor]], b: list[Tensor], iters: int, tol: float
) -> list[Tensor]:
    """Conjugate gradients for ``A x = b`` (``A`` symmetric positive definite), from ``x = 0``.

    Stops early on a residual below ``tol * ||b||`` or a direction of non-positive curvature.
    """
    x = [torch.zeros_like(t) for t in b]
    r = [t.clone() for t in b]
    p = [t.clone() for t in b]
    rr = _dot(r, r)
    stop = tol**2 * rr
    for _ in range(iters):
        if rr <= stop:
            break
        ap = matvec(p)
        curv = _dot(p, ap)
        if curv <= 0:
            break
        alpha = rr / curv
        x = [xi + alpha * pi for xi, pi in zip(x, p, strict=True)]
        r = [ri - alpha * api for ri, api in zip(r, ap, strict=True)]
        rr_new = _dot(r, r)
        p = [ri + (rr_new / rr) * pi for ri, pi in zip(r, p, strict=True)]
        rr = rr_new
    return x


def _conformance(seed: int) -> GNSResult:
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(6, 4, generator=gen, dtype=torch.float64)  # [n, d]
    y = torch.randn(6, generator=gen, dtype=torch.float64)  # [n]
    return gns_newton(
        lambda x: torch.nn.functional.softplus(a @ x - y).sum() + 0.05 * x.square().sum(),
        torch.zeros(4, dtype=torch.float64),
        iters=5,
    )


def _bad_optimizer() -> Any:
    return GNSNewton([torch.zeros(2, requires_grad=True)], lambda v: v)  # unnamed params


CONFORMANCE = Conformance(
    call=_conformance,
    bad_calls=(
        lambda: gns_newton(lambda x: x.sum(), torch.zeros(3), iters=0),
        lambda: gns_newton(lambda x: x.sum(), torch.zeros(2, 2)),
        lambda: gns_newton(lambda x: x.sum(), torch.zeros(3, dtype=torch.int64)),
        lambda: gns_newton(lambda x: x.sum(), torch.zeros(3), gamma0=0.0),
        _bad_optimizer,
    ),
)
