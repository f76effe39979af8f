"""N-PG-IGT: normalised policy gradient with implicit gradient transport (and plain normalised PG).

From "Stochastic Policy Gradient Methods: Improved Sample Complexity for Fisher-non-degenerate Policies"
(2023, Fatkhullin, Barakat, Kireeva, He; arXiv:2302.01734), Algorithm 1. With the GPOMDP estimate
``g(tau, theta)`` (:mod:`gradinfo.optim.policy_gradient`), one episode per iteration ``t = 0, 1, ...``:

    theta~_t  = theta_t + ((1 - eta_t) / eta_t) (theta_t - theta_{t-1})      (theta_{-1} = theta_0)
    tau_t     ~ pi_{theta~_t}
    d_t       = (1 - eta_t) d_{t-1} + eta_t g(tau_t, theta~_t)
    theta_t+1 = theta_t + gamma_t d_t / ||d_t||

Evaluating the fresh gradient at the extrapolated point transports the old gradients in the momentum to
``theta_t`` without a Hessian (implicit gradient transport, Arnold et al. 2019). The schedules are those of
the paper's sample-complexity theorem: ``eta_t = (2 / (t + 2))^{4/5}``, ``gamma_t = gamma_0 * 2 / (t + 2)``
(no official code exists; ``gamma_0`` is the ``lr`` argument). With ``eta_t = 1`` the update is plain
normalised policy gradient, the paper's baseline (:func:`normalized_pg`).

As a ``torch.optim.Optimizer`` (:class:`NPGIGT`) the method minimises: the closure returns the loss ``-Phi``
of a fresh episode sampled at the parameters it finds (the optimizer moves them to ``theta~`` before
calling it and back after), and ``d`` is the momentum of loss gradients.
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
    lqr_policy,
    run_policy_gradient,
    start_state,
    take_step,
    unit,
)


class NPGIGT(torch.optim.Optimizer):
    """N-PG-IGT as a drop-in ``torch.optim.Optimizer`` (param groups, LR schedulers, ``state_dict``).

    ``step(closure)`` moves the parameters to ``theta~_t``, calls ``closure()`` once (it must sample a fresh
    episode there and return its loss ``-Phi`` with the graph, or a ``(loss, log_prob)`` pair), moves them
    back, updates the momentum ``d`` and steps ``theta -= lr * d / ||d||`` (``||d||`` over all groups).
    The paper decays ``lr`` as ``lr_0 * 2 / (t + 2)``: attach a ``LambdaLR`` scheduler.

    Args:
        params: parameters or param groups.
        lr: step length ``gamma`` (> 0).
        eta_power: ``eta_t = (2 / (t + 2))^eta_power`` (paper: 4/5); 0 gives normalised PG.

    Raises:
        TypeError / ValueError: ``lr <= 0`` or ``eta_power < 0``.
    """

    def __init__(self, params: Iterable[Any], lr: float = 0.1, *, eta_power: float = 0.8) -> None:
        positive("lr", lr)
        positive("eta_power", eta_power, allow_zero=True)
        super().__init__(params, {"lr": lr, "eta_power": eta_power})

    @torch.no_grad()
    def step(self, closure: Closure | Callable[[], Tensor] | None = None) -> Tensor:  # type: ignore[override]
        """One iteration; returns the closure's loss (at ``theta~_t``)."""
        if closure is None:
            raise ValueError("NPGIGT.step needs a closure that samples an episode and returns its loss -Phi")
        groups = start_state(self)
        params = [p for _, p in groups]
        saved, etas = [], []
        for group, p in groups:
            state = self.state[p]
            eta = (2 / (state["step"] + 2)) ** group["eta_power"]
            saved.append(p.detach().clone())
            etas.append(eta)
            p.add_(
                p - state["previous"], alpha=(1 - eta) / eta
            )  # theta~ = theta + (1-eta)/eta (theta - prev)
        with torch.enable_grad():
            out = closure()
            loss = out[0] if isinstance(out, tuple) else out
            grads = torch.autograd.grad(loss, params, allow_unused=True)  # at theta~
        for p, theta, g, eta in zip(params, saved, grads, etas, strict=True):
            p.copy_(theta)
            self.state[p]["momentum"].mul_(1 - eta).add_(torch.zeros_like(p) if g is None else g, alpha=eta)
        take_step(self, groups, unit([self.state[p]["momentum"] for p in params]))
        return loss.detach()


