"""The jobs' progress display: a live rich bar on a terminal, and one line per finished unit in a log.

A rich ``Progress`` redraws its bar only on a terminal; written to a file or a pipe (``nohup``, CI, a
cluster's job log) it prints nothing until the job ends. :func:`job_progress` builds the bar the jobs share,
and :func:`log_done` prints a line for a finished cell, optimizer or stage when the output is not a terminal,
so a log shows how far a long job got and how long each unit took.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def job_progress(enabled: bool, console: Console | None = None) -> Progress:
    """The bar the jobs share: description, bar, done/total, elapsed time; ``enabled=False`` shows nothing."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=console, disable=not enabled, transient=False)


def log_done(bar: Progress, message: str) -> None:
    """Print ``message`` as one line when ``bar`` is enabled and writes to something other than a terminal."""
    if not bar.disable and not bar.console.is_terminal:
        bar.console.print(message, soft_wrap=True, highlight=False, markup=False)
