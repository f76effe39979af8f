"""Shared pieces of the policy-gradient methods: policies, GPOMDP, the Hessian-aided product, a driver.

From "Stochastic Policy Gradient Methods: Improved Sample Complexity for Fisher-non-degenerate Policies"
(2023, Fatkhullin, Barakat, Kireeva, He; arXiv:2302.01734), section 2. For an episode
``tau = (s_h, a_h, r_h)_{h<H}``, discount ``c`` and policy ``pi_theta``, the GPOMDP gradient estimate is the
gradient of the surrogate

    Phi(tau, theta) = sum_{h<H} log pi_theta(a_h | s_h) sum_{t=h}^{H-1} c^t r_t,     g(tau, theta) = grad Phi,

an unbiased estimate of the gradient of the ``H``-step expected return. HARPG also needs
``B(tau, theta) = grad Phi grad log p(tau | theta)^T + hess Phi`` (``log p(tau | theta)``'s
parameter-dependent part is ``sum_h log pi_theta(a_h | s_h)``), whose expectation is the Hessian of the
return; its product with a vector is computed by double backward,
``grad Phi (grad log p . v) + grad (grad Phi . v)``, never a ``d x d`` matrix (:func:`hessian_aided_product`).

The optimizers (:class:`~gradinfo.optim.n_pg_igt.NPGIGT`, :class:`~gradinfo.optim.harpg.HARPG`) minimise, like
every ``torch.optim.Optimizer``: their closure returns the pair ``(loss, log_prob) = (-Phi, log p)`` built
from one fresh episode sampled at the parameters' current values (:func:`episode_closure` builds it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from gradinfo.core.validate import positive, positive_int
from gradinfo.optim.envs import LQR, Env, Trajectory

Closure = Callable[[], tuple[Tensor, Tensor]]
"""``closure() -> (loss, log_prob)``: ``-Phi(tau, theta)`` and ``log p(tau | theta)`` of one fresh episode."""


class GaussianPolicy(nn.Module):
    """``a ~ N(mean(s), sigma^2 I)``: a Gaussian policy with a learned mean and a fixed noise scale.

    Args:
        mean: module mapping states ``[..., n]`` to action means ``[..., k]`` (``nn.Linear(n, k, bias=False)``
            gives the LQR's linear policy ``a = K s + sigma xi`` with ``K = mean.weight``).
        sigma: the noise scale, > 0.
    """

    def __init__(self, mean: nn.Module, sigma: float) -> None:
        super().__init__()
        if not isinstance(mean, nn.Module):
            raise TypeError(f"mean must be an nn.Module, got {type(mean).__name__}")
        self.mean, self.sigma = mean, positive("sigma", sigma)

    def act(self, state: Tensor, gen: torch.Generator) -> Tensor:
        """One action ``[k]`` for ``state`` ``[n]``, its noise drawn with ``gen``."""
        with torch.no_grad():
            mu = self.mean(state)  # [k]
            return mu + self.sigma * torch.randn(mu.shape, generator=gen, dtype=mu.dtype)

    def log_prob(self, states: Tensor, actions: Tensor) -> Tensor:
        """``log pi(a_h | s_h)`` ``[H]`` for states ``[H, n]`` and actions ``[H, k]``."""
        mu = self.mean(states)  # [H, k]
        k = mu.shape[-1]
        return -(actions - mu).square().sum(-1) / (2 * self.sigma**2) - k * math.log(
            self.sigma * math.sqrt(2 * math.pi)
        )


class CategoricalPolicy(nn.Module):
    """``a ~ softmax(logits(s))``: a policy over a finite action set.

    Args:
        logits: module mapping states ``[..., n]`` to action logits ``[..., A]``.
    """

    def __init__(self, logits: nn.Module) -> None:
        super().__init__()
        if not isinstance(logits, nn.Module):
            raise TypeError(f"logits must be an nn.Module, got {type(logits).__name__}")
        self.logits = logits

    def act(self, state: Tensor, gen: torch.Generator) -> Tensor:
        """One action index (an int64 scalar) for ``state`` ``[n]``, drawn with ``gen``."""
        with torch.no_grad():
            probs = torch.softmax(self.logits(state.to(_dtype(self))), -1)  # [A]
            return torch.multinomial(probs, 1, generator=gen)[0]

    def log_prob(self, states: Tensor, actions: Tensor) -> Tensor:
        """``log pi(a_h | s_h)`` ``[H]`` for states ``[H, n]`` and action indices ``[H]``."""
        logp = torch.log_softmax(self.logits(states.to(_dtype(self))), -1)  # [H, A]
        return logp.gather(-1, actions.long()[:, None])[:, 0]


Policy = GaussianPolicy | CategoricalPolicy


def _dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def check_policy(policy: object) -> None:
    """Raise ``TypeError`` unless ``policy`` is an ``nn.Module`` with ``act``, ``log_prob`` and parameters."""
    if not isinstance(policy, nn.Module) or not callable(getattr(policy, "act", None)):
        raise TypeError(
            f"policy must be an nn.Module with act(state, gen) and log_prob(states, actions) "
            f"(GaussianPolicy, CategoricalPolicy), got {type(policy).__name__}"
        )
    if not callable(getattr(policy, "log_prob", None)) or not list(policy.parameters()):
        raise TypeError(f"policy {type(policy).__name__} needs log_prob(states, actions) and parameters")


def rollout(env: Env, policy: Policy, gen: torch.Generator) -> Trajectory:
    """One episode of ``env`` under ``policy``'s current parameters, seeded by ``gen``."""
    return env.rollout(lambda state: policy.act(state, gen), gen)


def surrogate(policy: Policy, traj: Trajectory, discount: float) -> tuple[Tensor, Tensor]:
    """The GPOMDP surrogate ``Phi(tau, theta)`` and ``log p(tau | theta)``, differentiable in the parameters.

    Args:
        policy: the policy whose parameters are ``theta``.
        traj: an episode of length ``H``.
        discount: ``c`` in ``(0, 1]``.

    Returns:
        ``(Phi, log_p)``: ``sum_h log pi(a_h|s_h) sum_{t>=h} c^t r_t`` and ``sum_h log pi(a_h|s_h)``.
    """
    logp = policy.log_prob(traj.states, traj.actions)  # [H]
    weights = discount ** torch.arange(len(traj.rewards), dtype=logp.dtype) * traj.rewards.to(
        logp.dtype
    )  # [H]
    to_go = weights.flip(0).cumsum(0).flip(0)  # [H]: sum_{t>=h} c^t r_t
    return (logp * to_go).sum(), logp.sum()


def gpomdp_grad(policy: Policy, traj: Trajectory, discount: float) -> Tensor:
    """The GPOMDP estimate ``g(tau, theta) = grad Phi`` ``[d]``, flat in ``policy.parameters()`` order."""
    params = list(policy.parameters())
    with torch.enable_grad():
        phi, _ = surrogate(policy, traj, discount)
        grads = torch.autograd.grad(phi, params)
    return torch.cat([g.reshape(-1) for g in grads])  # [d]


def hessian_aided_product(
    phi: Tensor, log_p: Tensor, params: Sequence[Tensor], vector: Sequence[Tensor]
) -> list[Tensor]:
    """``B v = grad Phi (grad log p . v) + hess Phi v`` by double backward (no ``d x d`` matrix).

    Args:
        phi: scalar ``Phi(tau, theta)`` (or ``-Phi``: the product is linear in ``phi``) with its graph.
        log_p: scalar ``log p(tau | theta)`` with its graph.
        params: the parameters ``theta`` both were computed from.
        vector: ``v``, one tensor per parameter, shaped like it.

    Returns:
        One tensor per parameter, shaped like it.

    Raises:
        ValueError: ``vector`` and ``params`` differ in length or shapes.
    """
    if len(vector) != len(params) or any(v.shape != p.shape for v, p in zip(vector, params, strict=True)):
        raise ValueError(
            f"vector must match params in length and shapes, got {[tuple(v.shape) for v in vector]} for "
            f"{[tuple(p.shape) for p in params]}"
        )
    with torch.enable_grad():
        g_logp = torch.autograd.grad(log_p, params, retain_graph=True)
        g_phi = torch.autograd.grad(phi, params, create_graph=True)
        dot = sum((g * v).sum() for g, v in zip(g_phi, vector, strict=True))
        hess_v = torch.autograd.grad(dot, params, allow_unused=True)
    scale = sum((g * v).sum() for g, v in zip(g_logp, vector, strict=True))
    return [
        g.detach() * scale + (torch.zeros_like(p) if h is None else h)
        for g, h, p in zip(g_phi, hess_v, params, strict=True)
    ]


@dataclass(frozen=True)
class PGHistory:
    """A policy-gradient run.

    Attributes:
        returns: ``[T]`` mean undiscounted return of the episodes sampled in each iteration.
        trajectories: ``[T]`` episodes sampled so far after each iteration.
        values: ``[T + 1]`` ``evaluate(policy)`` before the first and after every iteration (``[0]`` when no
            ``evaluate`` was given).
    """

    returns: Tensor
    trajectories: Tensor
    values: Tensor


def episode_closure(
    env: Env, policy: Policy, gen: torch.Generator, record: list[float] | None = None
) -> Closure:
    """The optimizers' closure: sample one episode at the current parameters, return ``(-Phi, log p)``.

    Args:
        env: the environment.
        policy: the policy being optimised.
        gen: seeds the episodes.
        record: if given, each episode's undiscounted return is appended to it.
    """

    def closure() -> tuple[Tensor, Tensor]:
        traj = rollout(env, policy, gen)
        if record is not None:
            record.append(float(traj.rewards.sum()))
        with torch.enable_grad():
            phi, log_p = surrogate(policy, traj, env.discount)
        return -phi, log_p

    return closure


def check_run(env: object, policy: object, budget: int, lr: float, seed: int) -> None:
    """Validate the arguments shared by the run functions (raises ``TypeError`` / ``ValueError``)."""
    if not callable(getattr(env, "rollout", None)) or not hasattr(env, "discount"):
        raise TypeError(
            f"env must have rollout(act, gen) and discount (LQR, CartPole), got {type(env).__name__}"
        )
    check_policy(policy)
    positive_int("budget", budget)
    positive("lr", lr)
    positive_int("seed", seed, minimum=0)


def run_policy_gradient(
    env: Env,
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    *,
    budget: int,
    per_step: int,
    gen: torch.Generator,
    evaluate: Callable[[Policy], float] | None,
) -> PGHistory:
    """Step ``optimizer`` with :func:`episode_closure` until ``budget`` episodes are spent.

    The step size decays as ``lr_t = lr * 2 / (t + 2)`` (the schedules of the paper's theorems, ``t`` from 0).
    Stops when the next step could need more than ``budget`` episodes (``per_step`` at most per step);
    ``gen`` seeds the episodes.
    """
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 2 / (t + 2))
    episodes: list[float] = []
    closure = episode_closure(env, policy, gen, episodes)
    returns, used = [], []
    values = [evaluate(policy)] if evaluate is not None else []
    while not used or used[-1] + per_step <= budget:
        before = len(episodes)
        optimizer.step(closure)  # type: ignore[arg-type]
        schedule.step()
        returns.append(sum(episodes[before:]) / (len(episodes) - before))
        used.append(len(episodes))
        if evaluate is not None:
            values.append(evaluate(policy))
    return PGHistory(
        torch.tensor(returns, dtype=torch.float64),
        torch.tensor(used),
        torch.tensor(values, dtype=torch.float64),
    )