@register(
    "n_pg_igt",
    family="optim",
    paper=37,
    summary="Normalised policy gradient with implicit gradient transport (momentum at extrapolated points)",
    claim="gradinfo.claims.n_pg_igt:check",
    example="gradinfo.optim.n_pg_igt:CONFORMANCE",
)
def n_pg_igt(
    env: Env,
    policy: Policy,
    *,
    budget: int,
    lr: float = 0.1,
    seed: int = 0,
    evaluate: Callable[[Policy], float] | None = None,
) -> PGHistory:
    """Train ``policy`` in place on ``env`` by N-PG-IGT for ``budget`` episodes (one per iteration).

    The method of "Stochastic Policy Gradient Methods: Improved Sample Complexity for Fisher-non-degenerate
    Policies" (2023), Algorithm 1: ``theta~_t = theta_t + ((1 - eta_t)/eta_t)(theta_t - theta_{t-1})``,
    ``d_t = (1 - eta_t) d_{t-1} + eta_t g(tau_t, theta~_t)`` with ``tau_t ~ pi_{theta~_t}``,
    ``theta_{t+1} = theta_t + gamma_t d_t / ||d_t||``, ``eta_t = (2/(t+2))^{4/5}``,
    ``gamma_t = lr * 2/(t+2)``; ``g`` is the GPOMDP estimate.

    Args:
        env: an environment with ``rollout`` and ``discount`` (:class:`~gradinfo.optim.envs.LQR`,
            :class:`~gradinfo.optim.envs.CartPole`).
        policy: a :class:`~gradinfo.optim.policy_gradient.GaussianPolicy` or ``CategoricalPolicy``; its
            parameters are updated in place.
        budget: episodes to sample in all.
        lr: the initial step length ``gamma_0``.
        seed: seeds every episode.
        evaluate: optional ``policy -> float`` recorded before and after every iteration (for the LQR, the
            exact optimality gap).

    Returns:
        A :class:`~gradinfo.optim.policy_gradient.PGHistory`.

    Raises:
        TypeError: ``env`` or ``policy`` lacks the needed methods; a number of the wrong type.
        ValueError: ``budget < 1``, ``lr <= 0`` or ``seed < 0``.
    """
    return _run(env, policy, budget, lr, seed, evaluate)


def normalized_pg(
    env: Env,
    policy: Policy,
    *,
    budget: int,
    lr: float = 0.1,
    seed: int = 0,
    evaluate: Callable[[Policy], float] | None = None,
) -> PGHistory:
    """The baseline: vanilla normalised policy gradient ``theta += gamma_t g / ||g||``, one episode per step.

    :class:`NPGIGT` with ``eta_t = 1`` (no momentum, no extrapolation); the same schedule
    ``gamma_t = lr * 2/(t+2)``. Args, Returns and Raises as :func:`n_pg_igt`.
    """
    return _run(env, policy, budget, lr, seed, evaluate, eta_power=0.0)


def _run(
    env: Env,
    policy: Policy,
    budget: int,
    lr: float,
    seed: int,
    evaluate: Callable[[Policy], float] | None,
    **settings: float,
) -> PGHistory:
    """Check the arguments, then train ``policy`` with :class:`NPGIGT` (``settings``: its keywords)."""
    check_run(env, policy, budget, lr, seed)
    optimizer = NPGIGT(policy.parameters(), lr, **settings)
    gen = torch.Generator().manual_seed(seed)
    return run_policy_gradient(env, policy, optimizer, budget=budget, per_step=1, gen=gen, evaluate=evaluate)


def _example(seed: int) -> PGHistory:
    env = LQR(horizon=5)
    policy = lqr_policy(env)
    return n_pg_igt(
        env, policy, budget=6, seed=seed, evaluate=lambda p: env.optimality_gap(p.mean.weight, 0.5)
    )


CONFORMANCE = Conformance(
    call=_example,
    bad_calls=(
        lambda: n_pg_igt(LQR(), lqr_policy(LQR()), budget=0),
        lambda: n_pg_igt(LQR(), lqr_policy(LQR()), budget=5, lr=-1.0),
        lambda: n_pg_igt(LQR(), lqr_policy(LQR()), budget=5, seed=-1),
        lambda: n_pg_igt("lqr", lqr_policy(LQR()), budget=5),  # type: ignore[arg-type]
        lambda: n_pg_igt(LQR(), nn.Linear(2, 1), budget=5),  # type: ignore[arg-type]
        lambda: NPGIGT(nn.Linear(2, 1).parameters(), lr=0.0),
    ),
)
