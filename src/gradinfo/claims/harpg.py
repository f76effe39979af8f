"""Claim check for N-HARPG (paper 37): a lower optimality gap than vanilla normalised PG at an equal budget,
with the Hessian-aided product by double backward equal to the dense autograd one.

Setting in :mod:`gradinfo.claims._policy_gradient` (exact LQR, 600 episodes per run, 10 runs; each method's
step is its best on one shared grid; N-HARPG spends two episodes per iteration, so it takes half as many
steps). The tuned baseline makes no progress from its start (the ``initial_gap`` figure) at this budget.
Pass (fixed before running): the median over the 10 runs of N-HARPG's final exact gap is below normalised
PG's, and ``B v`` from
:func:`~gradinfo.optim.policy_gradient.hessian_aided_product` on one LQR episode matches
``(grad Phi grad log p^T + hess Phi) v`` built from dense float64 autograd matrices to relative error 1e-10.
"""

from __future__ import annotations

import torch

from gradinfo.claims import ClaimResult
from gradinfo.claims._policy_gradient import BUDGET, RUNS, SIGMA, gap_figures
from gradinfo.optim.envs import LQR
from gradinfo.optim.policy_gradient import hessian_aided_product, lqr_policy, rollout

SLOW = True
PAPER_EFFECT = (
    "Theorems: sample complexity O(eps^-2.5) (N-PG-IGT) and O(eps^-2) (N-HARPG) for a global eps-optimal "
    "policy vs O(eps^-3) for vanilla normalised PG; no experiment table in the digest, so the margin is 0"
)


def _hvp_error(seed: int) -> float:
    """Relative error of the double-backward ``B v`` against dense matrices on one LQR episode."""
    env = LQR(horizon=10)
    policy = lqr_policy(env, SIGMA)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        policy.mean.weight.copy_(-0.3 * torch.rand(2, 2, generator=gen, dtype=torch.float64))
    traj = rollout(env, policy, gen)
    v = torch.randn(2, 2, generator=gen, dtype=torch.float64)
    weights = env.discount ** torch.arange(env.horizon, dtype=torch.float64) * traj.rewards  # [H]
    to_go = weights.flip(0).cumsum(0).flip(0)  # [H]

    def log_probs(gain: torch.Tensor) -> torch.Tensor:  # [H]
        return -(traj.actions - traj.states @ gain.T).square().sum(-1) / (2 * SIGMA**2)

    gain = policy.mean.weight.detach()
    hessian = torch.autograd.functional.hessian(lambda k: (log_probs(k) * to_go).sum(), gain)  # [2, 2, 2, 2]
    g_phi = torch.autograd.functional.jacobian(lambda k: (log_probs(k) * to_go).sum(), gain)  # [2, 2]
    g_logp = torch.autograd.functional.jacobian(lambda k: log_probs(k).sum(), gain)  # [2, 2]
    dense = (torch.outer(g_phi.reshape(-1), g_logp.reshape(-1)) + hessian.reshape(4, 4)) @ v.reshape(
        -1
    )  # [4]
    phi = (policy.log_prob(traj.states, traj.actions) * to_go).sum()
    log_p = policy.log_prob(traj.states, traj.actions).sum()
    (got,) = hessian_aided_product(phi, log_p, [policy.mean.weight], [v])
    return float((got.reshape(-1) - dense).norm() / dense.norm())


def check(seed: int = 0) -> ClaimResult:
    """Run both methods over 10 seeded runs and the product check; figures: gaps and the product's error."""
    figures = gap_figures("harpg", seed) | {"hvp_relative_error": _hvp_error(seed)}
    return ClaimResult(
        "harpg",
        f"median final exact LQR gap over {RUNS} runs of {BUDGET} episodes: N-HARPG < normalised PG; "
        "double-backward B v = dense autograd B v (relative error <= 1e-10)",
        bool(
            figures["harpg_median_gap"] < figures["normalized_pg_median_gap"]
            and figures["hvp_relative_error"] <= 1e-10
        ),
        figures,
        seed=seed,
    )
