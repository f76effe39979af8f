"""Claim check for N-PG-IGT (paper 37): a lower optimality gap than vanilla normalised PG at an equal budget.

Setting in :mod:`gradinfo.claims._policy_gradient` (exact LQR, 600 episodes per run, 10 runs). Pass (fixed
before running): the median over the 10 runs of N-PG-IGT's final exact gap is below normalised PG's.
"""

from __future__ import annotations

from gradinfo.claims import ClaimResult
from gradinfo.claims._policy_gradient import BUDGET, RUNS, gap_figures

SLOW = True


def check(seed: int = 0) -> ClaimResult:
    """Run both methods over 10 seeded runs; figures: median, mean and worst final gaps."""
    figures = gap_figures("n_pg_igt", seed)
    return ClaimResult(
        "n_pg_igt",
        f"median final exact LQR gap over {RUNS} runs of {BUDGET} episodes: N-PG-IGT < normalised PG",
        bool(figures["n_pg_igt_median_gap"] < figures["normalized_pg_median_gap"]),
        figures,
        seed=seed,
    )
