"""The work of a comparison: open the output folder, train every unfinished optimizer, resumably.

Every optimizer trains a fresh copy of the same seeded model (:data:`gradinfo.tasks.TASKS`) on the same
seeded mini-batches for ``steps`` steps. Per optimizer the job records the training-loss curve, final
metrics (loss on a fixed training subset, held-out loss and accuracy, :func:`gradinfo.tasks.evaluate`), the
bytes actually held by the optimizer (every tensor in ``optimizer.state``; projectors and INT8 weights where
the optimizer keeps them, via :func:`gradinfo.optim.memory_bytes`) and the mean wall time of
``optimizer.step()`` and of a whole iteration. ``results.jsonl`` gets one line per finished optimizer; the
optimizer in progress is checkpointed to ``checkpoints/<optimizer>.pt`` (model, optimizer, batch-generator
state and curve, replaced atomically at most every :data:`CHECKPOINT_SECONDS`, removed once its line is
written), so a rerun skips finished optimizers and continues an unfinished one from its checkpoint.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from gradinfo.core.job import JobResult
from gradinfo.core.jobdir import (
    RESULTS,
    JobDirError,
    append_row,
    job_lock,
    open_job_dir,
    read_rows,
    write_atomic,
)
from gradinfo.core.progress import job_progress, log_done
from gradinfo.optim.compare.config import CompareConfig
from gradinfo.optim.compare.optimizers import make_optimizer
from gradinfo.optim.compare.report import write_report
from gradinfo.optim.galore import memory_bytes
from gradinfo.tasks import TASKS, TaskData, evaluate, load_data, loss

CHECKPOINT_SECONDS = 30.0
"""The checkpoint of the optimizer in progress is replaced at most this often (and never mid-step)."""
CHECKPOINTS = "checkpoints"
NOUN = "optimizer comparison"
_CHECKPOINT_KEYS = ("model", "optimizer", "generator", "step", "losses", "step_seconds", "iteration_seconds")


def open_out(config: CompareConfig) -> dict[str, dict[str, Any]]:
    """Create or reopen ``config.out``; return the finished rows by optimizer name.

    Raises:
        JobDirError: a non-empty folder without our manifest, a manifest of another job or config, or a
            corrupt manifest / results file (other than a truncated last line, which is dropped).
    """
    open_job_dir(config.out, job=config.job, noun=NOUN, fingerprint=config.fingerprint())
    done = read_rows(config.out / RESULTS, "optimizer", set(config.optimizers), noun=NOUN)
    for name in done:  # a kill between writing the line and removing the checkpoint
        (config.out / CHECKPOINTS / f"{name}.pt").unlink(missing_ok=True)
    return done


def _load_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        saved = torch.load(path, weights_only=True)
        missing = [k for k in _CHECKPOINT_KEYS if k not in saved]
        if missing:
            raise KeyError(f"missing entries {missing}")
    except Exception as err:  # any unreadable checkpoint gets the same clear error
        raise JobDirError(
            f"checkpoint {str(path)!r} is corrupt ({type(err).__name__}: {_first_line(err)}); delete it to "
            "restart that optimizer from step 0"
        ) from err
    return saved


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:160] if text else "no message"


def train_one(
    config: CompareConfig, name: str, data: TaskData, tick: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Train ``name`` for ``config.steps`` steps (from its checkpoint when there is one); return its row.

    Args:
        config: the comparison.
        name: the optimizer.
        data: from :func:`gradinfo.tasks.load_data` for the task's data set.
        tick: called with the number of steps done after each step (progress).

    Returns:
        The row written to ``results.jsonl``.

    Raises:
        JobDirError: its checkpoint is corrupt.
    """
    seed, steps, batch = config.seed, config.steps, config.batch()
    rates = config.learning_rates()
    model = TASKS[config.task].model(seed)
    optimizer = make_optimizer(name, model, rates[name], rates["adamw"], seed)
    gen = torch.Generator().manual_seed(seed)  # the same batches for every optimizer
    path = config.out / CHECKPOINTS / f"{name}.pt"
    saved = _load_checkpoint(path)
    losses: list[float] = []
    step_seconds: list[float] = []
    iteration_seconds: list[float] = []
    start = 0
    if saved is not None:
        try:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise JobDirError(
                f"checkpoint {str(path)!r} does not fit {name} on {config.task} ({err}); delete it to "
                "restart that optimizer from step 0"
            ) from err
        gen.set_state(saved["generator"])
        start, losses = int(saved["step"]), list(saved["losses"])
        step_seconds, iteration_seconds = list(saved["step_seconds"]), list(saved["iteration_seconds"])
    x_all, y_all = data.train.x, data.train.y
    diverged = None
    last_save = time.monotonic()
    model.train()
    for step in range(start, steps):
        began = time.perf_counter()
        idx = torch.randint(len(x_all), (batch,), generator=gen)  # [B]
        optimizer.zero_grad(set_to_none=True)
        value = loss(model, x_all[idx], y_all[idx])
        value.backward()
        stepped = time.perf_counter()
        optimizer.step()
        done = time.perf_counter()
        step_seconds.append(done - stepped)
        iteration_seconds.append(done - began)
        losses.append(value.item())
        if not math.isfinite(losses[-1]):
            diverged = step
            break
        if tick is not None:
            tick(step + 1)
        if step + 1 < steps and time.monotonic() - last_save >= CHECKPOINT_SECONDS:
            path.parent.mkdir(exist_ok=True)
            buffer = io.BytesIO()
            state = {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "generator": gen.get_state(), "step": step + 1, "losses": losses,
                "step_seconds": step_seconds, "iteration_seconds": iteration_seconds,
            }  # fmt: skip
            torch.save(state, buffer)
            write_atomic(path, buffer.getvalue())
            last_save = time.monotonic()
    model.eval()
    train = evaluate(model, *data.train_eval) if diverged is None else {"loss": None, "accuracy": None}
    test = evaluate(model, *data.test) if diverged is None else {"loss": None, "accuracy": None}
    sizes = memory_bytes(model, optimizer)
    return {
        "optimizer": name, "lr": rates[name], "steps": len(losses), "diverged_at_step": diverged,
        "train_losses": [v if math.isfinite(v) else None for v in losses],
        "train_loss": train["loss"], "train_accuracy": train["accuracy"], "test_loss": test["loss"],
        "test_accuracy": test["accuracy"], "weight_bytes": sizes["weights"],
        "optimizer_state_bytes": sizes["optimizer_state"], "projector_bytes": sizes["projectors"],
        "state_and_projector_bytes": sizes["optimizer_state"] + sizes["projectors"],
        "total_bytes": sizes["total"],
        "step_ms": 1e3 * sum(step_seconds) / len(step_seconds),
        "iteration_ms": 1e3 * sum(iteration_seconds) / len(iteration_seconds),
        "resumed_from_step": start,
    }  # fmt: skip


