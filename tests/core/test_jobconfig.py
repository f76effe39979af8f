"""A job's pydantic config: every mistake collected, one line each, naming its command-line option."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, model_validator

from gradinfo.core.jobconfig import (
    JobConfigError,
    OutDir,
    build_config,
    choice_field,
    int_at_least,
    int_field,
    is_int,
)


class ThingConfigError(JobConfigError):
    """A job's own error class, as AuditConfigError / CompareConfigError / PruneConfigError."""


class ThingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

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


OPTION = {"steps": "--steps", "batch": "--batch", "seed": "--seed", "mode": "--mode", "out": "--out"}


def build(**options: Any) -> ThingConfig:
    return build_config(ThingConfig, options, job="thing", option=OPTION, error=ThingConfigError)


def test_valid_options_build_the_config_and_none_means_default(tmp_path: Path) -> None:
    config = build(steps="3", batch=" 4 ", seed=None, mode="slow", out=tmp_path)
    assert (config.steps, config.batch, config.seed, config.mode, config.out) == (3, 4, 0, "slow", tmp_path)
    assert (build().batch, build().mode) == (None, None)


def test_every_mistake_is_one_line_naming_its_option(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("")
    with pytest.raises(ThingConfigError) as info:
        build(steps=0, batch="x", seed="-1", name="c", mode="medium", out=tmp_path / "file.txt")
    assert isinstance(info.value, ValueError)
    assert info.value.lines == [
        "--steps: must be an int >= 1, got 0",
        "--batch: must be an int >= 1, got 'x'",
        "--seed: must be an int >= 0, got '-1'",
        "name: unknown name 'c'; valid: a, b",  # a field without an option is named as is
        "--mode: unknown mode 'medium'; valid: fast, slow",
        f"--out: {str(tmp_path / 'file.txt')!r} exists and is not a folder; choose another --out",
    ]
    assert str(info.value) == "\n".join(info.value.lines)


def test_a_type_error_keeps_pydantics_message() -> None:
    with pytest.raises(ThingConfigError) as info:
        build(name=3)
    assert info.value.lines == ["name: Input should be a valid string"]


def test_a_mistake_across_fields_is_its_message_alone() -> None:
    with pytest.raises(ThingConfigError) as info:
        build(name="b", steps=6)
    assert info.value.lines == ["name 'b' takes at most 5 steps"]


def test_unknown_options_are_named_before_validation() -> None:
    with pytest.raises(ThingConfigError) as info:
        build(stepz=3, colour="red", steps=0)
    assert info.value.lines == ["unknown thing option(s) colour, stepz"]


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
