"""reproduce / reproduce_all: every seed written as it finishes, resumable, records follow the sources."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gradinfo.claims import ClaimResult, reproduce, reproduce_all
from gradinfo.core.record import load_records
from gradinfo.core.registry import isolated_registry, register
from gradinfo.methods import all_methods

PAPER_EFFECT = "+5 dB over the baseline (Table 2)"
CALLS: list[tuple[str, int]] = []


def fake_method(x: float) -> float:
    """A stand-in method."""
    return x


def check_even(seed: int = 0) -> ClaimResult:
    CALLS.append(("fake_even", seed))
    return ClaimResult("fake_even", "seed is even", seed % 2 == 0, {"seed": seed}, seed=seed)


def check_always(seed: int = 0) -> ClaimResult:
    CALLS.append(("fake_always", seed))
    return ClaimResult("fake_always", "always", True, {"seed": seed}, seed=seed)


@pytest.fixture
def fakes() -> Iterator[None]:
    all_methods()
    CALLS.clear()
    with isolated_registry(empty=True):
        for name in ("even", "always"):
            register(
                f"fake_{name}", family="optim", paper=25, summary="fake", claim=f"{__name__}:check_{name}"
            )(fake_method)
        yield


def test_reproduce_writes_each_seed_and_gives_the_verdict(fakes: None, tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    printed: list[int] = []
    record = reproduce("fake_even", [0, 1, 2], record=path, done=lambda r: printed.append(r.seed))
    assert printed == [0, 1, 2] and record.verdict == "failing"
    assert [record.seeds[s].passed for s in (0, 1, 2)] == [True, False, True]
    assert record.paper_effect == PAPER_EFFECT and record.criterion == "seed is even"
    assert load_records(path)["fake_even"] == record
    assert reproduce("fake_always", [0, 1, 2], record=path).verdict == "verified"
    alone = reproduce("fake_always", [5], record=None)
    assert sorted(alone.seeds) == [5] and sorted(load_records(path)["fake_always"].seeds) == [0, 1, 2]


def test_bad_seeds_are_refused_before_any_run(fakes: None, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seed must be >= 0"):
        reproduce("fake_even", [0, -1], record=tmp_path / "r.json")
    assert CALLS == [] and not (tmp_path / "r.json").exists()


def test_reproduce_all_runs_only_the_missing_seeds(fakes: None, tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    reproduce("fake_even", [0], record=path)
    CALLS.clear()
    skipped: list[str] = []
    records = reproduce_all([0, 1, 2], record=path, skipped=skipped.append)
    want = [("fake_always", 0), ("fake_always", 1), ("fake_always", 2), ("fake_even", 1), ("fake_even", 2)]
    assert want == CALLS  # fake_even's seed 0 is kept; methods in registry order (paper, name)
    assert sorted(records) == ["fake_always", "fake_even"] and skipped == []
    CALLS.clear()
    reproduce_all([0, 1, 2], record=path, skipped=skipped.append)
    assert CALLS == [] and skipped == ["fake_always", "fake_even"]


def test_a_stale_record_is_run_again_from_scratch(fakes: None, tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    reproduce_all([0, 1], record=path)
    saved = json.loads(path.read_text())
    saved["fake_even"]["digest"] = "0000000000000000"  # as if its sources had changed since
    path.write_text(json.dumps(saved))
    CALLS.clear()
    reproduce_all([0, 1], record=path)
    assert CALLS == [("fake_even", 0), ("fake_even", 1)]
