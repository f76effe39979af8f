"""The committed claim record agrees with the code: statuses from it, no verified method on stale sources."""

from __future__ import annotations

from gradinfo.claims import claim_digest
from gradinfo.core.record import RECORD, load_records
from gradinfo.methods import all_methods

METHODS = {m.name: m for m in all_methods()}


def test_every_record_belongs_to_a_method_with_a_claim_check() -> None:
    records = load_records(RECORD)
    assert sorted(n for n in records if n not in METHODS or METHODS[n].claim is None) == []


def test_a_verified_method_was_recorded_on_its_current_sources() -> None:
    stale = [
        f"{name} (recorded {m.record.digest}, sources now {claim_digest(m)}): "
        f"rerun `gradinfo reproduce {name} --seeds {','.join(map(str, sorted(m.record.seeds)))} --record`"
        for name, m in METHODS.items()
        if m.status == "verified" and m.record is not None and m.record.digest != claim_digest(m)
    ]
    assert stale == []


def test_statuses_follow_the_record() -> None:
    for name, m in METHODS.items():
        if m.stage == "implemented":
            assert (m.status == "verified") == (m.record is not None and m.record.verified), name
