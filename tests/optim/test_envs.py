"""The exact LQR against scipy's Riccati solver and Monte Carlo; the CartPole adapter's seeding."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from gradinfo.optim.envs import LQR, CartPole
from gradinfo.optim.policy_gradient import lqr_policy, rollout

SIGMA = 0.5


def test_optimal_gain_matches_scipy_riccati() -> None:
    env = LQR()
    c = env.discount
    a, b, q, r = (x.numpy() for x in (env.a, env.b, env.q, env.r))
    p = scipy.linalg.solve_discrete_are(np.sqrt(c) * a, np.sqrt(c) * b, q, r)
    reference = -c * np.linalg.solve(r + c * b.T @ p @ b, b.T @ p @ a)
    torch.testing.assert_close(env.optimal_gain(), torch.from_numpy(reference), rtol=1e-9, atol=1e-10)


def test_infinite_horizon_return_is_the_limit_of_the_finite_sums() -> None:
    env = LQR()
    gain = torch.tensor([[-0.3, 0.1], [0.2, -0.5]], dtype=torch.float64)
    exact = env.expected_return(gain, SIGMA)
    long = env.expected_return(gain, SIGMA, horizon=400)
    torch.testing.assert_close(exact, long, rtol=1e-10, atol=1e-10)


def test_optimal_gain_maximises_the_return() -> None:
    env = LQR()
    best = env.optimal_gain().requires_grad_(True)
    (grad,) = torch.autograd.grad(env.expected_return(best, SIGMA), best)
    torch.testing.assert_close(grad, torch.zeros_like(grad), rtol=0, atol=1e-8)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        gain = best.detach() + 0.3 * torch.randn(2, 2, generator=gen, dtype=torch.float64)
        assert env.optimality_gap(gain, SIGMA) > 0
    assert env.optimality_gap(best.detach(), SIGMA) == pytest.approx(0.0, abs=1e-10)


def test_destabilising_gain_has_infinite_gap() -> None:
    env = LQR()
    assert env.optimality_gap(torch.eye(2, dtype=torch.float64), SIGMA) == float("inf")


def test_finite_horizon_return_matches_monte_carlo() -> None:
    env = LQR(horizon=6)
    policy = lqr_policy(env, SIGMA)
    with torch.no_grad():
        policy.mean.weight.copy_(torch.tensor([[-0.4, 0.1], [0.0, -0.3]]))
    gen = torch.Generator().manual_seed(0)
    returns = torch.stack(
        [(env.discount ** torch.arange(6) * rollout(env, policy, gen).rewards).sum() for _ in range(3000)]
    )
    exact = env.expected_return(policy.mean.weight.detach(), SIGMA, horizon=6)
    assert abs(returns.mean() - exact) <= 4 * returns.std() / len(returns) ** 0.5


def test_rollout_is_seeded_and_shaped() -> None:
    env = LQR(horizon=7)
    policy = lqr_policy(env)
    one = rollout(env, policy, torch.Generator().manual_seed(3))
    two = rollout(env, policy, torch.Generator().manual_seed(3))
    assert one.states.shape == (7, 2) and one.actions.shape == (7, 2) and one.rewards.shape == (7,)
    torch.testing.assert_close(one.rewards, two.rewards, rtol=0, atol=0)
    manual = -(one.states.square().sum(1) + 0.1 * one.actions.square().sum(1))
    torch.testing.assert_close(one.rewards, manual, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"discount": 1.0}, ValueError),
        ({"horizon": 0}, ValueError),
        ({"b": torch.ones(3, 1)}, ValueError),
        ({"a": [[1.0]]}, TypeError),
    ],
)
def test_lqr_rejects_bad_settings(kwargs: dict, error: type[Exception]) -> None:
    with pytest.raises(error):
        LQR(**kwargs)


def test_lqr_rejects_a_misshapen_gain() -> None:
    with pytest.raises(ValueError, match="gain"):
        LQR().expected_return(torch.zeros(2), SIGMA)


def test_cartpole_episodes_are_seeded() -> None:
    env = CartPole(horizon=50)

    def act(state: torch.Tensor) -> torch.Tensor:
        return torch.tensor(int(state[2] > 0))

    one = env.rollout(act, torch.Generator().manual_seed(1))
    two = env.rollout(act, torch.Generator().manual_seed(1))
    other = env.rollout(act, torch.Generator().manual_seed(2))
    torch.testing.assert_close(one.states, two.states, rtol=0, atol=0)
    assert not torch.equal(one.states[0], other.states[0])
    assert one.states.shape[1] == 4 and len(one.actions) == len(one.rewards) <= 50
    assert torch.all(one.rewards == 1)


def test_cartpole_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        CartPole(horizon=0)
    with pytest.raises(ValueError):
        CartPole(discount=0.0)
