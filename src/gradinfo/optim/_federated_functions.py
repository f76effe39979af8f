"""Heterogeneous synthetic federated objectives ``F(x) = (1/N) sum_i f_i(x)`` for zeroth-order optimisers.

The shifted-quadratic set of "Federated Zeroth-Order Optimization using Trajectory-Informed Surrogate
Gradients" (2024, Shu et al.; arXiv:2308.04077; the official repository's ``funcs/synthetics.py``,
``Quadratic``): with ``z = 20 x - 10`` (the unit cube mapped onto ``[-10, 10]^d``),

    f_i(x) = (0.1 / d) (a_i . z^2 + b_i . z + 1),
    a_ik = 1 + h (D_ik - 1/N),    b_ik = 1 + h (D'_ik - 1/N),

where each row ``D_k`` (and ``D'_k``) over the ``N`` clients is drawn from ``Dirichlet(1/N, ..., 1/N)``:
such a draw puts most of a coordinate's mass on one client, so the clients' curvatures and minimisers
differ (heterogeneity ``h``; ``h = 0`` makes every client the same). Every ``f_i`` is a convex quadratic
(``a_ik >= 1 - h/N > 0`` for ``h < N``), and the global minimiser is closed-form, coordinate by
coordinate: ``z*_k = -sum_i b_ik / (2 sum_i a_ik)``. The start ``x0`` is uniform on ``[0, 1]^d`` as in
the official code (which also clips ``x`` to the cube; here ``x`` is unconstrained and the minimiser lies
inside it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gradinfo.core.validate import positive, positive_int


@dataclass(frozen=True)
class FederatedProblem:
    """A federated objective with a known optimum.

    Attributes:
        functions: the clients' black boxes ``f_i: [d] -> []`` (float64).
        x0: ``[d]`` the shared start.
        x_star: ``[d]`` the minimiser of ``F = mean_i f_i``.
        f_star: ``F(x_star)``.
    """

    functions: tuple[Callable[[Tensor], Tensor], ...]
    x0: Tensor
    x_star: Tensor
    f_star: float

    def global_value(self, x: Tensor) -> float:
        """``F(x) = (1/N) sum_i f_i(x)`` at one ``[d]`` point (an evaluation for reporting, not a query)."""
        return float(sum(float(f(x)) for f in self.functions) / len(self.functions))

    def gap(self, x: Tensor) -> float:
        """The optimality gap ``F(x) - F*`` (>= 0 up to rounding)."""
        return self.global_value(x) - self.f_star


def _shifted_quadratic(a: Tensor, b: Tensor) -> Callable[[Tensor], Tensor]:
    dim = a.numel()

    def f(x: Tensor) -> Tensor:
        z = 20.0 * x.to(torch.float64) - 10.0  # [d]
        return 0.1 / dim * (a @ z.square() + b @ z + 1.0)

    return f


def heterogeneous_quadratic(
    *, clients: int = 5, dim: int = 10, heterogeneity: float = 1.0, seed: int = 0
) -> FederatedProblem:
    """The official shifted-quadratic benchmark: ``N`` convex quadratics with Dirichlet-skewed coefficients.

    Args:
        clients: ``N``, the number of client functions, >= 1.
        dim: ``d``, the input dimension, >= 1.
        heterogeneity: ``h`` in ``[0, N)``: how far the clients' coefficients spread (1.0 in the paper).
        seed: seeds the coefficients and ``x0`` (numpy's ``default_rng``).

    Returns:
        The :class:`FederatedProblem` with its closed-form optimum.

    Raises:
        TypeError: a count or the seed is not an int, or ``heterogeneity`` is not a number.
        ValueError: a count < 1, ``seed`` < 0, or ``heterogeneity`` outside ``[0, clients)``.
    """
    positive_int("clients", clients)
    positive_int("dim", dim)
    positive_int("seed", seed, minimum=0)
    h = positive("heterogeneity", heterogeneity, allow_zero=True)
    if h >= clients:
        raise ValueError(
            f"heterogeneity must be < clients ({clients}) so that every quadratic stays convex, got {h!r}"
        )
    rng = np.random.default_rng(seed)
    alpha = np.full(clients, 1.0 / clients)
    a = torch.from_numpy(1.0 + h * (rng.dirichlet(alpha, size=dim) - 1.0 / clients)).T  # [N, d]
    b = torch.from_numpy(1.0 + h * (rng.dirichlet(alpha, size=dim) - 1.0 / clients)).T  # [N, d]
    x0 = torch.from_numpy(rng.uniform(0.0, 1.0, size=dim))  # [d]
    z_star = -b.sum(0) / (2.0 * a.sum(0))  # [d]
    x_star = (z_star + 10.0) / 20.0  # [d]
    functions = tuple(_shifted_quadratic(a[i].contiguous(), b[i].contiguous()) for i in range(clients))
    f_star = float(sum(float(f(x_star)) for f in functions) / clients)
    return FederatedProblem(functions, x0, x_star, f_star)
