"""Shared pieces of the policy-gradient optimizer tests (HARPG, N-PG-IGT): a start, a loop, LQR runs."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gradinfo.optim.envs import LQR
from gradinfo.optim.policy_gradient import PGHistory, lqr_policy


def start_params() -> list[nn.Parameter]:
    """Two float64 parameters, ``[2, 2]`` and ``[3]``, holding ``linspace(-1, 1, 7)`` (the flat start)."""
    start = torch.linspace(-1, 1, 7, dtype=torch.float64)
    return [nn.Parameter(start[:4].reshape(2, 2).clone()), nn.Parameter(start[4:].clone())]


def flat(params: list[nn.Parameter]) -> torch.Tensor:
    """The parameters as one ``[7]`` vector (differentiable)."""
    return torch.cat([p.reshape(-1) for p in params])


def run_path(
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
    objective: Callable[[torch.Tensor, int], object],
    steps: int,
    first_call: int = 0,
) -> tuple[torch.Tensor, int]:
    """Step ``optimizer`` ``steps`` times; its closure returns ``objective(flat params, call number)``.

    Calls are numbered from ``first_call``. Returns the parameters after each step ``[steps, 7]`` and the
    number of closure calls.
    """
    calls = [first_call]

    def closure() -> object:
        out = objective(flat(params), calls[0])
        calls[0] += 1
        return out

    path = []
    for _ in range(steps):
        optimizer.step(closure)
        path.append(flat(params).detach())
    return torch.stack(path), calls[0] - first_call


def lqr_runs(method: Callable[..., PGHistory], budget: int) -> tuple[list[PGHistory], float]:
    """``method`` from ``K = 0`` on the default LQR (lr 0.03, seeds 0-2), the exact gap recorded each step.

    Returns the three histories and the median of their final gaps.
    """
    env = LQR()
    runs = [
        method(
            env,
            lqr_policy(env),
            budget=budget,
            lr=0.03,
            seed=seed,
            evaluate=lambda p: env.optimality_gap(p.mean.weight, 0.5),
        )
        for seed in range(3)
    ]
    return runs, sorted(float(h.values[-1]) for h in runs)[1]
