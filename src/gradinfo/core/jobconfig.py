"""A job's options as one pydantic config: the single schema of its Python API and its command line.

Every job (``gradinfo audit``, ``compare-optimizers``, ``prune``, ...) describes its inputs as a subclass of
:class:`JobConfig`: one field per option, with its type, default and ``description``; the command-line option
of a field is its name with dashes (:func:`option_name`: ``batch_sizes`` -> ``--batch-sizes``), and
:mod:`gradinfo.core.jobcli` generates the command from the fields. :meth:`JobConfig.make` builds a config from
keyword options (strings as typed on a command line, or Python values) and turns every validation error into
one line starting with the option it concerns (``--steps: must be an int >= 1, got 2.5``), raised at once as
:class:`JobConfigError`; mistakes across fields (:meth:`JobConfig.cross_checks`) follow once every field is
valid. A config names its :class:`Preset` s (``full``), reachable as ``make(preset="full")`` and as the flag
``--full``. :func:`int_field`, :func:`choice_field`, :func:`names_field` and :data:`OutDir` are the field
checks the jobs share.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, field_validator
from typing_extensions import Self


class JobConfigError(ValueError):
    """One or more mistakes in a job's inputs; ``lines`` holds one message per mistake."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\n".join(lines))


def option_name(field: str) -> str:
    """The command-line option of a config field: ``"batch_sizes"`` -> ``"--batch-sizes"``."""
    return "--" + field.replace("_", "-")


@dataclass(frozen=True)
class Preset:
    """A named set of option values (``--full``); options given explicitly override it.

    Attributes:
        about: what the preset is, one sentence without a final period (the flag's help starts with it).
        values: option values by field name, as :meth:`JobConfig.make` takes them.
    """

    about: str
    values: Mapping[str, Any]

    def describe(self) -> str:
        """``about`` and the values it sets, as the flag's help shows them."""
        shown = ", ".join(f"{option_name(k)} {_shown(v)}" for k, v in self.values.items())
        return f"{self.about}: {shown} (options given explicitly override these)."


def _shown(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return str(value)


class JobConfig(BaseModel):
    """The base of every job's config: frozen, unknown fields refused, strings converted by the field checks.

    A subclass sets :attr:`job` (its command's name) and, optionally, :attr:`presets`; declares one field per
    option (``Field(default, description=...)``: the description is the option's help, and a default that is
    not None is shown after it); and may override :meth:`cross_checks` and :meth:`fingerprint`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)

    job: ClassVar[str] = "job"
    """The job's command name, in messages (``"audit"``)."""
    presets: ClassVar[dict[str, Preset]] = {}
    """Named option sets by name (``"full"``)."""

    @classmethod
    def make(cls, *, preset: str | None = None, **options: Any) -> Self:
        """The config of ``options`` (fields by name; None keeps a field's default), on top of ``preset``.

        Raises:
            JobConfigError: unknown option names or preset; else one line per field mistake, each starting
                with its option; else the lines of :meth:`cross_checks`.
        """
        given = {k: v for k, v in options.items() if v is not None}
        unknown = sorted(set(given) - set(cls.model_fields))
        if unknown:
            raise JobConfigError([f"unknown {cls.job} option(s) {', '.join(unknown)}"])
        if preset is not None:
            if preset not in cls.presets:
                valid = ", ".join(cls.presets) or "none"
                raise JobConfigError([f"unknown {cls.job} preset {preset!r}; valid: {valid}"])
            given = {**cls.presets[preset].values, **given}
        try:
            config = cls(**given)
        except ValidationError as err:
            raise JobConfigError([_line(e) for e in err.errors()]) from None
        lines = config.cross_checks()
        if lines:
            raise JobConfigError(lines)
        return config

    def cross_checks(self) -> list[str]:
        """Mistakes across fields, one line each starting with the option concerned; none by default."""
        return []

    def fingerprint(self) -> dict[str, Any]:
        """Every field that changes results (all but ``out``), as JSON-ready values."""
        return json.loads(self.model_dump_json(exclude={"out"}))


def _line(error: Any) -> str:
    ctx = error.get("ctx") or {}
    message = str(ctx["error"]) if "error" in ctx else error["msg"]
    if not error["loc"]:
        return message
    return f"{option_name(str(error['loc'][0]))}: {message}"


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


def split_names(value: Any) -> Any:
    """``"a, b"`` -> ``("a", "b")``; lists and tuples become tuples (string items stripped); else as is."""
    if isinstance(value, str):
        value = value.split(",")
    if isinstance(value, (list, tuple)):
        return tuple(v.strip() if isinstance(v, str) else v for v in value)
    return value


def names_field(field: str, choices: Iterable[str], *, kind: str) -> Any:
    """A pydantic validator (assign it in the model's body): ``field`` lists names from ``choices``.

    The field is a ``tuple[str, ...]``; a comma-separated string is split (:func:`split_names`). At least one
    name, every name known, none repeated.

    Args:
        field: the field name.
        choices: the valid names, listed in the messages.
        kind: what a name is, in the messages (``"attack"``: ``unknown attack 'x'; valid: a, b``).

    Returns:
        The validator, run before pydantic's own type check.
    """
    valid = tuple(choices)

    def check(cls: type, value: Any) -> Any:
        names = split_names(value)
        if not isinstance(names, tuple):
            return names  # pydantic's type check names the problem
        if not names:
            raise ValueError(f"give at least one {kind}; valid: {', '.join(valid)}")
        unknown = [n for n in names if n not in valid]
        if unknown:
            raise ValueError(f"unknown {kind} {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")
        if len(set(names)) != len(names):
            raise ValueError(f"{kind}s repeat: {', '.join(names)}")
        return names

    return field_validator(field, mode="before")(check)


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
