"""Conformance: one table-driven walk over every registered method.

The catalogue (every paper 1..51 covered, unique snake_case names, one-line mechanisms) and, for every
entry that is not ``planned``:

- its callable imports and its docstring cites the paper's title (whitespace and case aside);
- it names a conformance example, ``register(..., example="module:ATTRIBUTE")``, pointing at a
  :class:`gradinfo.core.registry.Conformance`: ``call(seed)`` runs the method on a tiny seeded input
  (two calls with the same seed must give equal results: tensors exactly, recursively through dicts,
  sequences and dataclasses), and ``bad_calls`` each must raise ``ValueError`` or ``TypeError``;
- its claim check, when it names one, imports (``tests/claims/test_claims.py`` runs it).

:func:`conformance_problems` returns every problem of one entry, so a failure lists them all. Its own
tests register fake methods into a scratch registry, one per kind of defect.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import pytest
import torch

from gradinfo.core.papers import PAPERS
from gradinfo.core.registry import FAMILIES, Conformance, Method, get, isolated_registry, register
from gradinfo.methods import all_methods

TITLE = PAPERS[25].title


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def _same(a: Any, b: Any) -> bool:
    """Exact equality through tensors, containers and dataclasses (NaN equals NaN)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        try:
            torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
        except (AssertionError, TypeError):
            return False
        return True
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(
            _same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def conformance_problems(method: Method) -> list[str]:
    """Every way ``method`` breaks the conformance rules in the module docstring; [] if none."""
    problems: list[str] = []
    try:
        fn = method.load()
    except Exception as error:
        return [f"callable {method.target} does not import: {error!r}"]
    if _normal(method.title) not in _normal(fn.__doc__ or ""):
        problems.append(f"the docstring of {method.target} does not cite the paper title {method.title!r}")
    if method.claim is not None:
        try:
            method.load_claim()
        except Exception as error:
            problems.append(f"claim check {method.claim} does not import: {error!r}")
    try:
        example = method.load_example()
    except Exception as error:
        return [*problems, f"no conformance example: {error}"]
    if not _same(example.call(0), example.call(0)):
        problems.append("two calls with seed 0 gave different results")
    if not example.bad_calls:
        problems.append("the example has no bad_calls")
    for i, bad in enumerate(example.bad_calls):
        try:
            bad()
        except (ValueError, TypeError):
            continue
        except Exception as error:
            problems.append(f"bad_calls[{i}] raised {type(error).__name__}, expected ValueError or TypeError")
        else:
            problems.append(f"bad_calls[{i}] raised nothing, expected ValueError or TypeError")
    return problems


METHODS = all_methods()
BUILT = [m for m in METHODS if m.status != "planned"]


def test_every_paper_has_a_method() -> None:
    assert sorted({m.paper for m in METHODS}) == sorted(PAPERS) == list(range(1, 52))


def test_names_are_unique_snake_case() -> None:
    names = [m.name for m in METHODS]
    assert len(names) == len(set(names))
    bad = [n for n in names if not re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", n)]
    assert bad == []


def test_summaries_are_one_short_line_and_families_known() -> None:
    for m in METHODS:
        assert m.summary.strip() == m.summary and m.summary, m.name
        assert "\n" not in m.summary and len(m.summary) <= 110, m.name
        assert m.family in FAMILIES, m.name


def test_planned_entries_have_no_code_attached() -> None:
    for m in METHODS:
        if m.status == "planned":
            assert (m.target, m.claim, m.example) == (None, None, None), m.name


@pytest.mark.parametrize("name", [m.name for m in BUILT] or [None])
def test_method_conforms(name: str | None) -> None:
    if name is None:  # nothing built yet: the catalogue is all plans
        assert all(m.status == "planned" for m in METHODS)
        return
    assert conformance_problems(get(name)) == []


# --- the machinery itself, on fakes -------------------------------------------------------------


def fake_scale(x: torch.Tensor, factor: float, seed: int = 0) -> dict[str, Any]:
    """Scale ``x`` by ``factor`` and add seeded noise.

    References:
        diffGrad: An Optimization Method for Convolutional
        Neural Networks (2019).
    """
    if not isinstance(factor, (int, float)):
        raise TypeError(f"factor must be a number, got {type(factor).__name__}")
    if factor <= 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))  # [*x.shape]
    return {"out": factor * x + noise, "stats": (float("nan"), [1, 2])}


def fake_undocumented(x: torch.Tensor) -> torch.Tensor:
    return x


def fake_global_rng(x: torch.Tensor) -> torch.Tensor:
    """Uses the global RNG. diffGrad: An Optimization Method for Convolutional Neural Networks."""
    return x + torch.randn(x.shape)


def fake_lenient(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Accepts anything. diffGrad: An Optimization Method for Convolutional Neural Networks."""
    return x * factor


X = torch.arange(4.0)
GOOD = Conformance(
    call=lambda seed: fake_scale(X, 2.0, seed=seed),
    bad_calls=(lambda: fake_scale(X, -1.0), lambda: fake_scale(X, "2")),
)
UNSEEDED = Conformance(call=lambda seed: fake_global_rng(X), bad_calls=(lambda: fake_scale(X, 0.0),))
LENIENT = Conformance(
    call=lambda seed: fake_lenient(X, 2.0),
    bad_calls=(lambda: fake_lenient(X, -1.0), lambda: fake_lenient(X, torch.ones(3))),
)


def _fake(fn: Any, example: str | None, claim: str | None = None) -> Method:
    register("fake", family="optim", paper=25, summary="fake", claim=claim, example=example)(fn)
    return get("fake")


def test_machinery_passes_a_conforming_method() -> None:
    with isolated_registry(empty=True):
        assert conformance_problems(_fake(fake_scale, f"{__name__}:GOOD")) == []


def test_machinery_flags_a_missing_title_and_example() -> None:
    with isolated_registry(empty=True):
        problems = conformance_problems(_fake(fake_undocumented, None))
    assert len(problems) == 2
    assert "does not cite the paper title" in problems[0]
    assert "no conformance example" in problems[1]


def test_machinery_flags_nondeterminism() -> None:
    with isolated_registry(empty=True):
        assert conformance_problems(_fake(fake_global_rng, f"{__name__}:UNSEEDED")) == [
            "two calls with seed 0 gave different results"
        ]


def test_machinery_flags_bad_input_that_is_accepted_or_raises_the_wrong_error() -> None:
    with isolated_registry(empty=True):
        problems = conformance_problems(_fake(fake_lenient, f"{__name__}:LENIENT"))
    assert problems == [
        "bad_calls[0] raised nothing, expected ValueError or TypeError",
        "bad_calls[1] raised RuntimeError, expected ValueError or TypeError",
    ]


def test_machinery_flags_a_method_whose_claim_does_not_import() -> None:
    with isolated_registry(empty=True):
        method = _fake(fake_scale, f"{__name__}:GOOD", claim="gradinfo.claims.nope:check")
        problems = conformance_problems(method)
    assert len(problems) == 1 and "claim check gradinfo.claims.nope:check does not import" in problems[0]


def test_same_compares_exactly() -> None:
    a = {"t": torch.tensor([1.0, float("nan")]), "x": (1, [2.0])}
    assert _same(a, {"t": torch.tensor([1.0, float("nan")]), "x": (1, [2.0])})
    assert not _same(a, {"t": torch.tensor([1.0, 2.0]), "x": (1, [2.0])})
    assert not _same(torch.zeros(2), torch.zeros(2, dtype=torch.float64))
    assert not _same(torch.zeros(2), torch.zeros(1, 2))
    assert not _same((1, 2), [1, 2])
