"""``gradinfo compare-optimizers``: train one seeded model with each optimizer and compare, resumably.

Every optimizer trains a fresh copy of the same seeded model (a task of :data:`gradinfo.tasks.TASKS`:
``tiny-lm``, ``mlp-digits`` or ``cnn-photos``) on the same seeded mini-batches and is scored on its loss
curve, final metrics, the bytes it holds and its step time. The package's files:

================  =========================================================================================
``config.py``     :class:`CompareConfig` (the options' single schema), the tasks offered with their default
                  learning rates and batch sizes (``DEFAULT_LR``, ``DEFAULT_BATCH``)
``optimizers.py`` ``OPTIMIZERS`` and :func:`make_optimizer` (the papers' matrix / AdamW split,
                  :func:`matrix_layers`)
``run.py``        :func:`compare`: the output folder, training one optimizer (checkpointed), the run
``report.py``     ``curves.png``, ``report.html`` and the command line's end-of-run summary
================  =========================================================================================

The output folder holds ``manifest.json`` (the config and its digest, written first), ``results.jsonl``
(one JSON object per finished optimizer, appended, flushed and fsync-ed), ``checkpoints/<optimizer>.pt``
(the optimizer in progress), ``curves.png`` and ``report.html``. A rerun with the same config skips finished
optimizers and continues an unfinished one from its checkpoint; a truncated last line is dropped. A
non-empty folder without our manifest, another config's folder, a corrupt line or checkpoint raise
:class:`~gradinfo.core.jobdir.JobDirError`, and nothing is overwritten.
"""

from __future__ import annotations

from gradinfo.core.job import Job
from gradinfo.optim.compare.config import DEFAULT_BATCH, DEFAULT_LR, TASK_NAMES, CompareConfig, make_config
from gradinfo.optim.compare.optimizers import OPTIMIZERS, make_optimizer, matrix_layers
from gradinfo.optim.compare.report import summary
from gradinfo.optim.compare.run import compare

HELP = """Train one seeded model with each optimizer: loss curves, final metrics, state bytes and step times.

Writes report.html, curves.png and results.jsonl (one line per finished optimizer) into --out; rerun with
the same options to resume an interrupted comparison (finished optimizers are skipped, an unfinished one
continues from its checkpoint).
"""

JOB = Job(CompareConfig, compare, summary, HELP)
"""The ``compare-optimizers`` job."""

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_LR",
    "JOB",
    "OPTIMIZERS",
    "TASK_NAMES",
    "CompareConfig",
    "compare",
    "make_config",
    "make_optimizer",
    "matrix_layers",
]
