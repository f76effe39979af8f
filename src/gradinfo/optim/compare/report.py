"""What a person reads of a comparison: ``curves.png``, ``report.html`` and the command line's summary."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.table import Table

from gradinfo import __version__
from gradinfo.core.job import JobResult
from gradinfo.core.jobdir import write_atomic
from gradinfo.optim.compare.config import CompareConfig
from gradinfo.tasks import TASKS

CURVES, REPORT = "curves.png", "report.html"


def _smooth(values: list[float], width: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= width:
            total -= values[i - width]
        out.append(total / min(i + 1, width))
    return out


def write_report(config: CompareConfig, rows: list[dict[str, Any]]) -> Path:
    """Write ``curves.png`` and ``report.html`` (the figure embedded, a table of every finished optimizer).

    Args:
        config: the comparison.
        rows: the finished optimizers' rows, in ``config.optimizers`` order.

    Returns:
        The path of ``report.html``.
    """
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    width = max(1, config.steps // 50)
    for r in rows:
        curve = [v for v in r["train_losses"] if v is not None]
        ax.plot(range(1, len(curve) + 1), _smooth(curve, width), label=r["optimizer"], linewidth=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel(f"training loss (moving average of {width})")
    ax.set_title(f"{config.task}: training loss per optimizer (seed {config.seed})")
    ax.grid(alpha=0.3)
    if rows:
        ax.legend()
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    png = buffer.getvalue()
    write_atomic(config.out / CURVES, png)

    def fmt(value: Any, digits: int = 4) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    head = ["optimizer", "lr", "train loss", "held-out loss", "held-out accuracy", "state + projectors (MB)",
            "weights (MB)", "optimizer.step() (ms)", "iteration (ms)", "note"]  # fmt: skip
    body = []
    for r in rows:
        note = f"diverged at step {r['diverged_at_step']}" if r["diverged_at_step"] is not None else ""
        cells = [html.escape(r["optimizer"]), f"{r['lr']:g}", fmt(r["train_loss"]), fmt(r["test_loss"]),
                 fmt(r["test_accuracy"], 3), f"{r['state_and_projector_bytes'] / 1e6:.3f}",
                 f"{r['weight_bytes'] / 1e6:.3f}", f"{r['step_ms']:.2f}", f"{r['iteration_ms']:.2f}",
                 note]  # fmt: skip
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    missing = [n for n in config.optimizers if n not in {r["optimizer"] for r in rows}]
    page = [
        "<!doctype html><html><head><meta charset='utf-8'><title>gradinfo compare-optimizers</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222}"
        "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
        "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
        ".note{color:#555}</style></head><body>",
        f"<h1>Optimizer comparison: {html.escape(config.task)}</h1>",
        f"<p class='note'>gradinfo {__version__}; {html.escape(TASKS[config.task].about)}; {config.steps} "
        f"steps of batch {config.batch()}; seed {config.seed}; the same initial weights and batches for "
        "every optimizer. "
        "Train loss: on a fixed training subset after the last step; held-out: the test split. Bytes: every "
        "tensor the optimizer holds (state, projectors), and the model's weights (INT8 codes under "
        "Q-GaLore). "
        "Times are wall-clock means on this machine.</p>",
        f"<img alt='training loss curves' src='data:image/png;base64,{base64.b64encode(png).decode()}'>",
        "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>",
        *body,
        "</table>",
        f"<p class='note'>Not finished yet: {html.escape(', '.join(missing))}.</p>" if missing else "",
        "</body></html>",
    ]
    path = config.out / REPORT
    write_atomic(path, "\n".join(page).encode())
    return path


def summary(result: JobResult) -> list[Any]:
    """What ``gradinfo compare-optimizers`` prints at the end: a table of the optimizers and one line."""
    table = Table("optimizer", "held-out loss", "held-out acc.", "state + proj. MB", "step ms")
    for r in result.rows:
        loss = "diverged" if r["test_loss"] is None else f"{r['test_loss']:.4f}"
        acc = "-" if r["test_accuracy"] is None else f"{r['test_accuracy']:.3f}"
        table.add_row(
            r["optimizer"], loss, acc, f"{r['state_and_projector_bytes'] / 1e6:.3f}", f"{r['step_ms']:.2f}"
        )
    line = (
        f"comparison finished in {result.seconds:.0f} s ({len(result.computed)} optimizers trained, "
        f"{len(result.reused)} reused from an earlier run); report: {result.report}"
    )
    return [table, line]
