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


@app.command()
def audit(
    model: str | None = typer.Option(
        None, "--model", help="'module:factory' building your nn.Module (default: a small CNN with dropout)."
    ),
    data: str | None = typer.Option(
        None,
        "--data",
        help="photos (default), digits, a folder of images (a sub-folder per class) or an .npz "
        "with x [N, C, H, W] and y [N].",
    ),
    attacks: str | None = typer.Option(None, "--attacks", help="Comma-separated attack names."),
    defenses: str | None = typer.Option(None, "--defenses", help="Comma-separated defense names."),
    batch_sizes: str | None = typer.Option(None, "--batch-sizes", help="Comma-separated victim batch sizes."),
    iterations: str | None = typer.Option(None, "--iterations", help="Attack iterations per cell."),
    restarts: str | None = typer.Option(None, "--restarts", help="Attack restarts per cell."),
    clients: str | None = typer.Option(None, "--clients", help="Federated clients (default 10)."),
    rounds: str | None = typer.Option(None, "--rounds", help="Federated rounds of the utility runs."),
    local_steps: str | None = typer.Option(None, "--local-steps", help="Local steps per round."),
    seed: str | None = typer.Option(None, "--seed", help="Seed of everything (default 0)."),
    engine: str | None = typer.Option(
        None, "--engine", help="Utility runs: inprocess (default) or flower (Flower's simulation, Ray)."
    ),
    out: str = typer.Option(
        "gradinfo-audit", "--out", help="Output folder (resumed if it holds this audit)."
    ),
    full: bool = typer.Option(False, "--full", help="The bigger grid: more batch sizes, iterations, rounds."),
) -> None:
    """Audit how much a model's shared gradients leak under each defense, and what each defense costs.

    Writes report.html, results.jsonl (one line per finished cell) and PNG figures into --out; rerun with
    the same options to resume an interrupted audit.
    """
    from gradinfo.privacy.audit import audit as run_audit
    from gradinfo.privacy.audit import make_config
    from gradinfo.privacy.audit.config import FULL

    given = {
        "model": model, "data": data, "attacks": attacks, "defenses": defenses, "batch_sizes": batch_sizes,
        "iterations": iterations, "restarts": restarts, "clients": clients, "rounds": rounds,
        "local_steps": local_steps, "seed": seed, "engine": engine, "out": out,
    }  # fmt: skip
    if full:
        given = {**FULL, **{k: v for k, v in given.items() if v is not None}}
    result = run_audit(make_config(**given))
    console = Console()
    console.print(
        f"audit finished in {result.seconds:.0f} s ({result.computed} cells computed, {result.reused} reused "
        f"from an earlier run); report: {result.report}"
    )


@app.command("compare-optimizers")
def compare_optimizers(
    task: str | None = typer.Option(None, "--task", help="tiny-lm (default), mlp-digits or cnn-photos."),
    optimizers: str | None = typer.Option(
        None,
        "--optimizers",
        help="Comma-separated: adamw,diffgrad,sinkgd,galore,qgalore,mfac (default: all).",
    ),
    steps: str | None = typer.Option(None, "--steps", help="Optimizer steps per optimizer (default 200)."),
    lr: str | None = typer.Option(
        None,
        "--lr",
        help="One learning rate for all, or name=lr pairs (adamw=1e-3,mfac=0.01); default per task.",
    ),
    batch_size: str | None = typer.Option(None, "--batch-size", help="Batch size (default per task)."),
    seed: str | None = typer.Option(None, "--seed", help="Seed of model, data and batches (default 0)."),
    out: str = typer.Option(
        "gradinfo-compare", "--out", help="Output folder (resumed if it holds this comparison)."
    ),
) -> None:
    """Train one seeded model with each optimizer: loss curves, final metrics, state bytes and step times.

    Writes report.html, curves.png and results.jsonl (one line per finished optimizer) into --out; rerun with
    the same options to resume an interrupted comparison (finished optimizers are skipped, an unfinished one
    continues from its checkpoint).
    """
    from gradinfo.optim.compare import compare, make_config

    given = {
        "task": task, "optimizers": optimizers, "steps": steps, "lr": lr, "batch_size": batch_size,
        "seed": seed, "out": out,
    }  # fmt: skip
    result = compare(make_config(**given))
    table = Table("optimizer", "held-out loss", "held-out acc.", "state + proj. MB", "step ms")
    for r in result.rows:
        loss = "diverged" if r["test_loss"] is None else f"{r['test_loss']:.4f}"
        acc = "-" if r["test_accuracy"] is None else f"{r['test_accuracy']:.3f}"
        table.add_row(
            r["optimizer"], loss, acc, f"{r['state_and_projector_bytes'] / 1e6:.3f}", f"{r['step_ms']:.2f}"
        )
    console = Console()
    console.print(table)
    console.print(
        f"comparison finished in {result.seconds:.0f} s ({result.computed} optimizers trained, "
        f"{result.reused} reused from an earlier run); report: {result.report}"
    )

