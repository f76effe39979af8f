"""N-PG-IGT against a naive flat-vector loop of Algorithm 1; normalised PG; runs on the LQR and CartPole."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradinfo.optim.envs import LQR, CartPole
from gradinfo.optim.n_pg_igt import NPGIGT, n_pg_igt, normalized_pg
from gradinfo.optim.policy_gradient import CategoricalPolicy, lqr_policy

STEPS, LR = 12, 0.3
NOISE = torch.randn(STEPS, 7, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


def _loss(theta: torch.Tensor, call: int) -> torch.Tensor:
    """A smooth non-quadratic loss plus a fixed linear 'sampling noise' term per call ([7] flat theta)."""
    return (theta.square() * torch.arange(1, 8)).sum() + torch.cos(theta).sum() + NOISE[call] @ theta


def _params() -> list[nn.Parameter]:
    start = torch.linspace(-1, 1, 7, dtype=torch.float64)
    return [nn.Parameter(start[:4].reshape(2, 2).clone()), nn.Parameter(start[4:].clone())]


def _optimizer_run(optimizer: torch.optim.Optimizer, params: list[nn.Parameter], steps: int) -> torch.Tensor:
    calls = [0]

    def closure() -> torch.Tensor:
        loss = _loss(torch.cat([p.reshape(-1) for p in params]), calls[0])
        calls[0] += 1
        return loss

    path = []
    for _ in range(steps):
        optimizer.step(closure)
        path.append(torch.cat([p.detach().reshape(-1) for p in params]))
    return torch.stack(path)  # [steps, 7]


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
    params = _params()
    path = _optimizer_run(NPGIGT(params, lr=LR, eta_power=eta_power), params, STEPS)
    torch.testing.assert_close(path, _reference(eta_power), rtol=1e-12, atol=1e-12)


def test_state_dict_round_trip_resumes_exactly() -> None:
    params = _params()
    whole = _optimizer_run(NPGIGT(params, lr=LR), params, STEPS)
    params = _params()
    first = NPGIGT(params, lr=LR)
    _optimizer_run(first, params, 5)
    resumed = NPGIGT(params, lr=LR)
    resumed.load_state_dict(first.state_dict())
    calls = [5]

    def closure() -> torch.Tensor:
        loss = _loss(torch.cat([p.reshape(-1) for p in params]), calls[0])
        calls[0] += 1
        return loss

    for _ in range(STEPS - 5):
        resumed.step(closure)
    torch.testing.assert_close(
        torch.cat([p.detach().reshape(-1) for p in params]), whole[-1], rtol=0, atol=1e-14
    )


def test_step_length_is_the_learning_rate_and_a_closure_is_required() -> None:
    params = _params()
    optimizer = NPGIGT(params, lr=0.05)
    before = torch.cat([p.detach().reshape(-1) for p in params])
    optimizer.step(lambda: _loss(torch.cat([p.reshape(-1) for p in params]), 0))
    after = torch.cat([p.detach().reshape(-1) for p in params])
    assert (after - before).norm().item() == pytest.approx(0.05, rel=1e-12)
    with pytest.raises(ValueError, match="closure"):
        optimizer.step()


def test_runs_on_the_lqr_reduce_the_exact_gap_and_count_episodes() -> None:
    env = LQR()
    finals = []
    for seed in range(3):
        history = n_pg_igt(
            env,
            lqr_policy(env),
            budget=150,
            lr=0.03,
            seed=seed,
            evaluate=lambda p: env.optimality_gap(p.mean.weight, 0.5),
        )
        assert history.trajectories.tolist() == list(range(1, 151))
        assert history.values.shape == (151,) and history.returns.shape == (150,)
        finals.append(float(history.values[-1]))
    assert sorted(finals)[1] < 0.7 * float(history.values[0])  # the median of three seeds
    baseline = normalized_pg(env, lqr_policy(env), budget=20, lr=0.1, seed=0)
    assert baseline.trajectories[-1] == 20


@pytest.mark.slow
def test_learns_cartpole() -> None:
    torch.manual_seed(0)
    policy = CategoricalPolicy(nn.Linear(4, 2).double())
    history = n_pg_igt(CartPole(horizon=200), policy, budget=300, lr=1.0, seed=0)
    assert history.returns[-50:].mean() > 1.5 * history.returns[:50].mean()
