"""A job's options as a pydantic config: every mistake collected, one line each, naming its option.

The jobs ``gradinfo audit``, ``compare-optimizers`` and ``prune`` describe their inputs as frozen pydantic
models. :func:`build_config` builds one from keyword options and turns every validation error into one
line starting with the command-line option it concerns (``--steps: must be an int >= 1, got 2.5``), raised
at once as the job's subclass of :class:`JobConfigError`. :func:`int_field`, :func:`choice_field` and
:data:`OutDir` are the field checks the jobs share.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ValidationError, field_validator

Config = TypeVar("Config", bound=BaseModel)


class JobConfigError(ValueError):
    """One or more mistakes in a job's inputs; ``lines`` holds one message per mistake."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\n".join(lines))


def build_config(
    model: type[Config],
    options: dict[str, Any],
    *,
    job: str,
    option: dict[str, str],
    error: type[JobConfigError] = JobConfigError,
) -> Config:
    """Build ``model`` from ``options``, turning every mistake into one line of one error.

    Args:
        model: the job's pydantic config class.
        options: its fields by name; None values are dropped (the default applies).
        job: the job's name, in the line for unknown options.
        option: the command-line option of each field, starting each line (a field not in it is named as is).
        error: the exception raised, the job's subclass of :class:`JobConfigError`.

    Returns:
        The validated config.

    Raises:
        JobConfigError: (as ``error``) unknown option names, or one line per field mistake.
    """
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(model.model_fields))
    if unknown:
        raise error([f"unknown {job} option(s) {', '.join(unknown)}"])
    try:
        return model(**given)
    except ValidationError as err:
        raise error([_line(e, option) for e in err.errors()]) from None


def _line(error: Any, option: dict[str, str]) -> str:
    ctx = error.get("ctx") or {}
    message = str(ctx["error"]) if "error" in ctx else error["msg"]
    if not error["loc"]:
        return message
    field = str(error["loc"][0])
    return f"{option.get(field, field)}: {message}"


def is_int(value: Any, minimum: int) -> bool:
    """Whether ``value`` is an int >= ``minimum`` or a string spelling one (bools are not ints here)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        value = value.strip()
        if not value.lstrip("-").isdigit():
            return False
        value = int(value)
    return isinstance(value, int) and value >= minimum


def int_at_least(value: Any, minimum: int) -> int:
    """``value`` as an int after checking :func:`is_int`.

    Raises:
        ValueError: ``value`` is not an int >= ``minimum`` (nor a string spelling one).
    """
    if not is_int(value, minimum):
        raise ValueError(f"must be an int >= {minimum}, got {value!r}")
    return int(value)


def choice_field(field: str, choices: Iterable[str], *, kind: str) -> Any:
    """A pydantic validator (assign it in the model's body): ``field`` is one of ``choices``, or None.

    Args:
        field: the field name.
        choices: the valid values, listed in the message.
        kind: what a value is, in the message (``"task"``: ``unknown task 'x'; valid: a, b``).

    Returns:
        The validator, run after pydantic's own type check.
    """
    valid = tuple(choices)

    def check(cls: type, value: str | None) -> str | None:
        if value is not None and value not in valid:
            raise ValueError(f"unknown {kind} {value!r}; valid: {', '.join(valid)}")
        return value

    return field_validator(field)(check)


def int_field(*fields: str, minimum: int, optional: bool = False) -> Any:
    """A pydantic validator (assign it in the model's body) checking ``fields`` with :func:`int_at_least`.

    Args:
        *fields: the field names.
        minimum: the least int allowed.
        optional: None passes as None (the field's default applies later).

    Returns:
        The validator, run before pydantic's own type check (strings such as ``"3"`` become ints).
    """

    def check(cls: type, value: Any) -> int | None:
        return None if optional and value is None else int_at_least(value, minimum)

    return field_validator(*fields, mode="before")(check)


def _check_out(value: Path) -> Path:
    if value.exists() and not value.is_dir():
        raise ValueError(f"{str(value)!r} exists and is not a folder; choose another --out")
    return value


OutDir = Annotated[Path, AfterValidator(_check_out)]
"""A job's output folder field: a path that is a folder or does not exist yet."""
