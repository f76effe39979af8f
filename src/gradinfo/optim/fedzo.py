"""FedZO: federated zeroth-order optimisation by local random-direction finite differences and averaging.

The baseline of "Federated Zeroth-Order Optimization using Trajectory-Informed Surrogate Gradients"
(2024, arXiv:2308.04077), after Fang et al., "Communication-Efficient Stochastic Zeroth-Order
Optimization for Federated Learning" (2022, IEEE TSP; FedZO). In round ``r`` every client ``i`` starts
from the global point ``x_r`` and takes ``T`` local steps of a first-order optimiser (Adam, lr 0.01 as in
the official FZooS experiments, or SGD) on the random gradient-free estimate

    g_i(x) = (1/q) sum_{j=1..q} (f_i(x + mu u_j) - f_i(x)) / mu * u_j,    u_j ~ N(0, I_d),

(``gradinfo.capture.zeroth_order_grad``, unbiased for the gradient of the Gaussian smoothing
``E_u f_i(x + mu u)``; ``q + 1`` queries per step). The server averages: ``x_{r+1} = (1/N) sum_i x_i``.
Every evaluation of an ``f_i`` is counted as a query of client ``i``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from gradinfo.capture import zeroth_order_grad
from gradinfo.core.validate import one_of, positive, positive_int

Objective = Callable[[Tensor], Tensor | float]


@dataclass(frozen=True)
class FederatedResult:
    """What a federated zeroth-order run did.

    Attributes:
        x: ``[d]`` the final global point.
        iterates: ``[R + 1, d]`` the global point before the first round and after every round.
        queries: ``[R + 1, N]`` int64, each client's cumulative number of function evaluations at those
            times (row 0: queries spent before the first round).
    """

    x: Tensor
    iterates: Tensor
    queries: Tensor


def _check_run(
    functions: Sequence[Objective],
    x0: Tensor,
    rounds: int,
    local_steps: int,
    lr: float,
    optimizer: str,
    seed: int,
) -> None:
    """Validate the arguments every federated zeroth-order run shares."""
    if isinstance(functions, (str, bytes)) or not isinstance(functions, Sequence) or not functions:
        raise TypeError(
            f"functions must be a non-empty sequence of callables (one per client), got {functions!r}"
        )
    bad = [i for i, f in enumerate(functions) if not callable(f)]
    if bad:
        raise TypeError(f"functions must all be callable; entries {bad} are not")
    if not isinstance(x0, Tensor) or not x0.is_floating_point():
        what = x0.dtype if isinstance(x0, Tensor) else type(x0).__name__
        raise TypeError(f"x0 must be a floating point tensor, got {what}")
    if x0.dim() != 1 or x0.numel() == 0:
        raise ValueError(f"x0 must be a non-empty 1-D tensor [d], got shape {tuple(x0.shape)}")
    positive_int("rounds", rounds)
    positive_int("local_steps", local_steps)
    positive("lr", lr)
    one_of("optimizer", optimizer, ("adam", "sgd"))
    positive_int("seed", seed, minimum=0)


def _local_optimizer(kind: str, x: Tensor, lr: float) -> torch.optim.Optimizer:
    """A fresh optimiser over the leaf ``x`` (its state resets every round, as in the official code)."""
    if kind == "adam":
        return torch.optim.Adam([x], lr=lr)
    return torch.optim.SGD([x], lr=lr)


def fedzo(
    functions: Sequence[Objective],
    x0: Tensor,
    *,
    rounds: int = 10,
    local_steps: int = 10,
    queries: int = 10,
    mu: float = 0.005,
    lr: float = 0.01,
    optimizer: Literal["adam", "sgd"] = "adam",
    seed: int = 0,
) -> FederatedResult:
    """Minimise ``F = (1/N) sum_i f_i`` by FedZO: local zeroth-order steps, then server averaging.

    Baseline of "Federated Zeroth-Order Optimization using Trajectory-Informed Surrogate Gradients"
    (2024): each local step uses ``g = (1/q) sum_j (f_i(x + mu u_j) - f_i(x)) / mu u_j`` with
    ``u_j ~ N(0, I)`` (``q + 1`` queries); after ``T`` steps the server sets ``x <- mean_i x_i``.

    Args:
        functions: ``N`` client black boxes, each ``[d] -> scalar`` (tensor or float).
        x0: ``[d]`` floating point start.
        rounds: communication rounds ``R``.
        local_steps: local steps ``T`` per round.
        queries: random directions ``q`` per estimate (10 in the paper's proof setting).
        mu: finite-difference radius (0.005).
        lr: the local optimiser's learning rate (0.01, the official experiments' default).
        optimizer: ``"adam"`` (the official experiments) or ``"sgd"`` (FedZO's original).
        seed: seeds the random directions.

    Returns:
        A :class:`FederatedResult` (iterates in float64); ``queries`` grows by ``T (q + 1)`` per
        client and round.

    Raises:
        TypeError: ``functions`` is not a sequence of callables, ``x0`` is not a floating tensor, or a
            count/seed is not an int.
        ValueError: ``x0`` is not 1-D, a count < 1, ``mu``/``lr`` <= 0, or an unknown ``optimizer``.
    """
    _check_run(functions, x0, rounds, local_steps, lr, optimizer, seed)
    positive_int("queries", queries)
    mu = positive("mu", mu)
    gen = torch.Generator().manual_seed(seed)
    counts = [0] * len(functions)

    def counted(i: int) -> Callable[[Tensor], Tensor | float]:
        def f(x: Tensor) -> Tensor | float:
            counts[i] += 1
            return functions[i](x)

        return f

    clients = [counted(i) for i in range(len(functions))]
    x = x0.detach().to(torch.float64).clone()  # [d]
    iterates, history = [x.clone()], [list(counts)]
    for _ in range(rounds):
        ends = []
        for f in clients:
            xi = x.clone().requires_grad_(True)  # [d]
            opt = _local_optimizer(optimizer, xi, lr)
            for _ in range(local_steps):
                step_seed = int(torch.randint(0, 2**62, (), generator=gen))
                xi.grad = zeroth_order_grad(f, xi.detach(), queries=queries, mu=mu, seed=step_seed)  # [d]
                opt.step()
            ends.append(xi.detach())
        x = torch.stack(ends).mean(0)  # [d]
        iterates.append(x.clone())
        history.append(list(counts))
    return FederatedResult(x=x, iterates=torch.stack(iterates), queries=torch.tensor(history))
