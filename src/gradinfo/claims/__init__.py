"""Claim checks: one small seeded experiment per method showing its paper's qualitative claim on CPU.

Convention: ``gradinfo/claims/<method>.py`` defines ``check(seed: int = 0) -> ClaimResult`` and is
named in the method's registry entry (``claim="gradinfo.claims.<method>:check"``). A check that takes
more than ~20 s also sets ``SLOW = True`` at module level (the test suite then marks it ``slow``; CI
still runs it). Users run a check with ``gradinfo reproduce <method>``; :func:`run_claim` is the
same from Python.
"""

from __future__ import annotations

import importlib
import math
import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text

from gradinfo.core.record import RECORD, Record, SeedRun, add_seed, load_records, source_digest
from gradinfo.core.registry import Method, get
from gradinfo.core.validate import positive_int
from gradinfo.methods import all_methods

__all__ = ["ClaimResult", "claim_digest", "paper_effect", "reproduce", "reproduce_all", "run_claim"]


@dataclass(frozen=True)
class ClaimResult:
    """What a claim check measured and whether the paper's claim held.

    Attributes:
        method: the registry name of the method checked.
        claim: the pass criterion in words, with its threshold (``"PSNR(DIA) - PSNR(IG) >= 3 dB"``).
        passed: whether the measured figures meet the criterion (a Python ``bool``).
        figures: the measured numbers by name (``{"psnr_gap_db": 4.1}``); values become floats.
        seed: the seed the experiment ran with.
        seconds: wall-clock time of the check (:func:`run_claim` fills it in).

    Raises:
        TypeError: ``passed`` is not a bool, a figure is not a real number, or a name is not a str.
        ValueError: ``seconds`` is negative or not finite.
    """

    method: str
    claim: str
    passed: bool
    figures: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.passed, bool):
            raise TypeError(
                f"passed must be a bool, got {type(self.passed).__name__} {self.passed!r}; "
                "wrap the comparison in bool(...)"
            )
        figures = {}
        for name, value in self.figures.items():
            if not isinstance(name, str):
                raise TypeError(f"figure names must be str, got {type(name).__name__} {name!r}")
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(
                    f"figure {name!r} must be a real number, got {type(value).__name__} {value!r}; "
                    "use float(...) or tensor.item()"
                )
            figures[name] = float(value)
        object.__setattr__(self, "figures", figures)
        if not (math.isfinite(self.seconds) and self.seconds >= 0):
            raise ValueError(f"seconds must be a finite number >= 0, got {self.seconds!r}")

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def summary(self) -> str:
        """The result as plain text: the verdict and criterion, then one line per figure."""
        lines = [f"{self.method}: {self.verdict} ({self.claim}); seed {self.seed}, {self.seconds:.1f} s"]
        lines += [f"  {name} = {value:.6g}" for name, value in self.figures.items()]
        return "\n".join(lines)

    def __rich__(self) -> Group:
        style = "bold green" if self.passed else "bold red"
        table = Table("figure", "value", box=None, pad_edge=False)
        for name, value in self.figures.items():
            table.add_row(name, f"{value:.6g}")
        head = Text.assemble((self.verdict, style), f"  {self.method}: {self.claim}")
        foot = Text(f"seed {self.seed}, {self.seconds:.1f} s", style="dim")
        return Group(head, table, foot)


def run_claim(name: str, seed: int = 0) -> ClaimResult:
    """Run the claim check of the method called ``name`` and return what it measured.

    Args:
        name: a registered method name (``gradinfo methods`` lists them).
        seed: the experiment's seed, an int >= 0.

    Returns:
        The check's :class:`ClaimResult` with ``seconds`` set to the check's wall-clock time.

    Raises:
        KeyError: no method called ``name``.
        LookupError: the method has no claim check yet.
        TypeError: ``seed`` is not an int, or the check returned something other than a ``ClaimResult``.
        ValueError: ``seed`` < 0, or the result names another method or seed.
    """
    positive_int("seed", seed, minimum=0)
    all_methods()
    check = get(name).load_claim()
    start = time.perf_counter()
    result = check(seed=seed)
    seconds = time.perf_counter() - start
    if not isinstance(result, ClaimResult):
        raise TypeError(f"claim check of {name!r} returned {type(result).__name__}, expected ClaimResult")
    if result.method != name or result.seed != seed:
        raise ValueError(
            f"claim check of {name!r} run with seed {seed} returned a result for method "
            f"{result.method!r} with seed {result.seed}"
        )
    return replace(result, seconds=seconds)


