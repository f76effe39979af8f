"""The claim record: every recorded seed of every method's claim check, and the verdict it gives.

``gradinfo/claims/record.json`` (committed, written by ``gradinfo reproduce``) maps a method's name to what
its claim check measured::

    {"dlg": {"criterion": "...", "paper_effect": "...", "digest": "3f2a...",
             "seeds": {"0": {"passed": true, "figures": {"psnr_db": 41.2}, "seconds": 12.5}, ...}}}

A method is ``verified`` when its record holds at least :data:`MIN_SEEDS` seeds and the criterion held at
every one of them; its status comes from here, never from a flag set by hand. ``digest`` fingerprints the
method's and the claim's source files (:func:`source_digest`): a change to either sends the method back to be
re-run (``tests/claims/test_record.py`` fails while a verified method's digest is stale, and
``gradinfo reproduce`` starts a fresh record for it). Each seed is written as it finishes, atomically, so an
interrupted multi-seed run keeps every finished seed.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECORD = Path(__file__).resolve().parent.parent / "claims" / "record.json"
"""The committed record's path."""
MIN_SEEDS = 3
"""Seeds a record needs, all passing, for ``verified``."""


@dataclass(frozen=True)
class SeedRun:
    """One seed of a claim check: whether the criterion held, the figures measured, the wall time."""

    passed: bool
    figures: dict[str, float]
    seconds: float


@dataclass(frozen=True)
class Record:
    """What the claim check of one method measured over its recorded seeds.

    Attributes:
        method: the method's registry name.
        criterion: the pass criterion in words, as the check states it.
        paper_effect: the paper's reported effect the margin was fixed from (number and table).
        digest: :func:`source_digest` of the sources the seeds ran with.
        seeds: the runs by seed.
    """

    method: str
    criterion: str
    paper_effect: str
    digest: str
    seeds: dict[int, SeedRun] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        """At least :data:`MIN_SEEDS` seeds, the criterion held at every one."""
        return len(self.seeds) >= MIN_SEEDS and all(run.passed for run in self.seeds.values())

    @property
    def verdict(self) -> str:
        """``verified``, ``failing`` (some seed failed) or ``incomplete`` (all passed, too few seeds)."""
        if any(not run.passed for run in self.seeds.values()):
            return "failing"
        return "verified" if self.verified else "incomplete"

    def as_row(self) -> dict[str, Any]:
        """The record as ``gradinfo methods --json`` shows it."""
        order = sorted(self.seeds)
        return {
            "seeds": order,
            "passed": [self.seeds[s].passed for s in order],
            "criterion": self.criterion,
            "paper_effect": self.paper_effect,
            "verdict": self.verdict,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "criterion": self.criterion,
            "paper_effect": self.paper_effect,
            "digest": self.digest,
            "seeds": {
                str(s): {"passed": r.passed, "figures": r.figures, "seconds": round(r.seconds, 1)}
                for s, r in sorted(self.seeds.items())
            },
        }


def load_records(path: Path = RECORD) -> dict[str, Record]:
    """Every method's record in ``path`` ({} when the file does not exist).

    Raises:
        ValueError: the file is not a record (the message names the file and the entry).
    """
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {
            name: Record(
                name,
                entry["criterion"],
                entry["paper_effect"],
                entry["digest"],
                {
                    int(seed): SeedRun(bool(run["passed"]), dict(run["figures"]), float(run["seconds"]))
                    for seed, run in entry["seeds"].items()
                },
            )
            for name, entry in raw.items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{str(path)!r} is not a claim record ({type(err).__name__}: {err})") from err


def cached_records(path: Path = RECORD) -> dict[str, Record]:
    """:func:`load_records`, read again only when the file changes (the registry asks it for every status)."""
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        stamp = None
    return _records_at(str(path), stamp)


@functools.lru_cache(maxsize=4)
def _records_at(path: str, stamp: int | None) -> dict[str, Record]:
    return load_records(Path(path))


def save_records(records: dict[str, Record], path: Path = RECORD) -> None:
    """Write ``records`` to ``path`` atomically (sorted by method, so diffs stay small)."""
    text = json.dumps({n: records[n].to_json() for n in sorted(records)}, indent=1, sort_keys=True) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def add_seed(
    method: str,
    seed: int,
    run: SeedRun,
    *,
    criterion: str,
    paper_effect: str,
    digest: str,
    path: Path = RECORD,
) -> Record:
    """Record one finished seed of ``method`` in ``path`` at once, and return the method's record.

    A record made from other sources (another digest) or with another criterion is replaced by a fresh one:
    its seeds measured something else.
    """
    records = load_records(path)
    old = records.get(method)
    keep = old is not None and old.digest == digest and old.criterion == criterion
    seeds = {**(old.seeds if keep else {}), seed: run}
    records[method] = Record(method, criterion, paper_effect, digest, seeds)
    save_records(records, path)
    return records[method]


def source_digest(*modules: str) -> str:
    """A short hash (16 hex digits of SHA-256) of the source text of ``modules`` and of the private
    ``gradinfo.claims._*`` helper modules they import.

    Args:
        *modules: dotted module names (the method's module, its claim check's module).

    Raises:
        ModuleNotFoundError: a module has no source file.
    """
    seen: dict[str, str] = {}
    pending = list(modules)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            raise ModuleNotFoundError(f"module {name!r} has no Python source file")
        text = Path(spec.origin).read_text(encoding="utf-8")
        seen[name] = text
        pending += _private_helpers(text)
    digest = hashlib.sha256()
    for name in sorted(seen):
        digest.update(f"{name}\n{seen[name]}\n".encode())
    return digest.hexdigest()[:16]


def _private_helpers(source: str) -> list[str]:
    """The ``gradinfo.claims._*`` modules ``source`` imports (shared claim set-ups)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gradinfo.claims._"):
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("gradinfo.claims._")]
    return found
