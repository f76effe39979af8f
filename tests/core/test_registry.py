"""The method registry: validation at registration, lookup, lazy loading, and the scratch registry."""

from __future__ import annotations

import pytest

from gradinfo.core import registry
from gradinfo.core.papers import PAPERS
from gradinfo.core.registry import Conformance, Method, get, isolated_registry, plan, register, registered

EXAMPLE = Conformance(call=lambda seed: seed, bad_calls=())
NOT_AN_EXAMPLE = 42


def fake_method(x: float) -> float:
    """Double ``x``."""
    return 2 * x


class Holder:
    @staticmethod
    def nested() -> str:
        return "nested"


def test_register_records_target_and_returns_the_function() -> None:
    with isolated_registry(empty=True):
        decorated = register("fake", family="optim", paper=25, summary="doubles x")(fake_method)
        assert decorated is fake_method
        method = get("fake")
        assert method.target == f"{__name__}:fake_method"
        assert method.status == "implemented"
        assert method.load() is fake_method


def test_register_collects_every_problem_in_one_error() -> None:
    with isolated_registry(empty=True), pytest.raises(ValueError) as info:
        register("not a name", family="magic", paper=99, summary="two\nlines", missing=" ")(fake_method)
    message = str(info.value)
    for fragment in ("Python identifier", "family 'magic'", "paper 99", "names what is missing", "one line"):
        assert fragment in message
    with isolated_registry(empty=True):
        assert registered() == []


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"summary": "  "}, "summary is empty"),
        ({"status": "done"}, "status 'done'"),
        ({"paper": 0}, "paper 0"),
    ],
)
def test_plan_rejects_bad_fields(kwargs: dict, fragment: str) -> None:
    fields = {"family": "optim", "paper": 25, "summary": "ok"} | kwargs
    status = fields.pop("status", "planned")
    with isolated_registry(empty=True), pytest.raises(ValueError, match=fragment):
        registry._add(Method("x", fields["family"], fields["paper"], fields["summary"], status))


def test_implemented_needs_a_callable() -> None:
    with isolated_registry(empty=True), pytest.raises(ValueError, match="needs a callable"):
        registry._add(Method("x", "optim", 25, "ok", "implemented"))


def test_name_taken_by_a_plan_row_says_to_delete_it() -> None:
    with isolated_registry(empty=True):
        plan("fake", family="optim", paper=25, summary="doubles x")
        plan("fake", family="optim", paper=25, summary="doubles x")  # the same entry again: no error
        with pytest.raises(ValueError, match="delete its plan"):
            register("fake", family="optim", paper=25, summary="doubles x")(fake_method)


def test_registered_is_sorted_by_paper_then_name() -> None:
    with isolated_registry(empty=True):
        plan("b", family="optim", paper=3, summary="s")
        plan("a", family="optim", paper=3, summary="s")
        plan("z", family="optim", paper=1, summary="s")
        assert [m.name for m in registered()] == ["z", "a", "b"]


def test_get_unknown_lists_known_names() -> None:
    with isolated_registry(empty=True):
        plan("alpha", family="optim", paper=1, summary="s")
        with pytest.raises(KeyError, match="alpha"):
            get("beta")


def test_isolated_registry_restores_after_the_block_and_after_errors() -> None:
    before = registered()
    with isolated_registry():
        assert registered() == before
        plan("scratch_only", family="optim", paper=1, summary="s")
    assert registered() == before
    with pytest.raises(RuntimeError), isolated_registry(empty=True):
        assert registered() == []
        raise RuntimeError
    assert registered() == before


def test_planned_method_loads_nothing() -> None:
    method = Method("p", "optim", 25, "s", "planned")
    for load in (method.load, method.load_claim, method.load_example):
        with pytest.raises(LookupError, match="'p'"):
            load()


def test_loaders_resolve_module_attribute_paths() -> None:
    method = Method(
        "m",
        "optim",
        25,
        "s",
        "verified",
        f"{__name__}:Holder.nested",
        f"{__name__}:fake_method",
        f"{__name__}:EXAMPLE",
    )
    assert method.load()() == "nested"
    assert method.load_claim() is fake_method
    assert method.load_example() is EXAMPLE
    assert method.module == __name__


def test_load_example_rejects_other_types() -> None:
    method = Method(
        "m", "optim", 25, "s", "implemented", f"{__name__}:fake_method", None, f"{__name__}:NOT_AN_EXAMPLE"
    )
    with pytest.raises(TypeError, match="Conformance"):
        method.load_example()


def test_as_row_takes_title_and_year_from_the_paper_list() -> None:
    row = Method("m", "optim", 25, "s", "planned").as_row()
    assert row["title"] == PAPERS[25].title
    assert row["year"] == PAPERS[25].year == 2019
    fields = {"name", "family", "paper", "title", "year", "summary", "status", "module", "claim"}
    assert set(row) == fields | {"missing", "record"}
    assert (row["missing"], row["record"]) == (None, None)


def test_a_component_is_registered_with_what_is_missing() -> None:
    with isolated_registry(empty=True):
        register("fake", family="optim", paper=25, summary="s", missing="the ImageNet-scale run")(fake_method)
        method = get("fake")
        assert (method.status, method.missing) == ("component", "the ImageNet-scale run")
        assert method.as_row()["missing"] == "the ImageNet-scale run"
