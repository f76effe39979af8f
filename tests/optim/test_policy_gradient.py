"""GPOMDP against the exact LQR gradient; the Hessian-aided product against a dense autograd Hessian."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from gradinfo.optim.envs import LQR, Trajectory
from gradinfo.optim.policy_gradient import (
    CategoricalPolicy,
    GaussianPolicy,
    gpomdp_grad,
    hessian_aided_product,
    lqr_policy,
    rollout,
    surrogate,
)

GAIN = torch.tensor([[-0.4, 0.1], [0.0, -0.3]], dtype=torch.float64)


def _lqr_policy(env: LQR) -> GaussianPolicy:
    policy = lqr_policy(env, 0.5)
    with torch.no_grad():
        policy.mean.weight.copy_(GAIN)
    return policy


def test_gpomdp_is_unbiased_for_the_exact_lqr_gradient() -> None:
    env = LQR(horizon=5)
    policy = _lqr_policy(env)
    gen = torch.Generator().manual_seed(0)
    samples = torch.stack([gpomdp_grad(policy, rollout(env, policy, gen), env.discount) for _ in range(4000)])
    gain = GAIN.clone().requires_grad_(True)
    (exact,) = torch.autograd.grad(env.expected_return(gain, 0.5, horizon=5), gain)
    error = samples.mean(0) - exact.reshape(-1)  # [4]
    stderr = samples.std(0) / len(samples) ** 0.5  # [4]
    assert torch.all(error.abs() <= 4 * stderr), (error, stderr)
    assert stderr.norm() < 0.2 * exact.norm()  # tight enough to tell a wrong gradient apart


def test_surrogate_matches_a_naive_double_loop() -> None:
    env = LQR(horizon=6)
    policy = _lqr_policy(env)
    traj = rollout(env, policy, torch.Generator().manual_seed(1))
    phi, log_p = surrogate(policy, traj, env.discount)
    logp = policy.log_prob(traj.states, traj.actions)
    naive = sum(
        env.discount**t * traj.rewards[t] * sum(logp[h] for h in range(t + 1)) for t in range(env.horizon)
    )
    torch.testing.assert_close(phi, naive, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(log_p, logp.sum(), rtol=1e-12, atol=1e-12)


def test_log_probs_match_torch_distributions() -> None:
    gaussian = GaussianPolicy(nn.Linear(3, 2).double(), 0.7)
    categorical = CategoricalPolicy(nn.Linear(3, 4).double())
    states = torch.randn(5, 3, dtype=torch.float64)
    actions = torch.randn(5, 2, dtype=torch.float64)
    reference = torch.distributions.Normal(gaussian.mean(states), 0.7).log_prob(actions).sum(-1)
    torch.testing.assert_close(gaussian.log_prob(states, actions), reference, rtol=1e-12, atol=1e-12)
    choices = torch.tensor([0, 3, 1, 2, 2])
    reference = torch.distributions.Categorical(logits=categorical.logits(states)).log_prob(choices)
    torch.testing.assert_close(categorical.log_prob(states, choices), reference, rtol=1e-12, atol=1e-12)


def _dense_b_times_v(policy: nn.Module, traj: Trajectory, discount: float, v: torch.Tensor) -> torch.Tensor:
    """grad Phi grad log p^T v + hess Phi v with the full [d, d] Hessian (float64 reference)."""
    names = [n for n, _ in policy.named_parameters()]
    shapes = [p.shape for p in policy.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in policy.parameters()])

    def unflat(x: torch.Tensor) -> dict[str, torch.Tensor]:
        out, i = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            out[name] = x[i : i + shape.numel()].reshape(shape)
            i += shape.numel()
        return out

    def phi(x: torch.Tensor) -> torch.Tensor:
        logp = functional_call(policy, unflat(x), (traj.states, traj.actions), strict=True)
        weights = discount ** torch.arange(len(traj.rewards), dtype=torch.float64) * traj.rewards
        return (logp * weights.flip(0).cumsum(0).flip(0)).sum()

    def log_p(x: torch.Tensor) -> torch.Tensor:
        return functional_call(policy, unflat(x), (traj.states, traj.actions)).sum()

    hessian = torch.autograd.functional.hessian(phi, theta)  # [d, d]
    g_phi = torch.autograd.functional.jacobian(phi, theta)  # [d]
    g_logp = torch.autograd.functional.jacobian(log_p, theta)  # [d]
    return torch.outer(g_phi, g_logp) @ v + hessian @ v


class _LogProb(nn.Module):
    """Routes forward to log_prob so functional_call can evaluate it at any parameters."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.policy.log_prob(states, actions)


@pytest.mark.parametrize("kind", ["gaussian_mlp", "categorical_mlp"])
def test_hessian_aided_product_matches_the_dense_hessian(kind: str) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    policy = GaussianPolicy(net, 0.6) if kind == "gaussian_mlp" else CategoricalPolicy(net)
    states = torch.randn(6, 3, dtype=torch.float64)
    actions = torch.randn(6, 2, dtype=torch.float64) if kind == "gaussian_mlp" else torch.randint(2, (6,))
    traj = Trajectory(states, actions, torch.randn(6, dtype=torch.float64))
    params = list(policy.parameters())
    v = [torch.randn_like(p) for p in params]
    phi, log_p = surrogate(policy, traj, 0.9)
    got = torch.cat([x.reshape(-1) for x in hessian_aided_product(phi, log_p, params, v)])
    wrapped = _LogProb(policy)
    reference = _dense_b_times_v(wrapped, traj, 0.9, torch.cat([x.reshape(-1) for x in v]))
    torch.testing.assert_close(got, reference, rtol=1e-10, atol=1e-10)


def test_hessian_aided_product_is_unbiased_for_the_lqr_hessian() -> None:
    env = LQR(horizon=4)
    policy = _lqr_policy(env)
    params = list(policy.parameters())
    v = torch.tensor([[1.0, -0.5], [0.3, 0.8]], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(3000):
        phi, log_p = surrogate(policy, rollout(env, policy, gen), env.discount)
        samples.append(hessian_aided_product(phi, log_p, params, [v])[0].reshape(-1))
    samples_t = torch.stack(samples)  # [N, 4]
    exact = torch.autograd.functional.hvp(lambda k: env.expected_return(k, 0.5, horizon=4), GAIN, v)[
        1
    ].reshape(-1)
    error = samples_t.mean(0) - exact
    assert torch.all(error.abs() <= 4 * samples_t.std(0) / len(samples_t) ** 0.5), (error, exact)


def test_hessian_aided_product_rejects_a_misshapen_vector() -> None:
    policy = lqr_policy(LQR())
    traj = rollout(LQR(horizon=3), policy, torch.Generator().manual_seed(0))
    phi, log_p = surrogate(policy, traj, 0.8)
    with pytest.raises(ValueError, match="vector"):
        hessian_aided_product(phi, log_p, list(policy.parameters()), [torch.zeros(3)])
