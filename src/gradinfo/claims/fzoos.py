"""Claim check for FZooS (paper 8): at equal total queries its final optimality gap is <= 0.5x FedZO's.

"Federated Zeroth-Order Optimization using Trajectory-Informed Surrogate Gradients" (2024) claims FZooS
needs fewer queries than FedZO on heterogeneous synthetic functions. Setting, fixed before any run (the
digest's CPU proof): the official heterogeneous shifted quadratics
(``gradinfo.optim._federated_functions.heterogeneous_quadratic``: N = 5 clients, d = 10, heterogeneity
1, closed-form ``F*``), the same start ``x0`` for both methods, Adam with lr 0.01 locally for both.

- FZooS: R = 10 rounds of T = 10 local steps with the official defaults (GP on the 150 nearest queries,
  5 exploration queries per step, 50 around each global point), except M = 2,000 random Fourier
  features instead of 10,000 (CPU time; the final gaps barely move with M on this problem).
- FedZO: q = 10 Gaussian directions, mu = 0.005 (``q + 1`` queries per step), T = 10 local steps, and
  as many rounds as it takes to spend at least as many queries per client as FZooS did (FedZO is never
  given fewer queries).

Tuning: FedZO's local Adam lr is tuned on ``FEDZO_LRS`` (0.003 to 0.1, half-decades; the lr with the lowest
mean gap over the three problems counts), FZooS runs at the grid's 0.01 untuned (one FZooS run costs ~80 s
here): the baseline gets more tuning than the method, never less.

Problems and algorithm seeds ``seed, seed + 1, seed + 2``. Pass: mean final ``F - F*`` of FZooS <= 0.5x
the mean of FedZO's at its best lr.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from gradinfo.claims import ClaimResult
from gradinfo.optim._federated_functions import heterogeneous_quadratic
from gradinfo.optim.fedzo import fedzo
from gradinfo.optim.fzoos import fzoos

SLOW = True
RUNS = 3
ROUNDS = 10
LOCAL_STEPS = 10
FEATURES = 2_000
FEDZO_QUERIES = 10
FEDZO_MU = 0.005
FEDZO_LRS = (0.003, 0.01, 0.03, 0.1)
FZOOS_LR = 0.01
PAPER_EFFECT = (
    "synthetic heterogeneous functions: FZooS needs fewer queries and rounds than FedZO for a given F - F*; "
    "the digest's CPU margin: <= 0.5x FedZO's gap at equal queries"
)
RATIO = 0.5


@contextmanager
def _single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # [150, 150] kernels: intra-op threads only add synchronisation
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def check(seed: int = 0) -> ClaimResult:
    with _single_thread():
        return _measure(seed)


def _measure(seed: int) -> ClaimResult:
    figures: dict[str, float] = {}
    gaps_fzoos: list[float] = []
    gaps_fedzo: dict[float, list[float]] = {lr: [] for lr in FEDZO_LRS}
    for run in range(RUNS):
        problem = heterogeneous_quadratic(clients=5, dim=10, heterogeneity=1.0, seed=seed + run)
        ours = fzoos(
            problem.functions,
            problem.x0,
            rounds=ROUNDS,
            local_steps=LOCAL_STEPS,
            features=FEATURES,
            lr=FZOOS_LR,
            seed=seed + run,
        )
        budget = int(ours.queries[-1].max())
        per_round = LOCAL_STEPS * (FEDZO_QUERIES + 1)
        for lr in FEDZO_LRS:
            base = fedzo(
                problem.functions,
                problem.x0,
                rounds=math.ceil(budget / per_round),
                local_steps=LOCAL_STEPS,
                queries=FEDZO_QUERIES,
                mu=FEDZO_MU,
                lr=lr,
                seed=seed + run,
            )
            gaps_fedzo[lr].append(problem.gap(base.x))
        gaps_fzoos.append(problem.gap(ours.x))
        figures[f"initial_gap_{run}"] = problem.gap(problem.x0)
        figures[f"fzoos_gap_{run}"] = gaps_fzoos[-1]
        figures[f"fzoos_queries_per_client_{run}"] = budget
        figures[f"fedzo_queries_per_client_{run}"] = int(base.queries[-1].max())
    mean_fedzo_by_lr = {lr: sum(gaps) / RUNS for lr, gaps in gaps_fedzo.items()}
    best_lr = min(mean_fedzo_by_lr, key=mean_fedzo_by_lr.get)
    mean_fzoos, mean_fedzo = sum(gaps_fzoos) / RUNS, mean_fedzo_by_lr[best_lr]
    figures |= {f"fedzo_mean_gap_lr{lr:g}": gap for lr, gap in mean_fedzo_by_lr.items()}
    figures["fedzo_best_lr"] = best_lr
    figures["fzoos_mean_gap"] = mean_fzoos
    figures["fedzo_mean_gap"] = mean_fedzo
    figures["gap_ratio"] = mean_fzoos / mean_fedzo
    return ClaimResult(
        method="fzoos",
        claim=f"mean final F - F* of FZooS <= {RATIO} x FedZO's at its best lr of {FEDZO_LRS}, "
        "FedZO given >= equal queries (3 quadratics)",
        passed=bool(mean_fzoos <= RATIO * mean_fedzo),
        figures=figures,
        seed=seed,
    )