def compare(config: CompareConfig, *, progress: bool = True) -> JobResult:
    """Run (or resume) the comparison ``config`` describes; write results, curves and the report.

    Args:
        config: a :class:`CompareConfig` (build one with ``make_config`` to get every mistake at once).
        progress: show rich progress bars.

    Returns:
        A :class:`~gradinfo.core.job.JobResult`: rows in ``config.optimizers`` order, as written to
        ``results.jsonl``; ``computed``: the optimizers trained (or finished from a checkpoint) now;
        ``reused``: those found finished in the folder.

    Raises:
        TypeError: ``config`` is not a ``CompareConfig``.
        JobDirError: the output folder is foreign, made with another config, or corrupt, or a checkpoint in
            it is (nothing in it is overwritten).
    """
    if not isinstance(config, CompareConfig):
        raise TypeError(f"config must be a CompareConfig (see make_config), got {type(config).__name__}")
    began = time.perf_counter()
    with job_lock(config.out):
        done = open_out(config)
        reused = tuple(n for n in config.optimizers if n in done)
        todo = tuple(n for n in config.optimizers if n not in done)
        data = load_data(TASKS[config.task].data, config.seed) if todo else None
        with job_progress(progress) as bar:
            overall = bar.add_task("optimizers", total=len(config.optimizers), completed=len(reused))
            for name in todo:
                steps = bar.add_task(f"  {name}", total=config.steps)
                started = time.perf_counter()
                row = train_one(config, name, data, lambda k, steps=steps: bar.update(steps, completed=k))
                append_row(config.out / RESULTS, row)
                (config.out / CHECKPOINTS / f"{name}.pt").unlink(missing_ok=True)
                done[name] = row
                bar.advance(overall)
                seconds = time.perf_counter() - started
                log_done(
                    bar, f"compare {len(done)}/{len(config.optimizers)}: {name} trained ({seconds:.1f} s)"
                )
                write_report(config, [done[n] for n in config.optimizers if n in done])
        rows = [done[n] for n in config.optimizers]
        report = write_report(config, rows)
        return JobResult(config.out, report, rows, todo, reused, time.perf_counter() - began)
