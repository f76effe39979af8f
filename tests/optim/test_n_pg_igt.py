"""N-PG-IGT against a naive flat-vector loop of Algorithm 1; normalised PG; runs on the LQR and CartPole."""

from __future__ import annotations

import pytest
import torch
from pg_helpers import flat, lqr_runs, run_path, start_params
from torch import nn

from gradinfo.optim.envs import LQR, CartPole
from gradinfo.optim.n_pg_igt import NPGIGT, n_pg_igt, normalized_pg
from gradinfo.optim.policy_gradient import CategoricalPolicy, lqr_policy

STEPS, LR = 12, 0.3
NOISE = torch.randn(STEPS, 7, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


def _loss(theta: torch.Tensor, call: int) -> torch.Tensor:
    """A smooth non-quadratic loss plus a fixed linear 'sampling noise' term per call ([7] flat theta)."""
    return (theta.square() * torch.arange(1, 8)).sum() + torch.cos(theta).sum() + NOISE[call] @ theta


def _reference(eta_power: float) -> torch.Tensor:
    """Algorithm 1 on a flat float64 vector, written out directly."""
    theta = prev = torch.linspace(-1, 1, 7, dtype=torch.float64)
    d = torch.zeros(7, dtype=torch.float64)
    path = []
    for t in range(STEPS):
        eta = (2 / (t + 2)) ** eta_power
        probe = (theta + (1 - eta) / eta * (theta - prev)).requires_grad_(True)
        (g,) = torch.autograd.grad(_loss(probe, t), probe)
        d = (1 - eta) * d + eta * g
        prev, theta = theta, theta - LR * d / d.norm()
        path.append(theta)
    return torch.stack(path)


@pytest.mark.parametrize("eta_power", [0.8, 0.0])
def test_optimizer_matches_the_naive_algorithm(eta_power: float) -> None:
    params = start_params()
    path, _ = run_path(NPGIGT(params, lr=LR, eta_power=eta_power), params, _loss, STEPS)
    torch.testing.assert_close(path, _reference(eta_power), rtol=1e-12, atol=1e-12)


def test_state_dict_round_trip_resumes_exactly() -> None:
    params = start_params()
    whole, _ = run_path(NPGIGT(params, lr=LR), params, _loss, STEPS)
    params = start_params()
    first = NPGIGT(params, lr=LR)
    run_path(first, params, _loss, 5)
    resumed = NPGIGT(params, lr=LR)
    resumed.load_state_dict(first.state_dict())
    rest, _ = run_path(resumed, params, _loss, STEPS - 5, first_call=5)
    torch.testing.assert_close(rest[-1], whole[-1], rtol=0, atol=1e-14)


def test_step_length_is_the_learning_rate_and_a_closure_is_required() -> None:
    params = start_params()
    optimizer = NPGIGT(params, lr=0.05)
    before = flat(params).detach()
    optimizer.step(lambda: _loss(flat(params), 0))
    after = flat(params).detach()
    assert (after - before).norm().item() == pytest.approx(0.05, rel=1e-12)
    with pytest.raises(ValueError, match="closure"):
        optimizer.step()


def test_runs_on_the_lqr_reduce_the_exact_gap_and_count_episodes() -> None:
    runs, median_gap = lqr_runs(n_pg_igt, budget=150)
    for history in runs:
        assert history.trajectories.tolist() == list(range(1, 151))
        assert history.values.shape == (151,) and history.returns.shape == (150,)
    assert median_gap < 0.7 * float(runs[0].values[0])
    baseline = normalized_pg(LQR(), lqr_policy(LQR()), budget=20, lr=0.1, seed=0)
    assert baseline.trajectories[-1] == 20


@pytest.mark.slow
def test_learns_cartpole() -> None:
    torch.manual_seed(0)
    policy = CategoricalPolicy(nn.Linear(4, 2).double())
    history = n_pg_igt(CartPole(horizon=200), policy, budget=300, lr=1.0, seed=0)
    assert history.returns[-50:].mean() > 1.5 * history.returns[:50].mean()
