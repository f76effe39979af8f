"""Run an audit's cells into its output folder, resumably, and write its report.

The folder holds ``manifest.json`` (the config and its digest, written first), ``results.jsonl`` (one
JSON object per finished cell, appended, flushed and fsync-ed as each cell finishes), ``cells/<key>.npz``
(each attack cell's victims and reconstructions, written before its line) and, at the end, the report.
A rerun with the same config skips every cell that has a line. A truncated last line (the process was
killed mid-write) is dropped and its cell redone; any other damage, a folder made with another config,
or a non-empty folder without our manifest is a :class:`~gradinfo.core.jobdir.JobDirError`: nothing in it
is overwritten. What each cell does is :mod:`gradinfo.privacy.audit.cell`'s.
"""

from __future__ import annotations

import time
from typing import Any

from gradinfo.core.job import JobResult
from gradinfo.core.jobdir import RESULTS, append_row, job_lock, open_job_dir, read_rows
from gradinfo.core.progress import job_progress, log_done
from gradinfo.privacy.audit.cell import run_cell
from gradinfo.privacy.audit.config import AuditConfig
from gradinfo.privacy.audit.grid import cells, skipped
from gradinfo.privacy.audit.report import write_report
from gradinfo.privacy.audit.setup import prepare

REVISION = 2
"""Bumped whenever a change alters a finished cell's results (see :mod:`gradinfo.core.jobdir`). 2: DP local
steps Poisson-sample their minibatches and sigma is accounted with subsampling."""


def open_out(config: AuditConfig, keys: set[str]) -> dict[str, dict[str, Any]]:
    """Create or reopen ``config.out``; return the finished rows by cell key.

    Raises:
        JobDirError: a non-empty folder without our manifest, a manifest of another job, revision or config,
            or a corrupt manifest / results file (other than a truncated last line, which is dropped).
    """
    open_job_dir(
        config.out,
        job="audit",
        noun="audit",
        fingerprint=config.fingerprint(),
        untagged_ok=True,  # audit manifests did not name their job before
        revision=REVISION,
    )
    return read_rows(config.out / RESULTS, "cell", keys, noun="audit")


def audit(config: AuditConfig, *, progress: bool = True) -> JobResult:
    """Run (or resume) the audit ``config`` describes and write its report.

    Prepares the data and model (every mistake at once), opens the folder, runs every unfinished cell and
    writes ``report.html``.

    Args:
        config: an :class:`AuditConfig` (build one with :meth:`AuditConfig.make` to get every mistake at
            once).
        progress: show rich progress bars.

    Returns:
        A :class:`~gradinfo.core.job.JobResult`: the folder, the report's path, one row per cell in grid
        order, the keys of the cells computed now and of those reused from an interrupted run.

    Raises:
        TypeError: ``config`` is not an ``AuditConfig``.
        JobConfigError: the data or model do not fit the config (one line per mistake), before any work.
        JobDirError: the output folder is foreign, made with another config, or corrupt.
    """
    if not isinstance(config, AuditConfig):
        raise TypeError(f"config must be an AuditConfig (see make_config), got {type(config).__name__}")
    start = time.perf_counter()
    setup = prepare(config)
    grid = cells(config)
    with job_lock(config.out):
        done = open_out(config, {c.key for c in grid})
        reused = tuple(c.key for c in grid if c.key in done)
        todo = [c for c in grid if c.key not in done]
        with job_progress(progress) as bar:
            task = bar.add_task("audit", total=len(grid), completed=len(reused))
            for cell in todo:
                bar.update(task, description=cell.key)
                began = time.perf_counter()
                row = run_cell(setup, cell, config.out)
                append_row(config.out / RESULTS, row)
                done[cell.key] = row
                bar.advance(task)
                log_done(
                    bar, f"audit {len(done)}/{len(grid)}: {cell.key} ({time.perf_counter() - began:.1f} s)"
                )
            bar.update(task, description="audit done")
        rows = [done[c.key] for c in grid]
        report = write_report(setup, rows, skipped(config), config.out)
        computed = tuple(c.key for c in todo)
        return JobResult(config.out, report, rows, computed, reused, time.perf_counter() - start)
