"""Privacy accounting for DP-SGD: epsilon from a noise multiplier, and the noise for a target epsilon.

DP-SGD (Abadi et al., "Deep Learning with Differential Privacy", 2016) releases, at every step, the sum of
per-example gradients clipped to L2 norm C plus N(0, (sigma C)^2 I), on a batch drawn by Poisson sampling
with rate q. One step is the Poisson-subsampled Gaussian mechanism; a run is its ``steps``-fold
composition. This module accounts for that composition with the dp-accounting library (never by hand):

- ``accountant="rdp"``: Renyi DP (Mironov, "Renyi Differential Privacy", 2017). The RDP of the
  subsampled Gaussian at order alpha is composed additively over steps, then converted to (eps, delta)
  with eps = min_alpha [ steps * RDP(alpha) + log(1 - 1/alpha) - log(delta * alpha) / (alpha - 1) ]
  (Balle et al. 2020, Prop. 12; the conversion Opacus uses too). For q = 1, RDP(alpha) = alpha / (2 sigma^2).
- ``accountant="prv"``: numerical composition of the privacy loss distribution (Koskela et al.,
  "Computing Tight Differential Privacy Guarantees Using FFT", 2020; Gopi et al., "Numerical Composition
  of Differential Privacy", 2021), through dp-accounting's ``PLDAccountant`` with its pessimistic
  discretisation, so the reported epsilon is an upper bound, tighter than RDP.

Both use the add-or-remove-one neighbouring relation, as Opacus does. dp-accounting's RDP series for
fractional orders near 1 may fail to converge at large q; it then drops those orders with an absl warning per
order and call (hundreds per ``noise_for_epsilon``). Dropping orders can only raise the minimum, so epsilon
stays an upper bound; those warnings are silenced here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dp_accounting
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant

from gradinfo.core.validate import one_of, positive, positive_int

ACCOUNTANTS: tuple[str, ...] = ("rdp", "prv")

_PLD_INTERVAL = 1e-4
_SIGMA_FLOOR = 1e-3
_SIGMA_CEILING = 1e4


def _check(sample_rate: Any, steps: Any, delta: Any, accountant: Any) -> tuple[float, int, float, str]:
    """Validate the arguments shared by ``epsilon`` and ``noise_for_epsilon``."""
    sample_rate = positive("sample_rate", sample_rate)
    if sample_rate > 1:
        raise ValueError(f"sample_rate must lie in (0, 1] (batch size / dataset size), got {sample_rate!r}")
    steps = positive_int("steps", steps)
    delta = positive("delta", delta)
    if delta >= 1:
        raise ValueError(f"delta must lie in (0, 1), usually well below 1 / dataset size; got {delta!r}")
    accountant = one_of("accountant", accountant, ACCOUNTANTS)
    return sample_rate, steps, delta, accountant


@contextmanager
def _quiet_absl() -> Iterator[None]:
    """Silence absl warnings (dp-accounting's dropped RDP orders) for the duration of the block."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str) -> float:
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(sample_rate, dp_accounting.GaussianDpEvent(noise_multiplier)),
        steps,
    )
    if accountant == "rdp":
        ledger = RdpAccountant()
    else:
        # The privacy loss of a Gaussian spans ~1 / sigma^2; widening the grid as 1 / sigma^2 below
        # sigma = 0.5 bounds its memory (a fixed 1e-4 grid needs ~38 GB at sigma = 1e-3).
        # Rounding stays pessimistic, so epsilon stays an upper bound.
        interval = _PLD_INTERVAL * max(1.0, (0.5 / noise_multiplier) ** 2)
        ledger = PLDAccountant(value_discretization_interval=interval)
    with _quiet_absl():
        ledger.compose(event)
        return float(ledger.get_epsilon(delta))


def epsilon(
    noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str = "rdp"
) -> float:
    """Epsilon of ``steps`` DP-SGD steps with Poisson sampling rate ``sample_rate`` at the given ``delta``.

    Args:
        noise_multiplier: sigma, the noise standard deviation divided by the clipping norm C; > 0.
        sample_rate: q, each example's Poisson sampling probability (batch size / dataset size), in (0, 1].
        steps: number of noisy steps, an int >= 1.
        delta: target delta, in (0, 1).
        accountant: ``"rdp"`` (Renyi DP, dp-accounting's default orders 1.1..10.9, 11..63, 128..1024) or
            ``"prv"`` (privacy loss distribution with pessimistic rounding on a grid of
            1e-4, widened as 1e-4 (0.5 / sigma)^2 below sigma = 0.5 to bound memory).

    Returns:
        The epsilon of the composed mechanism, an upper bound (never an under-estimate).

    Raises:
        TypeError, ValueError: an argument of the wrong type or outside its range.
    """
    noise_multiplier = positive("noise_multiplier", noise_multiplier)
    sample_rate, steps, delta, accountant = _check(sample_rate, steps, delta, accountant)
    return _epsilon(noise_multiplier, sample_rate, steps, delta, accountant)


def noise_for_epsilon(
    target_epsilon: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: str = "rdp",
    *,
    rtol: float = 1e-3,
) -> float:
    """The smallest noise multiplier (to relative precision ``rtol``) whose epsilon is <= ``target_epsilon``.

    Brackets sigma by doubling / halving from 1, then bisects on [lo, hi] with eps(lo) > target >= eps(hi)
    until hi - lo <= rtol * hi, and returns hi, so ``epsilon(noise_for_epsilon(e, ...), ...) <= e`` always.

    Args:
        target_epsilon: the epsilon budget, > 0.
        sample_rate, steps, delta, accountant: as in ``epsilon``.
        rtol: relative precision of the returned sigma, in (0, 1).

    Returns:
        sigma, the noise multiplier to use.

    Raises:
        TypeError, ValueError: an argument of the wrong type or outside its range, or a target that no
            sigma in [1e-3, 1e4] meets, or that even sigma = 1e-3 meets (delta >= the chance an example is
            sampled makes the budget vacuous).
    """
    target_epsilon = positive("target_epsilon", target_epsilon)
    sample_rate, steps, delta, accountant = _check(sample_rate, steps, delta, accountant)
    rtol = positive("rtol", rtol)
    if rtol >= 1:
        raise ValueError(f"rtol must lie in (0, 1), got {rtol!r}")

    def eps_of(sigma: float) -> float:
        return _epsilon(sigma, sample_rate, steps, delta, accountant)

    lo, hi = 1.0, 1.0
    if eps_of(1.0) > target_epsilon:
        while eps_of(hi) > target_epsilon:
            lo, hi = hi, hi * 2
            if hi > _SIGMA_CEILING:
                raise ValueError(
                    f"target_epsilon={target_epsilon!r} needs noise_multiplier > {_SIGMA_CEILING:g} at "
                    f"sample_rate={sample_rate!r}, steps={steps!r}, delta={delta!r}; raise the budget or "
                    "lower steps / sample_rate"
                )
    else:
        while eps_of(lo) <= target_epsilon:
            lo, hi = lo / 2, lo
            if lo < _SIGMA_FLOOR:
                raise ValueError(
                    f"target_epsilon={target_epsilon!r} is met even at noise_multiplier={_SIGMA_FLOOR:g} "
                    f"(sample_rate={sample_rate!r}, steps={steps!r}, delta={delta!r}); the budget is "
                    "vacuous, check that delta is well below sample_rate"
                )
    while hi - lo > rtol * hi:
        mid = math.sqrt(lo * hi)
        if eps_of(mid) <= target_epsilon:
            hi = mid
        else:
            lo = mid
    return hi