def claim_digest(method: Method) -> str:
    """:func:`~gradinfo.core.record.source_digest` of the method's module and its claim check's module."""
    if method.claim is None or method.module is None:
        raise LookupError(f"method {method.name!r} has no claim check yet (status: {method.status})")
    return source_digest(method.module, method.claim.partition(":")[0])


def paper_effect(method: Method) -> str:
    """The effect the paper reports, as its claim module's ``PAPER_EFFECT`` states it ("" if it does not)."""
    if method.claim is None:
        return ""
    module = importlib.import_module(method.claim.partition(":")[0])
    return str(getattr(module, "PAPER_EFFECT", ""))


def reproduce(
    name: str,
    seeds: Sequence[int],
    *,
    record: Path | None = RECORD,
    done: Callable[[ClaimResult], None] | None = None,
) -> Record:
    """Run the claim check of ``name`` at each of ``seeds``, writing each finished seed to ``record``.

    Args:
        name: a registered method with a claim check.
        seeds: the seeds to run, each an int >= 0.
        record: the record file each seed is added to as it finishes (None: nothing is written).
        done: called with each seed's result as it finishes (to print it).

    Returns:
        The method's record after these seeds (with ``record=None``: these seeds alone).

    Raises:
        KeyError, LookupError, TypeError, ValueError: as :func:`run_claim`, before any seed runs for a bad
            name or seed.
    """
    for seed in seeds:
        positive_int("seed", seed, minimum=0)
    all_methods()
    method = get(name)
    digest, effect = claim_digest(method), paper_effect(method)
    runs: dict[int, SeedRun] = {}
    criterion = ""
    for seed in seeds:
        result = run_claim(name, seed=seed)
        criterion = result.claim
        run = SeedRun(result.passed, result.figures, result.seconds)
        runs[seed] = run
        if record is not None:
            add_seed(name, seed, run, criterion=criterion, paper_effect=effect, digest=digest, path=record)
        if done is not None:
            done(result)
    if record is not None:
        return load_records(record)[name]
    return Record(name, criterion, effect, digest, runs)


def reproduce_all(
    seeds: Sequence[int],
    *,
    record: Path = RECORD,
    done: Callable[[ClaimResult], None] | None = None,
    skipped: Callable[[str], None] | None = None,
) -> dict[str, Record]:
    """Bring every method's record up to ``seeds``: resumable, it runs only the seeds a record lacks.

    A method whose record matches its sources' digest and criterion keeps its seeds, and only the missing ones
    run; a stale record is started afresh. Each finished seed is written at once, so an interrupted run loses
    at most the seed in progress.

    Args:
        seeds: the seeds every record should hold.
        record: the record file.
        done: called with each seed's result as it finishes.
        skipped: called with the name of each method whose record already holds every seed.

    Returns:
        The record of every method with a claim check.
    """
    for seed in seeds:
        positive_int("seed", seed, minimum=0)
    for method in all_methods():
        if method.claim is None:
            continue
        old = load_records(record).get(method.name)
        fresh = old is not None and old.digest == claim_digest(method)
        missing = [s for s in seeds if not (fresh and s in old.seeds)]
        if not missing:
            if skipped is not None:
                skipped(method.name)
            continue
        reproduce(method.name, missing, record=record, done=done)
    return {n: r for n, r in load_records(record).items() if n in {m.name for m in all_methods() if m.claim}}
