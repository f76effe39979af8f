"""What a job is: a config model, a run function, a summary; and what every run returns.

A job is a small package (``privacy/audit``, ``optim/compare``, ``compress/prune``, ...) with the same files:
``config.py`` (its :class:`~gradinfo.core.jobconfig.JobConfig`: the single schema of its options),
``run.py`` (the work, resumable in an output folder through :mod:`gradinfo.core.jobdir`), ``report.py``
(what a person reads), and an ``__init__.py`` exporting its :class:`Job`. :data:`gradinfo.jobs.JOBS` lists
them; the command line generates one command per job (:mod:`gradinfo.core.jobcli`). Adding a job = a config,
a run function, a report and one line in that list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradinfo.core.jobconfig import JobConfig


@dataclass(frozen=True)
class JobResult:
    """What one run of a job did.

    Attributes:
        out: the output folder.
        report: the report a person reads (``report.html``, ``report.md``).
        rows: the job's results, JSON-ready: one per finished unit (an audit's cells, a comparison's
            optimizers), or the one summary a single-shot job writes (``prune``'s ``report.json``).
        computed: the units (cells, optimizers, stages) this call computed.
        reused: the units found finished in the folder and not recomputed.
        seconds: wall time of this call.
    """

    out: Path
    report: Path
    rows: list[dict[str, Any]]
    computed: tuple[str, ...]
    reused: tuple[str, ...]
    seconds: float


@dataclass(frozen=True)
class Job:
    """One job: its command, its options' schema, its work and its end-of-run summary.

    Attributes:
        config: the config class; its ``job`` attribute is the command's name.
        run: ``run(config, progress=True) -> JobResult``; runs or resumes the job (``progress=False``: no
            bar).
        summary: what the command line prints when ``run`` returns (rich renderables or strings).
        help: the command's help: a one-line summary, a blank line, what it writes.
    """

    config: type[JobConfig]
    run: Callable[..., JobResult]
    summary: Callable[[JobResult], Sequence[Any]]
    help: str

    @property
    def name(self) -> str:
        """The command's name (``"audit"``)."""
        return self.config.job
