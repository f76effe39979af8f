"""(N-)HARPG against a naive flat loop of Algorithm 2 with dense Hessians; runs on the LQR and CartPole."""

from __future__ import annotations

import pytest
import torch
from pg_helpers import flat, lqr_runs, run_path, start_params
from torch import nn

from gradinfo.optim.envs import LQR, CartPole
from gradinfo.optim.harpg import HARPG, harpg
from gradinfo.optim.policy_gradient import CategoricalPolicy, lqr_policy

STEPS, LR = 10, 0.2
PLAIN_LR = 0.05  # the un-normalised step must stay below 2 / (largest curvature, 14)
NOISE = torch.randn(2 * STEPS, 7, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


def _pair(theta: torch.Tensor, call: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, log_p) of 'episode' number ``call``: smooth, non-quadratic, with a per-call linear term."""
    loss = (theta.square() * torch.arange(1, 8)).sum() + torch.cos(theta).sum() + NOISE[call] @ theta
    log_p = (torch.sin(theta) * NOISE[call]).sum() - 0.5 * theta.square().sum()
    return loss, log_p


def _optimizer_path(normalized: bool) -> torch.Tensor:
    params = start_params()
    optimizer = HARPG(
        params,
        lr=LR if normalized else PLAIN_LR,
        normalized=normalized,
        generator=torch.Generator().manual_seed(9),
    )
    path, calls = run_path(optimizer, params, _pair, STEPS)
    assert calls == 2 * STEPS - 1
    return path


def _reference(normalized: bool) -> torch.Tensor:
    """Algorithm 2 on a flat float64 vector with the dense B = grad loss grad log_p^T + hess loss."""
    gen = torch.Generator().manual_seed(9)
    theta = prev = torch.linspace(-1, 1, 7, dtype=torch.float64)
    d = torch.zeros(7, dtype=torch.float64)
    call, path = 0, []
    for t in range(STEPS):
        if t > 0:
            q = float(torch.rand((), generator=gen, dtype=torch.float64))
            mid = q * theta + (1 - q) * prev
            hess = torch.autograd.functional.hessian(lambda x, c=call: _pair(x, c)[0], mid)  # [7, 7]
            g_loss = torch.autograd.functional.jacobian(lambda x, c=call: _pair(x, c)[0], mid)  # [7]
            g_logp = torch.autograd.functional.jacobian(lambda x, c=call: _pair(x, c)[1], mid)  # [7]
            correction = (torch.outer(g_loss, g_logp) + hess) @ (theta - prev)
            call += 1
        g = torch.autograd.functional.jacobian(lambda x, c=call: _pair(x, c)[0], theta)
        call += 1
        d = g if t == 0 else (1 - 2 / (t + 2)) * (d + correction) + 2 / (t + 2) * g
        prev, theta = theta, theta - (LR * d / d.norm() if normalized else PLAIN_LR * d)
        path.append(theta)
    return torch.stack(path)


@pytest.mark.parametrize("normalized", [True, False])
def test_optimizer_matches_the_naive_algorithm(normalized: bool) -> None:
    torch.testing.assert_close(_optimizer_path(normalized), _reference(normalized), rtol=1e-11, atol=1e-11)


def test_state_dict_round_trip() -> None:
    params = start_params()
    optimizer = HARPG(params, lr=LR)
    optimizer.step(lambda: _pair(flat(params), 0))
    optimizer.step(lambda: _pair(flat(params), 1))
    copy = HARPG(params, lr=LR)
    copy.load_state_dict(optimizer.state_dict())
    for p in params:
        for key in ("momentum", "previous"):
            torch.testing.assert_close(copy.state[p][key], optimizer.state[p][key], rtol=0, atol=0)
        assert copy.state[p]["step"] == 2


def test_runs_on_the_lqr_reduce_the_exact_gap_within_budget() -> None:
    runs, median_gap = lqr_runs(harpg, budget=151)
    for history in runs:
        assert history.trajectories.tolist() == [1, *range(3, 152, 2)]
        assert history.values.shape == (77,) and history.returns.shape == (76,)
    assert median_gap < 0.7 * float(runs[0].values[0])
    plain = harpg(LQR(), lqr_policy(LQR()), budget=10, lr=0.01, normalized=False, seed=0)
    assert plain.trajectories[-1] == 9


def test_bad_arguments_raise() -> None:
    with pytest.raises(TypeError, match="generator"):
        HARPG(start_params(), generator=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="closure"):
        HARPG(start_params()).step()


@pytest.mark.slow
def test_learns_cartpole() -> None:
    torch.manual_seed(0)
    policy = CategoricalPolicy(nn.Linear(4, 2).double())
    # lr 1.0 (N-PG-IGT's) is too long a step here: B v's noise grows with the step
    history = harpg(CartPole(horizon=200), policy, budget=400, lr=0.3, seed=0)
    assert history.returns[-25:].mean() > 1.5 * history.returns[:25].mean()
