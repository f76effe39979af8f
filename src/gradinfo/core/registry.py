"""The method registry: one entry per method from the 51 papers gradinfo implements.

An entry names the method, its family, its paper (number, title, year from ``core.papers``), the
mechanism in one line, where its callable and its claim check live, and an honest status:

- ``planned``: registered so the scope is visible; no code yet.
- ``implemented``: the callable exists and is unit-tested against a reference.
- ``verified``: implemented, and its claim check passes (the test suite runs it and fails otherwise).

Callables and claim checks are stored as ``"module:attribute"`` strings and imported on demand, so
listing the registry never imports heavy optional dependencies.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from gradinfo.core.papers import PAPERS

Status = Literal["planned", "implemented", "verified"]
STATUSES: tuple[str, ...] = ("planned", "implemented", "verified")
FAMILIES: tuple[str, ...] = (
    "capture",
    "transform",
    "optim",
    "privacy",
    "compress",
    "select",
    "explain",
    "adversarial",
    "train",
    "generate",
)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Method:
    """One registered method. ``target`` and ``claim`` are ``"module:attribute"`` strings or None."""

    name: str
    family: str
    paper: int
    summary: str
    status: Status
    target: str | None = None
    claim: str | None = None

    @property
    def title(self) -> str:
        return PAPERS[self.paper].title

    @property
    def year(self) -> int:
        return PAPERS[self.paper].year

    @property
    def module(self) -> str | None:
        return self.target.split(":")[0] if self.target else None

    def load(self) -> Callable[..., Any]:
        """Import and return the method's callable."""
        if self.target is None:
            raise LookupError(f"method {self.name!r} is planned and has no implementation yet")
        return _resolve(self.target)

    def load_claim(self) -> Callable[..., Any]:
        """Import and return the claim check, a function ``check(seed: int = 0) -> ClaimResult``."""
        if self.claim is None:
            raise LookupError(f"method {self.name!r} has no claim check yet (status: {self.status})")
        return _resolve(self.claim)

    def as_row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "paper": self.paper,
            "title": self.title,
            "year": self.year,
            "summary": self.summary,
            "status": self.status,
            "module": self.module,
            "claim": self.claim,
        }


_REGISTRY: dict[str, Method] = {}


def _resolve(path: str) -> Callable[..., Any]:
    module, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _add(method: Method) -> None:
    problems = []
    if not method.name.isidentifier():
        problems.append(f"name {method.name!r} is not a Python identifier")
    if method.family not in FAMILIES:
        problems.append(f"family {method.family!r} is not one of {FAMILIES}")
    if method.paper not in PAPERS:
        problems.append(f"paper {method.paper!r} is not a paper number 1..{len(PAPERS)}")
    if method.status not in STATUSES:
        problems.append(f"status {method.status!r} is not one of {STATUSES}")
    if method.status == "verified" and method.claim is None:
        problems.append("status 'verified' needs a claim check")
    if method.status != "planned" and method.target is None:
        problems.append(f"status {method.status!r} needs a callable")
    if not method.summary.strip():
        problems.append("summary is empty")
    if method.name in _REGISTRY and _REGISTRY[method.name] != method:
        problems.append(f"name {method.name!r} is already registered")
    if problems:
        raise ValueError(f"cannot register method {method.name!r}: " + "; ".join(problems))
    _REGISTRY[method.name] = method


def register(
    name: str,
    *,
    family: str,
    paper: int,
    summary: str,
    claim: str | None = None,
    status: Status = "implemented",
) -> Callable[[F], F]:
    """Decorator registering the decorated function as the implementation of a paper's method.

    Args:
        name: the paper's short name for the method (``dlg``, ``diffgrad``); a Python identifier.
        family: one of ``FAMILIES``.
        paper: the paper's number in ``shared/papers`` (1..51).
        summary: the mechanism in one line.
        claim: ``"module:function"`` of the claim check, or None.
        status: ``implemented`` or ``verified`` (``verified`` needs ``claim``).
    """

    def decorate(fn: F) -> F:
        _add(Method(name, family, paper, summary, status, f"{fn.__module__}:{fn.__qualname__}", claim))
        return fn

    return decorate


def plan(name: str, *, family: str, paper: int, summary: str) -> None:
    """Register a method that is in scope but not implemented yet."""
    _add(Method(name, family, paper, summary, "planned"))


def registered() -> list[Method]:
    """Every method registered so far, ordered by paper number then name."""
    return sorted(_REGISTRY.values(), key=lambda m: (m.paper, m.name))


def get(name: str) -> Method:
    """The method called ``name``; a ``KeyError`` lists the valid names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no method named {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None