def start_state(optimizer: torch.optim.Optimizer) -> list[tuple[dict[str, Any], Tensor]]:
    """The optimizers' ``(group, parameter)`` pairs in order, each parameter's state created on first sight.

    A new state holds ``step`` 0, a zero ``momentum`` ``d`` and ``previous``, a copy of the parameter
    (``theta_{-1} = theta_0``).
    """
    groups = [(group, p) for group in optimizer.param_groups for p in group["params"]]
    for _, p in groups:
        if not optimizer.state[p]:
            optimizer.state[p].update(step=0, momentum=torch.zeros_like(p), previous=p.detach().clone())
    return groups


def take_step(
    optimizer: torch.optim.Optimizer,
    groups: Sequence[tuple[dict[str, Any], Tensor]],
    directions: Sequence[Tensor],
) -> None:
    """``theta_{t+1} = theta_t - lr * direction`` per parameter (its group's ``lr``), in place.

    ``theta_t`` is kept as the state's ``previous`` and its ``step`` counted; ``directions`` are shaped like
    the parameters of ``groups`` (from :func:`start_state`). Call it under ``torch.no_grad()``.
    """
    for (group, p), direction in zip(groups, directions, strict=True):
        state = optimizer.state[p]
        state["previous"].copy_(p)
        p.add_(direction, alpha=-group["lr"])
        state["step"] += 1


def lqr_policy(env: LQR, sigma: float = 0.5) -> GaussianPolicy:
    """The LQR's Gaussian linear policy ``a = K s + sigma xi`` (float64, ``K = mean.weight``) at 0."""
    mean = nn.Linear(env.state_dim, env.action_dim, bias=False).double()
    nn.init.zeros_(mean.weight)
    return GaussianPolicy(mean, sigma)


def flat(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate tensors into one ``[d]`` vector."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unit(vectors: Sequence[Tensor]) -> list[Tensor]:
    """Scale a list of tensors to global L2 norm 1 (unchanged when all are zero)."""
    norm = flat(vectors).norm()
    return [v / norm for v in vectors] if norm > 0 else list(vectors)
