"""A job's pydantic config: every mistake collected, one line each, naming its command-line option."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import model_validator

from gradinfo.core.jobconfig import (
    JobConfig,
    JobConfigError,
    OutDir,
    Preset,
    choice_field,
    int_at_least,
    int_field,
    is_int,
    names_field,
    option_name,
)


class ThingConfig(JobConfig):
    job = "thing"
    presets: ClassVar[dict[str, Preset]] = {"full": Preset("The whole thing", {"steps": 5, "mode": "slow"})}

    steps: int = 10
    batch: int | None = None
    seed: int = 0
    name: str = "a"
    mode: str | None = None
    out: OutDir = Path("thing-out")

    _check_steps = int_field("steps", minimum=1)
    _check_batch = int_field("batch", minimum=1, optional=True)
    _check_seed = int_field("seed", minimum=0)
    _check_name = choice_field("name", ("a", "b"), kind="name")
    _check_mode = choice_field("mode", {"fast": "...", "slow": "..."}, kind="mode")

    @model_validator(mode="after")
    def _check_pair(self) -> ThingConfig:
        if self.name == "b" and self.steps > 5:
            raise ValueError("name 'b' takes at most 5 steps")
        return self


def build(**options: Any) -> ThingConfig:
    return ThingConfig.make(**options)


def test_valid_options_build_the_config_and_none_means_default(tmp_path: Path) -> None:
    config = build(steps="3", batch=" 4 ", seed=None, mode="slow", out=tmp_path)
    assert (config.steps, config.batch, config.seed, config.mode, config.out) == (3, 4, 0, "slow", tmp_path)
    assert (build().batch, build().mode) == (None, None)


def test_every_mistake_is_one_line_naming_its_option(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("")
    with pytest.raises(JobConfigError) as info:
        build(steps=0, batch="x", seed="-1", name="c", mode="medium", out=tmp_path / "file.txt")
    assert isinstance(info.value, ValueError)
    assert info.value.lines == [
        "--steps: must be an int >= 1, got 0",
        "--batch: must be an int >= 1, got 'x'",
        "--seed: must be an int >= 0, got '-1'",
        "--name: unknown name 'c'; valid: a, b",
        "--mode: unknown mode 'medium'; valid: fast, slow",
        f"--out: {str(tmp_path / 'file.txt')!r} exists and is not a folder; choose another --out",
    ]
    assert str(info.value) == "\n".join(info.value.lines)


def test_a_type_error_keeps_pydantics_message() -> None:
    with pytest.raises(JobConfigError) as info:
        build(name=3)
    assert info.value.lines == ["--name: Input should be a valid string"]


def test_a_mistake_across_fields_is_its_message_alone() -> None:
    with pytest.raises(JobConfigError) as info:
        build(name="b", steps=6)
    assert info.value.lines == ["name 'b' takes at most 5 steps"]


def test_unknown_options_are_named_before_validation() -> None:
    with pytest.raises(JobConfigError) as info:
        build(stepz=3, colour="red", steps=0)
    assert info.value.lines == ["unknown thing option(s) colour, stepz"]


def test_option_names_are_field_names_with_dashes() -> None:
    assert [option_name(f) for f in ("out", "batch_sizes", "lora_steps")] == [
        "--out",
        "--batch-sizes",
        "--lora-steps",
    ]


def test_a_preset_sets_values_that_given_options_override(tmp_path: Path) -> None:
    assert (build(preset="full").steps, build(preset="full").mode) == (5, "slow")
    assert (build(preset="full", steps=4).steps, build(preset="full", steps=None).steps) == (4, 5)
    with pytest.raises(JobConfigError) as info:
        build(preset="huge")
    assert info.value.lines == ["unknown thing preset 'huge'; valid: full"]
    assert ThingConfig.presets["full"].describe() == (
        "The whole thing: --steps 5, --mode slow (options given explicitly override these)."
    )


def test_the_fingerprint_is_every_field_but_out(tmp_path: Path) -> None:
    assert build(out=tmp_path, steps=2).fingerprint() == {
        "steps": 2, "batch": None, "seed": 0, "name": "a", "mode": None
    }  # fmt: skip


class ListConfig(JobConfig):
    job = "lists"
    fruit: tuple[str, ...] = ("apple",)
    _check_fruit = names_field("fruit", ("apple", "pear"), kind="fruit")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("pear", ("pear",)),
        (" apple , pear ", ("apple", "pear")),
        (["pear", " apple"], ("pear", "apple")),
        ("", "--fruit: unknown fruit ''; valid: apple, pear"),
        ((), "--fruit: give at least one fruit; valid: apple, pear"),
        ("apple,fig,kiwi", "--fruit: unknown fruit 'fig', 'kiwi'; valid: apple, pear"),
        ("pear,pear", "--fruit: fruits repeat: pear, pear"),
    ],
)
def test_names_field_splits_and_checks_names(value: Any, expected: Any) -> None:
    if isinstance(expected, tuple):
        assert ListConfig.make(fruit=value).fruit == expected
        return
    with pytest.raises(JobConfigError) as info:
        ListConfig.make(fruit=value)
    assert info.value.lines == [expected]


@pytest.mark.parametrize(
    ("value", "minimum", "expected"),
    [
        (3, 1, True),
        (" 3 ", 1, True),
        ("3", 3, True),
        (0, 1, False),
        ("-1", 0, False),
        ("-1", -1, True),
        (True, 0, False),
        (2.0, 0, False),
        ("2.5", 0, False),
        ("x", 0, False),
        (None, 0, False),
    ],
)
def test_is_int(value: Any, minimum: int, expected: bool) -> None:
    assert is_int(value, minimum) is expected
    if expected:
        assert int_at_least(value, minimum) == int(value)
    else:
        with pytest.raises(ValueError, match=f"must be an int >= {minimum}, got {value!r}"):
            int_at_least(value, minimum)
