"""``gradinfo audit``: how much a model's shared gradients reveal, and what each defense costs.

The job runs a grid of cells (defense x victim batch size x attack, plus a federated utility run per
defense) into an output folder, resumably, and writes ``report.html``. ``audit(config)`` is the Python
entry point (``config = make_config(...)``, or ``make_config(preset="full", ...)``); ``gradinfo audit``
the command line, generated from the config (:data:`JOB`). The files:

- ``config.py``: :class:`AuditConfig`, every option with its checks, the attack and defense tables, the
  ``full`` preset;
- ``setup.py``: :func:`~gradinfo.privacy.audit.setup.prepare`: data, model, client split and DP noise,
  checked together before any work;
- ``grid.py``: the cells of a config, and the attack/defense pairs that get none;
- ``cell.py``: what one attack or utility cell does (the threat model), and its row;
- ``run.py``: :func:`audit`: the output folder, the loop over unfinished cells, ``REVISION``;
- ``report.py``: ``report.html`` and its figures, and the end-of-run summary line.
"""

from __future__ import annotations

from gradinfo.core.job import Job
from gradinfo.privacy.audit.config import ATTACKS, DEFENSES, AuditConfig
from gradinfo.privacy.audit.report import summary
from gradinfo.privacy.audit.run import audit

make_config = AuditConfig.make
"""The :class:`AuditConfig` of keyword options (``preset="full"`` for the bigger grid); see
:meth:`~gradinfo.core.jobconfig.JobConfig.make`."""

JOB = Job(
    AuditConfig,
    audit,
    summary,
    "Audit how much a model's shared gradients leak under each defense, and what each defense costs.\n\n"
    "Writes report.html, results.jsonl (one line per finished cell) and PNG figures into --out; rerun with\n"
    "the same options to resume an interrupted audit.",
)
"""The ``gradinfo audit`` job."""

__all__ = ["ATTACKS", "DEFENSES", "JOB", "AuditConfig", "audit", "make_config"]
