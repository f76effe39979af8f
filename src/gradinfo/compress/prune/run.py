"""The work of ``gradinfo prune``: train (builtins), measure, prune, recover, save, reload, report; resumable.

Stages and the files that mark them finished: ``dense.json`` (the dense model's measurements), ``model/``
then ``pruned.json`` (what went, the pruned model's measurements; written only after ``model/`` is
complete), ``report.json`` and ``report.md``. A rerun reuses every finished stage.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from torch import nn

from gradinfo.compress.gaprune import SentenceEncoder
from gradinfo.compress.llm_pruner import lora_recover
from gradinfo.compress.prune.checks import check_model
from gradinfo.compress.prune.config import PruneConfig
from gradinfo.compress.prune.data import load_task
from gradinfo.compress.prune.methods import METHODS
from gradinfo.compress.prune.metrics import max_difference, measure, train_builtin
from gradinfo.compress.prune.models import build_model
from gradinfo.compress.prune.report import build_report, markdown
from gradinfo.compress.prune.save import MARKER, MODEL, load_job_model, save_model
from gradinfo.core.job import JobResult
from gradinfo.core.jobdir import MANIFEST, JobDirError, job_lock, open_job_dir, write_atomic
from gradinfo.core.progress import job_progress, log_done

DENSE, PRUNED, REPORT_JSON, REPORT_MD = "dense.json", "pruned.json", "report.json", "report.md"
STAGES = ("dense", "pruned", "report")


def open_out(config: PruneConfig) -> None:
    """Create ``config.out`` with our manifest, or check that an existing one holds this very run.

    Raises:
        JobDirError: a non-empty folder without our manifest, a manifest of another job or config, or a
            corrupt manifest. Nothing is written in those cases.
    """
    open_job_dir(config.out, job=config.job, noun="prune run", fingerprint=config.fingerprint())


def _read_stage(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise JobDirError(f"{str(path)!r} is corrupt ({err}); delete it to redo that stage") from err


def _result(
    config: PruneConfig, report: dict[str, Any], computed: list[str], reused: list[str], began: float
) -> JobResult:
    seconds = time.perf_counter() - began
    return JobResult(config.out, config.out / REPORT_MD, [report], tuple(computed), tuple(reused), seconds)


def prune(config: PruneConfig, *, progress: bool = True) -> JobResult:
    """Run (or resume) the prune job ``config`` describes: measure, prune, (recover,) save, report.

    Args:
        config: a :class:`PruneConfig` (from ``PruneConfig.make``, which reports every mistake at once).
        progress: show rich progress bars.

    Returns:
        A :class:`~gradinfo.core.job.JobResult`: ``report`` is ``report.md``, ``rows`` holds the one
        ``report.json`` dict; ``computed`` and ``reused`` name stages (``dense``, ``pruned``, ``report``). A
        finished folder is returned without recomputing anything.

    Raises:
        TypeError: ``config`` is not a ``PruneConfig``.
        JobConfigError: the model cannot be loaded, or the method cannot prune it on this data (raised
            before the output folder is touched and before any training or pruning).
        JobDirError: the output folder is foreign, from another config, or corrupt.
    """
    if not isinstance(config, PruneConfig):
        raise TypeError(f"config must be a PruneConfig (see make_config), got {type(config).__name__}")
    began = time.perf_counter()
    out = config.out
    if (out / MANIFEST).is_file() and (out / REPORT_JSON).is_file():
        with job_lock(out):
            open_out(config)
            return _result(config, _read_stage(out / REPORT_JSON), [], list(STAGES), began)
    model, tokenizer = build_model(config.model, config.seed)
    check_model(config, model, tokenizer)
    with job_lock(out):
        open_out(config)
        return _stages(config, model, tokenizer, progress, began)


def _stages(config: PruneConfig, model: nn.Module, tokenizer: Any, progress: bool, began: float) -> JobResult:
    """The stages of a run whose folder is open and held: train, measure, prune, save, report."""
    out = config.out
    settings = config.fingerprint()
    task = load_task(config.dataset(), config.seed, settings["examples"], tokenizer)
    if task.kind == "encoder":
        model = SentenceEncoder(model, pad_id=tokenizer.pad_token_id or 0)
    computed, reused = [], []
    dense, pruned_stage = _read_stage(out / DENSE), _read_stage(out / PRUNED)
    if pruned_stage is not None and not (out / MODEL / MARKER).is_file():
        pruned_stage = None
    with job_progress(progress) as bar:
        stages = bar.add_task("prune job", total=4)
        steps = settings["train_steps"]
        if steps and pruned_stage is None:
            training = bar.add_task(f"  training {config.model} on {config.dataset()}", total=steps)
            t0 = time.perf_counter()
            train_builtin(model, task, steps, config.seed, lambda k: bar.update(training, completed=k))
            log_done(
                bar, f"prune 1/4: {config.model} trained, {steps} steps ({time.perf_counter() - t0:.1f} s)"
            )
        bar.advance(stages)
        if dense is None:
            bar.update(stages, description="prune job: measuring the dense model")
            t0 = time.perf_counter()
            dense = measure(model, task)
            write_atomic(out / DENSE, json.dumps(dense, indent=2).encode())
            computed.append("dense")
            log_done(bar, f"prune 2/4: dense model measured ({time.perf_counter() - t0:.1f} s)")
        else:
            reused.append("dense")
        bar.advance(stages)
        if pruned_stage is None:
            bar.update(stages, description=f"prune job: {config.method} at ratio {config.ratio:g}")
            t0 = time.perf_counter()
            pruned, went = METHODS[config.method].run(model, task, settings)
            prune_seconds = time.perf_counter() - t0
            after = measure(pruned, task)
            recovered = None
            if config.lora_steps:
                bar.update(stages, description=f"prune job: LoRA recovery, {config.lora_steps} steps")
                pruned = lora_recover(pruned, task.train, config.lora_steps, seed=config.seed)
                recovered = measure(pruned, task)
            bar.advance(stages)
            bar.update(stages, description="prune job: saving and reloading the pruned model")
            form = save_model(config.model, config.method, pruned, went, out / MODEL, tokenizer)
            reload_error = max_difference(pruned, load_job_model(out / MODEL), task)
            pruned_stage = {
                "prune_seconds": prune_seconds, "groups": went, "after": after, "recovered": recovered,
                "format": form, "reload_max_abs_difference": reload_error,
            }  # fmt: skip
            write_atomic(out / PRUNED, json.dumps(pruned_stage, indent=2).encode())
            computed.append("pruned")
            log_done(
                bar,
                f"prune 3/4: {config.method} pruned, saved and reloaded ({time.perf_counter() - t0:.1f} s)",
            )
        else:
            reused.append("pruned")
            bar.advance(stages)
        bar.advance(stages)
    report = build_report(config, dense, pruned_stage)
    write_atomic(out / REPORT_MD, markdown(report).encode())
    write_atomic(out / REPORT_JSON, json.dumps(report, indent=2).encode())
    computed.append("report")
    return _result(config, report, computed, reused, began)
