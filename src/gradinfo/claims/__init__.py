"""Claim checks: one small seeded experiment per method showing its paper's qualitative claim on CPU.

Convention: ``gradinfo/claims/<method>.py`` defines ``check(seed: int = 0) -> ClaimResult`` and is
named in the method's registry entry (``claim="gradinfo.claims.<method>:check"``). A check that takes
more than ~20 s also sets ``SLOW = True`` at module level (the test suite then marks it ``slow``; CI
still runs it). Users run a check with ``gradinfo reproduce <method>``; :func:`run_claim` is the
same from Python.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field, replace

from rich.console import Group
from rich.table import Table
from rich.text import Text

from gradinfo.core.registry import get
from gradinfo.core.validate import positive_int
from gradinfo.methods import all_methods

__all__ = ["ClaimResult", "run_claim"]


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
