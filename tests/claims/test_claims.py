"""Claim checks: the ClaimResult contract, run_claim, and every registered claim check run for real.

Every check runs at seed 0 and must return a ClaimResult for its method; a method its claim record verifies
on the current sources must pass (CI's regression guard). Checks whose module
sets ``SLOW = True`` run under the ``slow`` marker.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from rich.console import Console

from gradinfo.claims import ClaimResult, claim_digest, run_claim
from gradinfo.core.registry import get, isolated_registry, plan, register
from gradinfo.methods import all_methods

CRITERION = "gap >= 3 dB"


def fake_method(x: float) -> float:
    """A stand-in method."""
    return x


def check_pass(seed: int = 0) -> ClaimResult:
    return ClaimResult("fake", CRITERION, True, {"gap_db": 4.25, "runs": 3}, seed=seed, seconds=1e6)


def check_wrong_type(seed: int = 0) -> dict:
    return {"passed": True}


def check_wrong_seed(seed: int = 0) -> ClaimResult:
    return ClaimResult("fake", CRITERION, True, {}, seed=seed + 1)


def _register_fake(check: str) -> None:
    register("fake", family="optim", paper=25, summary="fake", claim=f"{__name__}:{check}")(fake_method)


def test_claim_result_converts_figures_to_float() -> None:
    result = ClaimResult("m", CRITERION, False, {"a": 1, "b": np.float32(0.5), "c": 2.0})
    assert result.figures == {"a": 1.0, "b": 0.5, "c": 2.0}
    assert all(type(v) is float for v in result.figures.values())


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"passed": torch.tensor(True)}, TypeError, "bool"),
        ({"passed": np.bool_(True)}, TypeError, "bool"),
        ({"figures": {"a": torch.tensor(1.0)}}, TypeError, "figure 'a'"),
        ({"figures": {"a": True}}, TypeError, "figure 'a'"),
        ({"figures": {1: 1.0}}, TypeError, "names must be str"),
        ({"seconds": -1.0}, ValueError, "seconds"),
    ],
)
def test_claim_result_rejects_bad_fields(kwargs: dict, error: type, fragment: str) -> None:
    fields = {"method": "m", "claim": CRITERION, "passed": True} | kwargs
    with pytest.raises(error, match=fragment):
        ClaimResult(**fields)


def test_summary_and_rich_rendering_show_verdict_criterion_and_figures() -> None:
    result = ClaimResult("m", CRITERION, False, {"gap_db": 1.5}, seed=3, seconds=2.0)
    assert result.summary() == f"m: FAIL ({CRITERION}); seed 3, 2.0 s\n  gap_db = 1.5"
    console = Console(record=True, width=100)
    console.print(result)
    text = console.export_text()
    for fragment in ("FAIL", CRITERION, "gap_db", "1.5", "seed 3"):
        assert fragment in text


def test_run_claim_passes_the_seed_and_times_the_check() -> None:
    all_methods()
    with isolated_registry():
        _register_fake("check_pass")
        result = run_claim("fake", seed=7)
    assert result.seed == 7 and result.passed and result.figures == {"gap_db": 4.25, "runs": 3.0}
    assert result.seconds != 1e6  # replaced by the measured time


@pytest.mark.parametrize(
    ("check", "error"), [("check_wrong_type", TypeError), ("check_wrong_seed", ValueError)]
)
def test_run_claim_rejects_malformed_results(check: str, error: type) -> None:
    all_methods()
    with isolated_registry():
        _register_fake(check)
        with pytest.raises(error, match="'fake'"):
            run_claim("fake")


def test_run_claim_user_errors() -> None:
    all_methods()
    with isolated_registry():
        plan("fake_planned", family="optim", paper=25, summary="a planned method")
        with pytest.raises(KeyError, match="no method named"):
            run_claim("no_such_method")
        with pytest.raises(LookupError, match="no claim check"):
            run_claim("fake_planned")
        with pytest.raises(ValueError, match="seed"):
            run_claim("fake_planned", seed=-1)


# --- every registered claim check -----------------------------------------------------------------


def _claim_params() -> list:
    params = []
    for m in all_methods():
        if m.claim is None:
            continue
        try:
            slow = bool(getattr(importlib.import_module(m.claim.partition(":")[0]), "SLOW", False))
        except Exception:  # the test itself then fails with the import error
            slow = False
        params.append(pytest.param(m.name, marks=[pytest.mark.slow] if slow else [], id=m.name))
    return params or [pytest.param(None, id="none-registered")]


@pytest.mark.parametrize("name", _claim_params())
def test_claim_check(name: str | None) -> None:
    if name is None:  # no method has a claim check yet
        assert all(m.claim is None for m in all_methods())
        return
    result = run_claim(name)
    assert result.method == name
    method = get(name)
    record = method.record
    if method.status == "verified" and record is not None and record.digest == claim_digest(method):
        assert result.passed, f"{name} is verified by its record but fails at seed 0:\n{result.summary()}"
