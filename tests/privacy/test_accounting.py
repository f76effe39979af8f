"""Accounting against Opacus' accountants, closed forms for q = 1, monotonicity, and the inverse search."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from dp_accounting.rdp.rdp_privacy_accountant import DEFAULT_RDP_ORDERS
from hypothesis import given, settings
from hypothesis import strategies as st
from opacus.accountants import PRVAccountant, RDPAccountant
from scipy.optimize import brentq
from scipy.stats import norm

from gradinfo.privacy.accounting import epsilon, noise_for_epsilon

CASES = [(1.0, 0.01, 1000, 1e-5), (1.1, 0.004, 5000, 1e-5), (0.8, 0.05, 200, 1e-6), (2.0, 1.0, 1, 1e-5)]


def _opacus_rdp(sigma: float, q: float, steps: int, delta: float, alphas: list[float] | None) -> float:
    acc = RDPAccountant()
    for _ in range(steps):
        acc.step(noise_multiplier=sigma, sample_rate=q)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus warns when the optimal order is at the grid's edge
        return acc.get_epsilon(delta, alphas=alphas)


@pytest.mark.parametrize(("sigma", "q", "steps", "delta"), CASES)
def test_rdp_matches_opacus_on_the_same_orders(sigma: float, q: float, steps: int, delta: float) -> None:
    ours = epsilon(sigma, q, steps, delta, accountant="rdp")
    reference = _opacus_rdp(sigma, q, steps, delta, alphas=list(DEFAULT_RDP_ORDERS))
    assert ours == pytest.approx(reference, rel=1e-6)


@pytest.mark.parametrize(("sigma", "q", "steps", "delta"), CASES)
def test_rdp_on_a_finer_grid_is_no_looser_than_opacus_defaults(
    sigma: float, q: float, steps: int, delta: float
) -> None:
    # Opacus' default orders (1.1..10.9, 12..63) are a subset of dp-accounting's: our minimum is <= theirs,
    # and close, since the optimum lies inside both grids for these settings.
    ours = epsilon(sigma, q, steps, delta, accountant="rdp")
    reference = _opacus_rdp(sigma, q, steps, delta, alphas=None)
    assert ours <= reference * (1 + 1e-6)  # 1e-6: the two libraries' fractional-order RDP differ by ~1e-7
    assert ours == pytest.approx(reference, rel=0.05)


@pytest.mark.parametrize(("sigma", "q", "steps", "delta"), CASES[:3])
def test_prv_lies_within_opacus_prv_bounds(sigma: float, q: float, steps: int, delta: float) -> None:
    # Opacus' PRV accountant brackets the true epsilon in [lower, upper] with eps_error = 0.01. Ours is a
    # pessimistic PLD bound: it must not lie below the true value, hence not below Opacus' lower bound,
    # and it should be about as tight as Opacus' upper bound.
    acc = PRVAccountant()
    acc.history = [(sigma, q, steps)]
    eps_error = 0.01
    lower, _, upper = acc._get_dprv(eps_error=eps_error, delta_error=delta / 1000).compute_epsilon(
        delta, delta / 1000, eps_error
    )
    ours = epsilon(sigma, q, steps, delta, accountant="prv")
    assert lower - 1e-9 <= ours <= upper + eps_error


def _exact_gaussian_epsilon(sigma: float, delta: float) -> float:
    """Exact (eps, delta) of one Gaussian mechanism with sensitivity 1 (Balle & Wang 2018, Thm. 8)."""

    def delta_of(eps: float) -> float:
        return norm.cdf(0.5 / sigma - eps * sigma) - math.exp(eps) * norm.cdf(-0.5 / sigma - eps * sigma)

    return brentq(lambda eps: delta_of(eps) - delta, 0.0, 100.0, xtol=1e-12)


@pytest.mark.parametrize("sigma", [0.7, 2.0, 5.0])
def test_full_batch_single_step_rdp_closed_form(sigma: float) -> None:
    delta = 1e-5
    orders = np.asarray(DEFAULT_RDP_ORDERS, dtype=np.float64)
    rdp = orders / (2 * sigma**2)  # RDP of the Gaussian mechanism (Mironov 2017, Prop. 7)
    closed = np.min(rdp + np.log1p(-1 / orders) - np.log(delta * orders) / (orders - 1))
    assert epsilon(sigma, 1.0, 1, delta, accountant="rdp") == pytest.approx(closed, rel=1e-9)


@pytest.mark.parametrize("sigma", [0.7, 2.0, 5.0])
def test_full_batch_single_step_prv_is_a_tight_upper_bound_on_the_exact_gaussian(sigma: float) -> None:
    exact = _exact_gaussian_epsilon(sigma, 1e-5)
    ours = epsilon(sigma, 1.0, 1, 1e-5, accountant="prv")
    assert exact - 1e-9 <= ours <= exact + 5e-3
    assert ours <= epsilon(sigma, 1.0, 1, 1e-5, accountant="rdp")


@settings(max_examples=8, deadline=None)
@given(
    sigma=st.floats(0.6, 4.0),
    factor=st.floats(1.1, 2.0),
    q=st.floats(0.001, 0.2),
    steps=st.integers(1, 500),
)
def test_rdp_monotone_in_noise_and_steps(sigma: float, factor: float, q: float, steps: int) -> None:
    base = epsilon(sigma, q, steps, 1e-5)
    assert epsilon(sigma * factor, q, steps, 1e-5) <= base
    assert epsilon(sigma, q, steps * 2, 1e-5) >= base
    assert epsilon(sigma, min(1.0, q * factor), steps, 1e-5) >= base


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_monotone_on_a_grid(accountant: str) -> None:
    by_noise = [epsilon(s, 0.02, 300, 1e-5, accountant) for s in (0.6, 0.9, 1.3, 2.0)]
    by_steps = [epsilon(1.0, 0.02, n, 1e-5, accountant) for n in (10, 100, 1000)]
    assert all(a > b for a, b in itertools.pairwise(by_noise))
    assert all(a < b for a, b in itertools.pairwise(by_steps))


@pytest.mark.parametrize(
    ("target", "q", "steps", "accountant", "rtol"),
    [
        (8.0, 0.01, 1000, "rdp", 1e-3),
        (1.0, 0.01, 1000, "rdp", 1e-3),
        (0.5, 1.0, 1, "rdp", 1e-3),
        (3.0, 0.05, 50, "prv", 1e-2),
    ],
)
def test_noise_for_epsilon_is_the_smallest_noise_within_budget(
    target: float, q: float, steps: int, accountant: str, rtol: float
) -> None:
    sigma = noise_for_epsilon(target, q, steps, 1e-5, accountant, rtol=rtol)
    assert epsilon(sigma, q, steps, 1e-5, accountant) <= target  # never under-reported
    assert epsilon(sigma * (1 - 2 * rtol), q, steps, 1e-5, accountant) > target  # and not much larger


def test_noise_for_epsilon_inverts_opacus() -> None:
    sigma = noise_for_epsilon(2.0, 0.01, 500, 1e-5)
    assert _opacus_rdp(sigma, 0.01, 500, 1e-5, alphas=list(DEFAULT_RDP_ORDERS)) <= 2.0 * (1 + 1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"noise_multiplier": 0.0}, ValueError, "noise_multiplier"),
        ({"noise_multiplier": "1"}, TypeError, "noise_multiplier"),
        ({"sample_rate": 0.0}, ValueError, "sample_rate"),
        ({"sample_rate": 1.5}, ValueError, "sample_rate"),
        ({"steps": 0}, ValueError, "steps"),
        ({"steps": 2.0}, TypeError, "steps"),
        ({"delta": 0.0}, ValueError, "delta"),
        ({"delta": 1.0}, ValueError, "delta"),
        ({"accountant": "gdp"}, ValueError, "accountant"),
    ],
)
def test_epsilon_rejects_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    args = {"noise_multiplier": 1.0, "sample_rate": 0.01, "steps": 10, "delta": 1e-5, "accountant": "rdp"}
    with pytest.raises(error, match=match):
        epsilon(**{**args, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_epsilon": -1.0}, "target_epsilon"),
        ({"rtol": 1.0}, "rtol"),
        ({"accountant": "RDP"}, "accountant"),
        ({"target_epsilon": 1e-6}, "needs noise_multiplier"),
        ({"sample_rate": 1e-6, "steps": 1, "accountant": "prv"}, "vacuous"),  # sampled less often than delta
    ],
)
def test_noise_for_epsilon_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    args = {"target_epsilon": 1.0, "sample_rate": 0.01, "steps": 100, "delta": 1e-5, "accountant": "rdp"}
    with pytest.raises(ValueError, match=match):
        noise_for_epsilon(**{**args, **kwargs})
