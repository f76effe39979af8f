"""The audit's cells: defense x batch size x attack, plus one utility cell per defense.

A cell is the unit of work that is written to ``results.jsonl`` when it finishes and skipped on resume.
Some pairs do not apply and get no cell (the report lists them with the reason):

- ``sketched_inversion`` attacks sketched updates only (``sketch-d10``, ``sketch-dp``);
- ``label_recovery`` needs the classifier's gradient, which a HyperFL client never shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gradinfo.privacy.audit.config import AuditConfig

SKETCHED: tuple[str, ...] = ("sketch-d10", "sketch-dp")


@dataclass(frozen=True)
class Cell:
    """One unit of work.

    Attributes:
        kind: ``"attack"`` (one attack on one victim batch's shared update) or ``"utility"`` (one
            federated training run of one defense).
        defense: the defense's name.
        attack: the attack's name (None for utility cells).
        batch_size: the victim batch size B (None for utility cells).
    """

    kind: Literal["attack", "utility"]
    defense: str
    attack: str | None = None
    batch_size: int | None = None

    @property
    def key(self) -> str:
        """A unique, stable, file-name-safe name, e.g. ``attack.none.B4.inverting_gradients``."""
        if self.kind == "utility":
            return f"utility.{self.defense}"
        return f"attack.{self.defense}.B{self.batch_size}.{self.attack}"


def not_applicable(attack: str, defense: str) -> str | None:
    """Why ``attack`` is not run against ``defense``, or None when it is."""
    if attack == "sketched_inversion" and defense not in SKETCHED:
        return "attacks sketched updates only"
    if attack == "label_recovery" and defense == "hyperfl":
        return "the classifier head is private under HyperFL: its gradient is never shared"
    return None


def cells(config: AuditConfig) -> list[Cell]:
    """Every cell of ``config``, attack cells first (by defense, batch size, attack), then utility cells."""
    out = [
        Cell("attack", d, a, b)
        for d in config.defenses
        for b in config.batch_sizes
        for a in config.attacks
        if not_applicable(a, d) is None
    ]
    return out + [Cell("utility", d) for d in config.defenses]


def skipped(config: AuditConfig) -> list[tuple[str, str, str]]:
    """``(attack, defense, reason)`` for every pair of ``config`` that gets no cell."""
    return [
        (a, d, reason)
        for d in config.defenses
        for a in config.attacks
        if (reason := not_applicable(a, d)) is not None
    ]
