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
from gradinfo.claims import ClaimResult, reproduce_all
from gradinfo.claims import reproduce as claims_reproduce
from gradinfo.core.job import Job
from gradinfo.core.jobcli import add_job
from gradinfo.core.jobconfig import JobConfigError
from gradinfo.core.jobdir import JobDirError
from gradinfo.core.record import RECORD, Record
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
    colour = {"planned": "dim", "implemented": "yellow", "component": "cyan", "verified": "green"}
    for m in rows:
        table.add_row(str(m.paper), m.name, m.family, f"[{colour[m.status]}]{m.status}[/]", m.summary)
    return table


def _seeds(text: str) -> list[int]:
    items = [t.strip() for t in text.split(",")]
    bad = [t for t in items if not t.isdigit()]
    if bad or not items:
        raise UsageError(f"--seeds must be comma-separated ints >= 0 such as 0,1,2; got {text!r}")
    seeds = [int(t) for t in items]
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds repeat: {text!r}")
    return seeds


def _method_with_claim(name: str) -> Method:
    known = {m.name: m for m in all_methods()}
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `gradinfo methods` lists them"
        raise UsageError(f"no method named {name!r}{hint}")
    method = known[name]
    if method.claim is None:
        raise UsageError(f"method {name!r} is {method.status} and has no claim check yet")
    return method


def _verdict(record: Record) -> str:
    passing = sum(run.passed for run in record.seeds.values())
    return f"{record.method}: {passing} of {len(record.seeds)} recorded seeds pass ({record.verdict})"


def reproduce(
    name: str | None = typer.Argument(None, help="The method's name, as `gradinfo methods` lists it."),
    seeds: str = typer.Option("0", "--seeds", help="Comma-separated seeds of the experiment, e.g. 0,1,2."),
    every: bool = typer.Option(
        False,
        "--all",
        help="Every method with a claim check: only the seeds its record lacks run (resumable), each written "
        "to the claim record as it finishes.",
    ),
    record: bool = typer.Option(
        False, "--record", help="Write each finished seed to the committed claim record (always with --all)."
    ),
) -> None:
    """Run claim checks: print each seed's figures and PASS/FAIL against the paper's claim, then the verdict.

    A method is verified when its record holds at least 3 seeds and the claim held at every one. Exit status
    0 when every seed run passed, 1 when one did not, 2 on a usage error.
    """
    runs = _seeds(seeds)
    if every == (name is not None):
        raise UsageError("give a method name or --all, not both" if every else "give a method name, or --all")
    console = Console()
    failed: list[str] = []

    def done(result: ClaimResult) -> None:
        console.print(result)
        if not result.passed:
            failed.append(f"{result.method} (seed {result.seed})")

    if every:
        skipped = lambda n: console.print(f"{n}: record up to date")  # noqa: E731
        records = reproduce_all(runs, record=RECORD, done=done, skipped=skipped)
        for item in records.values():
            console.print(_verdict(item))
    else:
        _method_with_claim(name)
        console.print(_verdict(claims_reproduce(name, runs, record=RECORD if record else None, done=done)))
    if failed:
        raise typer.Exit(1)


app = build_app(JOBS)
"""The ``gradinfo`` command line."""
