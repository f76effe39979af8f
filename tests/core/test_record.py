"""The claim record: seeds written as they finish, verdicts, and digests that follow the sources."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gradinfo.core.record import MIN_SEEDS, SeedRun, add_seed, load_records, source_digest

META = {"criterion": "gap >= 3 dB", "paper_effect": "+5 dB (Table 2)", "digest": "aaaa"}


def test_seeds_accumulate_and_the_verdict_needs_three_passing(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    for seed in range(MIN_SEEDS - 1):
        record = add_seed("m", seed, SeedRun(True, {"gap": 4.0 + seed}, 1.0), path=path, **META)
        assert record.verdict == "incomplete" and not record.verified
    record = add_seed("m", 7, SeedRun(True, {"gap": 3.5}, 2.0), path=path, **META)
    assert record.verdict == "verified" and sorted(record.seeds) == [0, 1, 7]
    assert load_records(path)["m"] == record
    assert record.as_row() == {
        "seeds": [0, 1, 7], "passed": [True, True, True], "criterion": "gap >= 3 dB",
        "paper_effect": "+5 dB (Table 2)", "verdict": "verified",
    }  # fmt: skip
    failing = add_seed("m", 8, SeedRun(False, {"gap": 1.0}, 2.0), path=path, **META)
    assert failing.verdict == "failing" and not failing.verified


def test_a_new_digest_or_criterion_starts_a_fresh_record(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    add_seed("m", 0, SeedRun(True, {}, 1.0), path=path, **META)
    add_seed("other", 0, SeedRun(True, {}, 1.0), path=path, **META)
    fresh = add_seed("m", 1, SeedRun(True, {}, 1.0), path=path, **{**META, "digest": "bbbb"})
    assert sorted(fresh.seeds) == [1]
    again = add_seed(
        "m", 2, SeedRun(True, {}, 1.0), path=path, **{**META, "digest": "bbbb", "criterion": "x"}
    )
    assert sorted(again.seeds) == [2]
    assert sorted(load_records(path)["other"].seeds) == [0]  # other methods untouched
    assert json.loads(path.read_text())["m"]["seeds"]["2"]["passed"] is True


def test_a_corrupt_record_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    path.write_text('{"m": {"criterion": 1}}')
    with pytest.raises(ValueError, match="is not a claim record"):
        load_records(path)
    assert load_records(tmp_path / "missing.json") == {}


@pytest.fixture
def modules(tmp_path: Path) -> Iterator[Path]:
    package = tmp_path / "digest_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "method.py").write_text("def f():\n    return 1\n")
    (package / "claim.py").write_text("from digest_pkg import method\n")
    sys.path.insert(0, str(tmp_path))
    yield package
    sys.path.remove(str(tmp_path))
    for name in [n for n in sys.modules if n.startswith("digest_pkg")]:
        del sys.modules[name]


def test_the_digest_changes_with_either_source(modules: Path) -> None:
    first = source_digest("digest_pkg.method", "digest_pkg.claim")
    assert source_digest("digest_pkg.claim", "digest_pkg.method") == first  # order does not matter
    (modules / "method.py").write_text("def f():\n    return 2\n")
    second = source_digest("digest_pkg.method", "digest_pkg.claim")
    (modules / "claim.py").write_text("from digest_pkg import method  # changed\n")
    third = source_digest("digest_pkg.method", "digest_pkg.claim")
    assert len({first, second, third}) == 3


def test_the_digest_follows_the_claims_private_helpers() -> None:
    # the mfac claim imports its set-up from gradinfo.claims._digits: naming the helper adds nothing
    assert source_digest("gradinfo.claims.mfac") == source_digest(
        "gradinfo.claims.mfac", "gradinfo.claims._digits"
    )
    assert source_digest("gradinfo.claims.mfac") != source_digest("gradinfo.claims.diffgrad")
    with pytest.raises(ModuleNotFoundError, match="no Python source"):
        source_digest("sys")
