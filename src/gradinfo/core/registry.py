"""The method registry: one entry per method from the 51 papers gradinfo implements.

An entry names the method, its family, its paper (number, title, year from ``core.papers``), the
mechanism in one line, where its callable, its claim check and its conformance example live. Its status
is derived, never set by hand:

- ``planned``: registered with :func:`plan` so the scope is visible; no code yet.
- ``implemented``: the callable exists and is unit-tested against a reference; its claim check fails, or has
  not been recorded at enough seeds.
- ``component``: registered with ``missing=...``: the paper's full claim is out of reach offline on CPU; what
  is built is named and checked, and ``missing`` says what is not.
- ``verified``: implemented, and the committed claim record (:mod:`gradinfo.core.record`) holds at least
  three seeds of its claim check, all passing.

Callables, claim checks and conformance examples are stored as ``"module:attribute"`` strings and
imported on demand, so listing the registry never imports heavy optional dependencies.

Registering a method (in the method's own module, inside the family package ``gradinfo.<family>``,
whose ``__init__`` imports it; then delete the method's ``plan(...)`` row in ``gradinfo.methods``)::

    @register("diffgrad", family="optim", paper=25, summary="Adam scaled by sigmoid(|g_t - g_{t-1}|)",
              claim="gradinfo.claims.diffgrad:check", example="gradinfo.optim.diffgrad:CONFORMANCE")
    def diffgrad(params, lr=1e-3, ...): ...

``CONFORMANCE`` is a :class:`Conformance`: one seeded call (run twice with the same seed, the results
must be equal) and calls with bad input (each must raise ``ValueError`` or ``TypeError``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from gradinfo.core.papers import PAPERS
from gradinfo.core.record import Record, cached_records

Stage = Literal["planned", "implemented", "component"]
"""What is built: nothing yet, the method, or a component of it (the paper's full claim out of reach)."""
STAGES: tuple[str, ...] = ("planned", "implemented", "component")
Status = Literal["planned", "implemented", "component", "verified"]
STATUSES: tuple[str, ...] = ("planned", "implemented", "component", "verified")
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
class Conformance:
    """How the conformance test (``tests/test_methods.py``) exercises an implemented method.

    Attributes:
        call: ``call(seed)`` runs the method on a tiny seeded input and returns its result; two calls
            with the same seed must return equal results (tensors compared exactly).
        bad_calls: calls with invalid arguments; each must raise ``ValueError`` or ``TypeError``
            before any long work.
    """

    call: Callable[[int], Any]
    bad_calls: tuple[Callable[[], Any], ...]


@dataclass(frozen=True)
class Method:
    """One registered method. ``target``, ``claim`` and ``example`` are ``"module:attribute"`` or None;
    ``missing`` (components only) says what of the paper's claim is not built or not reachable here."""

    name: str
    family: str
    paper: int
    summary: str
    stage: Stage
    target: str | None = None
    claim: str | None = None
    example: str | None = None
    missing: str | None = None

    @property
    def record(self) -> Record | None:
        """The committed claim record of this method, or None when it has none."""
        return cached_records().get(self.name) if self.claim is not None else None

    @property
    def status(self) -> Status:
        """``planned``, ``component`` as registered; else ``verified`` when the claim record verifies it."""
        if self.stage != "implemented":
            return self.stage
        record = self.record
        return "verified" if record is not None and record.verified else "implemented"

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

    def load_example(self) -> Conformance:
        """Import and return the method's :class:`Conformance` example."""
        if self.example is None:
            raise LookupError(f"method {self.name!r} has no conformance example (status: {self.status})")
        example = _resolve(self.example)
        if not isinstance(example, Conformance):
            raise TypeError(
                f"{self.example} must be a gradinfo.core.registry.Conformance, got {type(example).__name__}"
            )
        return example

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
            "missing": self.missing,
            "record": None if self.record is None else self.record.as_row(),
        }


_REGISTRY: dict[str, Method] = {}


def _resolve(path: str) -> Any:
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
    if method.stage not in STAGES:
        problems.append(f"status {method.stage!r} is not one of {STAGES}")
    if method.stage != "planned" and method.target is None:
        problems.append(f"status {method.stage!r} needs a callable")
    if (method.stage == "component") != bool(method.missing and method.missing.strip()):
        problems.append("a component, and only a component, names what is missing (missing='...')")
    if not method.summary.strip():
        problems.append("summary is empty")
    if "\n" in method.summary:
        problems.append("summary must be one line")
    if method.name in _REGISTRY and _REGISTRY[method.name] != method:
        old = _REGISTRY[method.name]
        hint = " (delete its plan(...) row in gradinfo/methods.py)" if old.stage == "planned" else ""
        problems.append(f"name {method.name!r} is already registered{hint}")
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
    example: str | None = None,
    missing: str | None = None,
) -> Callable[[F], F]:
    """Decorator registering the decorated function as the implementation of a paper's method.

    Args:
        name: the paper's short name for the method (``dlg``, ``diffgrad``); a Python identifier.
        family: one of ``FAMILIES``.
        paper: the paper's number in ``shared/papers`` (1..51).
        summary: the mechanism in one line.
        claim: ``"module:function"`` of the claim check (``gradinfo.claims.<name>:check``), or None.
        example: ``"module:attribute"`` of the method's :class:`Conformance`, or None (the
            conformance test then fails for this method).
        missing: for a ``component``: what of the paper's claim is out of reach offline on CPU, in one
            sentence (shown in the README's table). The status is otherwise derived from the claim record.

    Raises:
        ValueError: an invalid field, or ``name`` already registered differently.
    """

    def decorate(fn: F) -> F:
        target = f"{fn.__module__}:{fn.__qualname__}"
        stage = "component" if missing is not None else "implemented"
        _add(Method(name, family, paper, summary, stage, target, claim, example, missing))
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


@contextmanager
def isolated_registry(*, empty: bool = False) -> Iterator[None]:
    """Within the block, registrations go to a scratch copy of the registry; the original comes back after.

    For tests that register fake methods. Populate the registry first (``gradinfo.methods.all_methods()``):
    modules first imported inside the block register into the scratch copy only, and Python will not
    import them again.

    Args:
        empty: start the block with no methods registered instead of a copy of the current ones.
    """
    saved = dict(_REGISTRY)
    if empty:
        _REGISTRY.clear()
    try:
        yield
    finally:
        _REGISTRY.clear()
        _REGISTRY.update(saved)
