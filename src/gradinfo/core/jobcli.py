"""A job's command, generated from its config: one option per field, one flag per preset.

:func:`job_command` turns a :class:`~gradinfo.core.job.Job` into a typer command function. Each config field
becomes the option :func:`~gradinfo.core.jobconfig.option_name` names (``batch_sizes`` -> ``--batch-sizes``),
read as text (a bool field: a ``--x/--no-x`` flag) and validated by the config itself, so the command line
and Python callers get the same checks and the same one-line-per-mistake errors. Its help is the field's
``description`` followed by its default (when not None); each preset becomes a flag whose help lists the
values it sets. The option's schema is thus declared once, in the config, and its help cannot drift from
the code.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Optional

import typer
from pydantic.fields import FieldInfo
from rich.console import Console

from gradinfo.core.job import Job
from gradinfo.core.jobconfig import JobConfigError, option_name

_PRESET = "preset_"


def field_help(field: FieldInfo) -> str:
    """A field's option help: its description, then ``(default: ...)`` unless the default is None."""
    text = field.description or ""
    default = field.get_default(call_default_factory=True)
    if default is None or isinstance(default, bool):
        return text
    shown = ",".join(map(str, default)) if isinstance(default, (tuple, list)) else str(default)
    return f"{text} (default: {shown})" if text else f"(default: {shown})"


def _parameters(job: Job) -> list[inspect.Parameter]:
    params = []
    for name, field in job.config.model_fields.items():
        flag = field.annotation is bool
        decls = f"{option_name(name)}/--no-{option_name(name)[2:]}" if flag else option_name(name)
        option = typer.Option(None, decls, help=field_help(field), show_default=False)
        annotation = Optional[bool] if flag else Optional[str]  # noqa: UP045 (typer reads this object)
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
        )
    for name, preset in job.config.presets.items():
        option = typer.Option(False, option_name(name), help=preset.describe(), show_default=False)
        params.append(
            inspect.Parameter(_PRESET + name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=bool)
        )
    return params


def job_command(job: Job, console: Console | None = None) -> Callable[..., None]:
    """The typer command function of ``job`` (register it with ``app.command(job.name, help=job.help)``).

    The command builds the config (``JobConfigError`` on any mistake, before work starts), runs the job with a
    progress bar and prints ``job.summary`` of its result.

    Args:
        job: the job.
        console: where the summary is printed (a new stdout console when None).
    """

    def command(**given: Any) -> None:
        chosen = [name for name in job.config.presets if given.pop(_PRESET + name)]
        if len(chosen) > 1:
            raise JobConfigError([f"{' and '.join(map(option_name, chosen))} exclude each other; pick one"])
        config = job.config.make(preset=chosen[0] if chosen else None, **given)
        result = job.run(config)
        out = console or Console()
        for item in job.summary(result):
            out.print(item)

    command.__signature__ = inspect.Signature(_parameters(job))  # type: ignore[attr-defined]
    command.__name__ = job.name.replace("-", "_")
    command.__doc__ = job.help
    return command


def add_job(app: typer.Typer, job: Job) -> None:
    """Register ``job``'s generated command on ``app`` under ``job.name``."""
    app.command(job.name, help=job.help)(job_command(job))
