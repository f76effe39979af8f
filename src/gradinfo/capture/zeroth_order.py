"""Zeroth-order gradient estimates from function values only (no backward pass).

Two estimators of ``grad f(x)`` for ``f: R^d -> R``:

- ``"gaussian"`` (Nesterov & Spokoiny 2017, forward differences along random Gaussian directions):

      g = (1/q) sum_{j=1..q} (f(x + mu u_j) - f(x)) / mu * u_j,    u_j ~ N(0, I_d)

  an unbiased estimate of the gradient of the Gaussian smoothing ``f_mu(x) = E_u f(x + mu u)``. For a
  quadratic ``f`` it is unbiased for ``grad f(x)`` itself (the ``mu`` term is odd in ``u``). Costs
  ``q + 1`` evaluations.
- ``"coordinate"``: central differences ``(f(x + mu e_i) - f(x - mu e_i)) / (2 mu)`` along ``q``
  coordinates: all of them when ``q >= d`` (exact for quadratics), else a uniformly drawn subset of
  ``q`` coordinates scaled by ``d / q``, unbiased over the draw for the full central-difference vector.
  Costs ``2 min(q, d)`` evaluations.

All randomness comes from a local ``torch.Generator`` seeded with ``seed``; the global RNG is untouched.

References:
    Nesterov, Spokoiny. Random Gradient-Free Minimization of Convex Functions (2017), Foundations of
    Computational Mathematics 17(2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from gradinfo.core.validate import one_of, positive, positive_int


def zeroth_order_grad(
    f: Callable[[Tensor], Tensor | float],
    x: Tensor,
    *,
    queries: int,
    mu: float,
    kind: Literal["gaussian", "coordinate"] = "gaussian",
    seed: int = 0,
) -> Tensor:
    """Estimate ``grad f(x)`` from evaluations of ``f`` alone.

    Caveats: ``f`` runs under ``torch.no_grad()`` and must not change between calls (put a model in eval
    mode or fix its dropout seed, or the differences measure noise).

    Args:
        f: maps a tensor shaped like ``x`` to a scalar (a 0-d or one-element tensor, or a float).
        x: ``[...]`` floating point point at which to estimate the gradient (any shape, ``d = x.numel()``).
        queries: ``"gaussian"``: number of random directions ``q``; ``"coordinate"``: number of
            coordinates (all of them when ``queries >= d``).
        mu: smoothing radius / finite-difference step, > 0.
        kind: ``"gaussian"`` or ``"coordinate"``.
        seed: seeds the local generator for directions or the coordinate subset.

    Returns:
        ``[...]`` like ``x``, same dtype and device: the gradient estimate.

    Raises:
        TypeError: ``f`` is not callable, ``x`` is not a floating point tensor, ``queries``/``seed`` are not
            ints, ``mu`` is not a number, or ``f`` returns a non-number.
        ValueError: ``x`` is empty, ``queries`` < 1, ``mu`` <= 0 or not finite, ``kind`` is unknown, or
            ``f`` returns more than one value.
    """
    if not callable(f):
        raise TypeError(f"f must be callable (a tensor -> scalar function), got {type(f).__name__}")
    if not isinstance(x, Tensor) or not x.is_floating_point():
        what = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"x must be a floating point tensor, got {what}")
    if x.numel() == 0:
        raise ValueError(f"x must have at least one element, got shape {tuple(x.shape)}")
    positive_int("queries", queries)
    mu = positive("mu", mu)
    one_of("kind", kind, ("gaussian", "coordinate"))
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    gen = torch.Generator(device=x.device).manual_seed(seed)
    x = x.detach()
    with torch.no_grad():
        if kind == "gaussian":
            f_x = _value(f, x)
            estimate = torch.zeros_like(x)  # [...]
            for _ in range(queries):
                u = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)  # [...]
                estimate += (_value(f, x + mu * u) - f_x) / mu * u
            return estimate / queries
        dim = x.numel()
        if queries >= dim:
            coords, scale = range(dim), 1.0
        else:
            coords, scale = (
                torch.randperm(dim, generator=gen, device=x.device)[:queries].tolist(),
                dim / queries,
            )
        estimate = torch.zeros(dim, dtype=x.dtype, device=x.device)  # [d]
        step = torch.zeros(dim, dtype=x.dtype, device=x.device)  # [d]
        for i in coords:
            step[i] = mu
            delta = step.view_as(x)  # [...]
            estimate[i] = (_value(f, x + delta) - _value(f, x - delta)) / (2 * mu)
            step[i] = 0
        return (estimate * scale).view_as(x)


def _value(f: Callable[[Tensor], Tensor | float], x: Tensor) -> Tensor:
    """``f(x)`` as a 0-d tensor of ``x``'s dtype and device."""
    out = f(x)
    if isinstance(out, Tensor):
        if out.numel() != 1:
            raise ValueError(f"f must return a scalar, got a tensor of shape {tuple(out.shape)}")
        return out.detach().reshape(()).to(dtype=x.dtype, device=x.device)
    if isinstance(out, bool) or not isinstance(out, (int, float)):
        raise TypeError(f"f must return a scalar tensor or a float, got {type(out).__name__}")
    return torch.tensor(out, dtype=x.dtype, device=x.device)
