"""The jobs of the ``gradinfo`` command line, one :class:`~gradinfo.core.job.Job` each, in the order
``--help`` lists them. Adding a job = its package (config, run, report) and one entry here."""

from __future__ import annotations

from gradinfo.compress.prune import JOB as PRUNE
from gradinfo.core.job import Job
from gradinfo.optim.compare import JOB as COMPARE
from gradinfo.privacy.audit import JOB as AUDIT

JOBS: tuple[Job, ...] = (AUDIT, COMPARE, PRUNE)
