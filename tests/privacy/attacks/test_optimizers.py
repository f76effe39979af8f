"""The descent values: schedules cut at the steps they name; bad values raise when built."""

from __future__ import annotations

import pytest
import torch

from gradinfo.privacy.attacks.optimizers import LBFGS, Adam, Constant, MultiStep, Plateau


def _cuts(schedule: MultiStep | Constant, iterations: int) -> list[int]:
    return [it for it in range(iterations) if schedule(it, iterations, torch.zeros(1))]


def test_multistep_cuts_after_three_eighths_five_eighths_and_seven_eighths() -> None:
    assert _cuts(MultiStep(), 8) == [2, 4, 6]  # cut after steps 3, 5 and 7 of 8 (0-based 2, 4, 6)
    assert _cuts(MultiStep(), 1000) == [374, 624, 874]
    assert _cuts(MultiStep(), 2) == [0]  # int(0.75) = 0 is never reached; 1.25 and 1.75 cut once
    assert _cuts(MultiStep(fractions=(0.5,)), 10) == [4]
    assert _cuts(Constant(), 50) == []


def test_plateau_cuts_the_restarts_that_stalled_for_patience_steps() -> None:
    stalled = torch.tensor([0, 2, 3, 9])
    assert Plateau(3)(0, 10, stalled).tolist() == [False, False, True, True]
    assert Plateau(1)(5, 10, torch.tensor([0, 1])).tolist() == [False, True]
    assert Plateau.per_restart and not MultiStep.per_restart and not Constant.per_restart
    assert (MultiStep().gamma, Plateau().gamma, Constant.gamma) == (0.1, 0.1, 1.0)
    assert Plateau().patience == 800


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: Adam(lr=0.0), ValueError, r"lr must be a finite number > 0, got 0\.0"),
        (lambda: Adam(signed=1), TypeError, r"signed must be a bool, got int 1"),
        (lambda: Adam(schedule="plateau"), TypeError, r"schedule must be Constant\(\), MultiStep"),
        (lambda: LBFGS(lr=-1.0), ValueError, r"lr must be a finite number > 0, got -1\.0"),
        (lambda: LBFGS(signed=True), TypeError, r"signed"),  # L-BFGS takes the plain gradient only
        (lambda: Plateau(0), ValueError, r"patience must be >= 1, got 0"),
        (lambda: Plateau(2.5), TypeError, r"patience must be an int"),
        (lambda: Plateau(gamma=1.5), ValueError, r"gamma must lie in \(0, 1\], got 1\.5"),
        (lambda: MultiStep(fractions=(0.5, 0.0)), ValueError, r"fractions must lie in \(0, 1\]"),
        (lambda: MultiStep(gamma=0.0), ValueError, r"gamma must lie in \(0, 1\], got 0\.0"),
    ],
)
def test_bad_values_raise_when_built(build: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        build()  # type: ignore[operator]
