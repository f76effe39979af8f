"""The ``gradinfo`` command line: list the methods, reproduce a paper's claim, audit gradient leakage.

User errors (an unknown method, a method without a claim check, a bad option value) raise
:class:`UsageError`, and a job's bad options or unusable output folder raise its ``JobConfigError`` (one
line per mistake) or ``JobDirError``; the app catches them in one place, prints them in red to stderr and
exits 2.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from typing import Any

import click
import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from gradinfo import __version__
from gradinfo.claims import run_claim
from gradinfo.core.job import Job
from gradinfo.core.jobcli import add_job
from gradinfo.core.jobconfig import JobConfigError
from gradinfo.core.jobdir import JobDirError
from gradinfo.core.registry import FAMILIES, STATUSES, Method
from gradinfo.jobs import JOBS
from gradinfo.methods import all_methods, markdown_table


class UsageError(Exception):
    """A mistake in the command line; shown as one line, exit status 2."""


class _Group(TyperGroup):
    """Catches user errors from every command: their lines to stderr, exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (UsageError, JobConfigError, JobDirError) as error:
            Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {error}", soft_wrap=True)
            raise typer.Exit(2) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gradinfo {__version__}")
        raise typer.Exit()


def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Gradient information for PyTorch: the methods of 51 papers, and checks of their claims."""


def build_app(jobs: Sequence[Job]) -> typer.Typer:
    """The ``gradinfo`` app: ``methods``, ``reproduce`` and one generated command per job in ``jobs``."""
    built = typer.Typer(
        name="gradinfo",
        cls=_Group,
        help="Gradient information for PyTorch: the methods of 51 papers, and checks of their claims.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,
    )
    built.callback()(main)
    built.command()(methods)
    built.command()(reproduce)
    for job in jobs:
        add_job(built, job)
    return built


def _choice(option: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise UsageError(f"{option} {value!r} is not one of: {', '.join(choices)}")


def methods(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of rows instead of a table."),
    markdown: bool = typer.Option(False, "--markdown", help="Print the README's markdown method table."),
    family: str | None = typer.Option(
        None, "--family", "-f", help=f"Only this family: {', '.join(FAMILIES)}.", show_default=False
    ),
    status: str | None = typer.Option(
        None, "--status", "-s", help=f"Only this status: {', '.join(STATUSES)}.", show_default=False
    ),
) -> None:
    """List the registered methods: paper, family, status and mechanism of each."""
    if as_json and markdown:
        raise UsageError("--json and --markdown exclude each other; pick one")
    _choice("--family", family, FAMILIES)
    _choice("--status", status, STATUSES)
    rows = [m for m in all_methods() if family in (None, m.family) and status in (None, m.status)]
    if as_json:
        typer.echo(json.dumps([m.as_row() for m in rows], indent=2, ensure_ascii=False))
    elif markdown:
        typer.echo(markdown_table(rows))
    elif not rows:
        typer.echo("no methods match these filters")
    else:
        Console().print(_table(rows))


def _table(rows: list[Method]) -> Table:
    counts = ", ".join(f"{sum(m.status == s for m in rows)} {s}" for s in reversed(STATUSES))
    table = Table(title=f"gradinfo methods ({len(rows)}: {counts})", title_justify="left")
    table.add_column("#", justify="right", style="dim")
    table.add_column("method", style="bold", no_wrap=True)
    table.add_column("family")
    table.add_column("status")
    table.add_column("mechanism")
    colour = {"planned": "dim", "implemented": "yellow", "verified": "green"}
    for m in rows:
        table.add_row(str(m.paper), m.name, m.family, f"[{colour[m.status]}]{m.status}[/]", m.summary)
    return table


def reproduce(
    name: str = typer.Argument(..., help="The method's name, as `gradinfo methods` lists it."),
    seed: int = typer.Option(0, "--seed", help="Seed of the experiment (an int >= 0)."),
) -> None:
    """Run a method's claim check: print the measured figures and PASS/FAIL against the paper's claim.

    Exit status 0 when the claim holds, 1 when it does not, 2 on a usage error.
    """
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    known = {m.name: m for m in all_methods()}
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `gradinfo methods` lists them"
        raise UsageError(f"no method named {name!r}{hint}")
    method = known[name]
    if method.claim is None:
        raise UsageError(f"method {name!r} is {method.status} and has no claim check yet")
    console = Console()
    with console.status(f"running the claim check of {name} (seed {seed})", spinner="dots"):
        result = run_claim(name, seed=seed)
    console.print(result)
    if not result.passed:
        raise typer.Exit(1)


app = build_app(JOBS)
"""The ``gradinfo`` command line."""
