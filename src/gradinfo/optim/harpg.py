"""(N-)HARPG: Hessian-aided recursive policy gradient, normalised or not.

From "Stochastic Policy Gradient Methods: Improved Sample Complexity for Fisher-non-degenerate Policies"
(2023, Fatkhullin, Barakat, Kireeva, He; arXiv:2302.01734), Algorithm 2. With the GPOMDP estimate
``g(tau, theta)`` and ``B(tau, theta) = grad Phi grad log p(tau | theta)^T + hess Phi``
(:mod:`gradinfo.optim.policy_gradient`), ``d_0 = g(tau_0, theta_0)`` and, for ``t >= 1``:

    q_t ~ U(0, 1),   theta^_t = q_t theta_t + (1 - q_t) theta_{t-1}
    tau_t ~ pi_{theta_t},   tau^_t ~ pi_{theta^_t}
    v_t = B(tau^_t, theta^_t) (theta_t - theta_{t-1})
    d_t = (1 - eta_t)(d_{t-1} + v_t) + eta_t g(tau_t, theta_t)
    theta_{t+1} = theta_t + gamma_t d_t / ||d_t||          (N-HARPG; HARPG: + gamma_t d_t)

``v_t`` is an unbiased estimate of ``grad J(theta_t) - grad J(theta_{t-1})`` (the integral of the Hessian
along the segment, sampled at a uniform point), so ``d_t`` is a STORM-type recursive momentum without
importance sampling. ``B v`` is computed by double backward,
``grad Phi (grad log p . v) + grad (grad Phi . v)``, never a ``d x d`` matrix. Schedules of the paper's
theorem: ``eta_t = 2 / (t + 2)``, ``gamma_t = gamma_0 * 2 / (t + 2)`` (no official code exists; ``gamma_0``
is the ``lr`` argument). Two episodes per iteration after the first.

As a ``torch.optim.Optimizer`` (:class:`HARPG`) the method minimises: the closure returns ``(-Phi, log p)``
of a fresh episode sampled at the parameters it finds (the optimizer moves them to ``theta^`` for the first
call and back for the second); ``B`` is linear in ``Phi``, so ``d`` is the recursive momentum of loss
gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from gradinfo.core.registry import Conformance, register
from gradinfo.core.validate import positive
from gradinfo.optim.envs import LQR, Env
from gradinfo.optim.policy_gradient import (
    Closure,
    PGHistory,
    Policy,
    check_run,
    hessian_aided_product,
    lqr_policy,
    run_policy_gradient,
    start_state,
    take_step,
    unit,
)


class HARPG(torch.optim.Optimizer):
    """(N-)HARPG as a drop-in ``torch.optim.Optimizer`` (param groups, LR schedulers, ``state_dict``).

    ``step(closure)``: the closure samples a fresh episode at the parameters' current values and returns
    ``(loss, log_prob) = (-Phi, log p(tau))`` with their graphs. The first step calls it once (``d_0 = g``);
    later steps call it at ``theta^_t`` (for ``B v``) and at ``theta_t``. The paper decays ``lr`` as
    ``lr_0 * 2 / (t + 2)``: attach a ``LambdaLR`` scheduler.

    Args:
        params: parameters or param groups.
        lr: step length ``gamma`` (> 0).
        normalized: N-HARPG (``theta -= lr d / ||d||``, ``||d||`` over all groups) or HARPG
            (``theta -= lr d``).
        generator: draws the interpolation weights ``q_t`` (None: torch's global generator).

    Raises:
        TypeError / ValueError: ``lr <= 0``, ``normalized`` not a bool, ``generator`` not a
            ``torch.Generator``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.1,
        *,
        normalized: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        positive("lr", lr)
        if not isinstance(normalized, bool):
            raise TypeError(f"normalized must be a bool, got {type(normalized).__name__} {normalized!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        super().__init__(params, {"lr": lr, "normalized": normalized})
        self.generator = generator

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor:  # type: ignore[override]
        """One iteration; returns the loss of the episode sampled at ``theta_t``."""
        if closure is None:
            raise ValueError("HARPG.step needs a closure returning (-Phi, log p) of a fresh episode")
        groups = start_state(self)
        params = [p for _, p in groups]
        t = self.state[params[0]]["step"]
        if t > 0:
            q = float(torch.rand((), generator=self.generator, dtype=torch.float64))
            thetas = [p.detach().clone() for p in params]
            moves = [theta - self.state[p]["previous"] for p, theta in zip(params, thetas, strict=True)]
            for p, theta in zip(params, thetas, strict=True):
                p.copy_(q * theta + (1 - q) * self.state[p]["previous"])  # theta^ on the segment
            with torch.enable_grad():
                loss_hat, log_p_hat = closure()
                corrections = hessian_aided_product(loss_hat, log_p_hat, params, moves)  # B(tau^, theta^) v
            for p, theta in zip(params, thetas, strict=True):
                p.copy_(theta)
        with torch.enable_grad():
            loss, _ = closure()
            grads = torch.autograd.grad(loss, params, allow_unused=True)  # g(tau, theta_t)
        eta = 2 / (t + 2)
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            g = torch.zeros_like(p) if g is None else g
            d = self.state[p]["momentum"]
            if t == 0:
                d.copy_(g)
            else:
                d.add_(corrections[i]).mul_(1 - eta).add_(g, alpha=eta)
        momenta = [self.state[p]["momentum"] for p in params]
        take_step(self, groups, unit(momenta) if self.param_groups[0]["normalized"] else momenta)
        return loss.detach()


@register(
    "harpg",
    family="optim",
    paper=37,
    summary="Hessian-aided recursive policy gradient: STORM momentum corrected by a double-backward HVP",
    claim="gradinfo.claims.harpg:check",
    example="gradinfo.optim.harpg:CONFORMANCE",
)
def harpg(
    env: Env,
    policy: Policy,
    *,
    budget: int,
    lr: float = 0.1,
    normalized: bool = True,
    seed: int = 0,
    evaluate: Callable[[Policy], float] | None = None,
) -> PGHistory:
    """Train ``policy`` in place on ``env`` by N-HARPG (or HARPG) for ``budget`` episodes (two per iteration).

    The method of "Stochastic Policy Gradient Methods: Improved Sample Complexity for Fisher-non-degenerate
    Policies" (2023), Algorithm 2: ``theta^_t = q theta_t + (1 - q) theta_{t-1}`` (``q ~ U(0, 1)``),
    ``d_t = (1 - eta_t)(d_{t-1} + B(tau^_t, theta^_t)(theta_t - theta_{t-1})) + eta_t g(tau_t, theta_t)``
    with ``tau_t ~ pi_{theta_t}``, ``tau^_t ~ pi_{theta^_t}``, ``B v`` by double backward,
    ``eta_t = 2/(t+2)``,
    ``theta_{t+1} = theta_t + gamma_t d_t / ||d_t||`` (or ``+ gamma_t d_t``), ``gamma_t = lr * 2/(t+2)``.

    Args:
        env: an environment with ``rollout`` and ``discount`` (:class:`~gradinfo.optim.envs.LQR`,
            :class:`~gradinfo.optim.envs.CartPole`).
        policy: a :class:`~gradinfo.optim.policy_gradient.GaussianPolicy` or ``CategoricalPolicy``; its
            parameters are updated in place.
        budget: episodes to sample in all (the first iteration takes one, later ones two).
        lr: the initial step length ``gamma_0``.
        normalized: N-HARPG (True) or HARPG (False).
        seed: seeds every episode and the interpolation weights.
        evaluate: optional ``policy -> float`` recorded before and after every iteration.

    Returns:
        A :class:`~gradinfo.optim.policy_gradient.PGHistory`.

    Raises:
        TypeError: ``env`` or ``policy`` lacks the needed methods; an argument of the wrong type.
        ValueError: ``budget < 1``, ``lr <= 0`` or ``seed < 0``.
    """
    check_run(env, policy, budget, lr, seed)
    gen = torch.Generator().manual_seed(seed)
    optimizer = HARPG(policy.parameters(), lr, normalized=normalized, generator=gen)
    return run_policy_gradient(env, policy, optimizer, budget=budget, per_step=2, gen=gen, evaluate=evaluate)


def _example(seed: int) -> PGHistory:
    env = LQR(horizon=5)
    policy = lqr_policy(env)
    return harpg(env, policy, budget=7, seed=seed, evaluate=lambda p: env.optimality_gap(p.mean.weight, 0.5))


CONFORMANCE = Conformance(
    call=_example,
    bad_calls=(
        lambda: harpg(LQR(), lqr_policy(LQR()), budget=0),
        lambda: harpg(LQR(), lqr_policy(LQR()), budget=5, lr=0.0),
        lambda: harpg(LQR(), lqr_policy(LQR()), budget=5, seed=-1),
        lambda: harpg(LQR(), lqr_policy(LQR()), budget=5, normalized=1),  # type: ignore[arg-type]
        lambda: harpg(LQR(), nn.Linear(2, 1), budget=5),  # type: ignore[arg-type]
        lambda: LQR(discount=1.0),
    ),
)
