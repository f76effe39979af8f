"""``gradinfo compare-optimizers``: train one seeded model with each optimizer and compare, resumably.

Every optimizer trains a fresh copy of the same seeded model on the same seeded mini-batches for ``steps``
steps. Per optimizer the job records the training-loss curve, final metrics (loss on a fixed training
subset, held-out loss and accuracy), the bytes actually held by the optimizer (every tensor in
``optimizer.state``; projectors and INT8 weights where the optimizer keeps them, via
:func:`gradinfo.optim.memory_bytes`) and the mean wall time of ``optimizer.step()`` and of a whole
iteration. Tasks:

==========  ==========================================================================================
tiny-lm     ``tiny_llama`` (hidden 64, 2 layers, byte vocabulary) on the ``text`` corpus, 64-byte windows
mlp-digits  ``mlp(64, 10, hidden=(128, 64))`` on the 8x8 ``digits``
cnn-photos  ``cnn(in_channels=3, image_size=32)`` on 32x32 ``photos`` crops (10 photos, label = photo)
==========  ==========================================================================================

Optimizers: ``adamw`` (``torch.optim.AdamW``), ``diffgrad``, ``sinkgd``, ``galore``, ``qgalore``, ``mfac``
(:mod:`gradinfo.optim`). The methods that treat matrices specially (SinkGD, GaLore, Q-GaLore) get the
papers' split: every ``nn.Linear`` weight but the output head is normalised / projected (Q-GaLore: also
stored INT8), everything else (embeddings, head, norms, biases, convolutions) runs AdamW at the ``adamw``
learning rate of the run.

The output folder holds ``manifest.json`` (the config and its digest, written first), ``results.jsonl``
(one JSON object per finished optimizer, appended, flushed and fsync-ed), ``checkpoints/<optimizer>.pt``
(the model, optimizer, batch-generator state and curve of the optimizer in progress, replaced atomically at
most every :data:`CHECKPOINT_SECONDS`; removed once its line is written), ``curves.png`` and
``report.html``. A rerun with the same config skips finished optimizers and continues an unfinished one
from its checkpoint; a truncated last line is dropped. A non-empty folder without our manifest, another
config's folder, a corrupt line or checkpoint raise :class:`CompareError`, and nothing is overwritten.
"""

from __future__ import annotations

import base64
import html
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from torch import Tensor, nn

from gradinfo import __version__
from gradinfo.core.jobconfig import JobConfigError, OutDir, build_config, choice_field, int_field
from gradinfo.core.jobdir import RESULTS, JobDirError, append_row, open_job_dir, read_rows, write_atomic
from gradinfo.core.progress import job_progress, log_done
from gradinfo.datasets import Dataset, load
from gradinfo.models import cnn, mlp, tiny_llama
from gradinfo.optim.diffgrad import DiffGrad
from gradinfo.optim.galore import GaLoreAdamW, QGaLoreAdamW, memory_bytes, quantize_linears
from gradinfo.optim.mfac import MFAC
from gradinfo.optim.sinkgd import SinkGD

TASKS: dict[str, str] = {
    "tiny-lm": "tiny Llama (hidden 64, 2 layers) on the byte-level text corpus, 64-byte windows",
    "mlp-digits": "MLP 64-128-64-10 on the 8x8 digits",
    "cnn-photos": "LeNet-style CNN on 32x32 RGB crops of 10 photos",
}
"""Task names, with what each trains."""

OPTIMIZERS: dict[str, str] = {
    "adamw": "torch.optim.AdamW",
    "diffgrad": "diffGrad: Adam damped by sigmoid(|g_{t-1} - g_t|)",
    "sinkgd": "SinkGD: stateless row/column normalisation of matrix gradients, AdamW elsewhere",
    "galore": "GaLore: Adam on rank-r projections (SVD every T steps), AdamW elsewhere",
    "qgalore": "Q-GaLore: GaLore with INT4 projectors, lazy refresh, INT8 weights (stochastic rounding)",
    "mfac": "M-FAC: inverse empirical Fisher of the last m gradients (dynamic algorithm)",
}
"""Optimizer names, with what each is."""

DEFAULT_LR: dict[str, dict[str, float]] = {
    "tiny-lm": {"adamw": 3e-3, "diffgrad": 3e-3, "sinkgd": 1e-2, "galore": 1e-2, "qgalore": 1e-2,
                "mfac": 1e-3},
    "mlp-digits": {"adamw": 3e-3, "diffgrad": 3e-3, "sinkgd": 1e-2, "galore": 1e-2, "qgalore": 1e-2,
                   "mfac": 1e-2},
    "cnn-photos": {"adamw": 1e-3, "diffgrad": 1e-3, "sinkgd": 3e-3, "galore": 3e-3, "qgalore": 3e-3,
                   "mfac": 3e-3},
}  # fmt: skip
"""Learning rate of each optimizer per task when ``--lr`` does not set it."""

DEFAULT_BATCH: dict[str, int] = {"tiny-lm": 16, "mlp-digits": 64, "cnn-photos": 32}
RANK, GAP, SCALE = 16, 50, 0.25
"""GaLore / Q-GaLore rank, refresh gap ``T`` and scale ``alpha``."""
NGRADS, DAMPING = 32, 1e-3
"""M-FAC window ``m`` and damping ``lambda``."""
BLOCK, TEXT_BYTES, EVAL_SIZE = 64, 200_000, 512
CHECKPOINT_SECONDS = 30.0
"""The checkpoint of the optimizer in progress is replaced at most this often (and never mid-step)."""
CHECKPOINTS, CURVES, REPORT = "checkpoints", "curves.png", "report.html"
JOB = "compare-optimizers"
_CHECKPOINT_KEYS = ("model", "optimizer", "generator", "step", "losses", "step_seconds", "iteration_seconds")

OPTION = {
    "task": "--task",
    "optimizers": "--optimizers",
    "steps": "--steps",
    "lr": "--lr",
    "batch_size": "--batch-size",
    "seed": "--seed",
    "out": "--out",
}
"""The command-line option of every field, used to name the option in error lines."""


class CompareConfigError(JobConfigError):
    """One or more mistakes in a comparison's inputs; ``lines`` holds one message per mistake."""


class CompareError(JobDirError):
    """The output folder cannot be used: foreign, made with another config, or corrupt."""


# ---------------------------------------------------------------- the config


def _positive_float(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 and not isinstance(text, bool) else None


class CompareConfig(BaseModel):
    """The inputs of ``gradinfo compare-optimizers``; every field is checked when the model is built.

    Attributes:
        task: a name from :data:`TASKS`.
        optimizers: names from :data:`OPTIMIZERS` (a comma-separated string is split), no repeats.
        steps: optimizer steps per optimizer, >= 1.
        lr: learning rates overriding :data:`DEFAULT_LR`: one positive number for every optimizer, or
            ``{name: lr}`` (the string ``"adamw=1e-3,sinkgd=0.03"`` is parsed to that); names must be among
            ``optimizers``.
        batch_size: examples (windows for ``tiny-lm``) per step, >= 1; None: :data:`DEFAULT_BATCH`.
        seed: int >= 0 seeding the model, the data split and the batch order.
        out: the output folder.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)

    task: str = "tiny-lm"
    optimizers: tuple[str, ...] = tuple(OPTIMIZERS)
    steps: int = 200
    lr: float | dict[str, float] | None = None
    batch_size: int | None = None
    seed: int = 0
    out: OutDir = Path("gradinfo-compare")

    _check_task = choice_field("task", TASKS, kind="task")

    @field_validator("optimizers", mode="before")
    @classmethod
    def _check_optimizers(cls, value: Any) -> Any:
        names = tuple(v.strip() for v in value.split(",")) if isinstance(value, str) else value
        if not isinstance(names, (tuple, list)) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"must be comma-separated optimizer names, got {value!r}")
        names = tuple(n for n in names if n)
        if not names:
            raise ValueError(f"give at least one optimizer; valid: {', '.join(OPTIMIZERS)}")
        unknown = [n for n in names if n not in OPTIMIZERS]
        if unknown:
            raise ValueError(
                f"unknown optimizer {', '.join(map(repr, unknown))}; valid: {', '.join(OPTIMIZERS)}"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"optimizers repeat: {', '.join(names)}")
        return names

    _check_steps = int_field("steps", minimum=1)
    _check_batch_size = int_field("batch_size", minimum=1, optional=True)
    _check_seed = int_field("seed", minimum=0)

    @field_validator("lr", mode="before")
    @classmethod
    def _check_lr(cls, value: Any) -> Any:
        if value is None or isinstance(value, dict):
            items = value
        elif isinstance(value, str) and "=" in value:
            items = {}
            for part in value.split(","):
                name, sep, number = part.partition("=")
                if not sep or not name.strip():
                    raise ValueError(
                        f"must be a number or name=number pairs such as adamw=1e-3,mfac=0.01; got {value!r}"
                    )
                items[name.strip()] = number.strip()
        else:
            single = _positive_float(value)
            if single is None:
                raise ValueError(f"must be a positive number or name=number pairs, got {value!r}")
            return single
        if items is None:
            return None
        unknown = [n for n in items if n not in OPTIMIZERS]
        if unknown:
            raise ValueError(
                f"unknown optimizer {', '.join(map(repr, unknown))}; valid: {', '.join(OPTIMIZERS)}"
            )
        bad = [f"{n}={v!r}" for n, v in items.items() if _positive_float(v) is None]
        if bad:
            raise ValueError(f"learning rates must be positive numbers, got {', '.join(bad)}")
        return {n: float(v) for n, v in items.items()}

    @model_validator(mode="after")
    def _check_lr_names(self) -> CompareConfig:
        if isinstance(self.lr, dict):
            extra = [n for n in self.lr if n not in self.optimizers]
            if extra:
                raise ValueError(
                    f"--lr: {', '.join(map(repr, extra))} not among --optimizers "
                    f"({', '.join(self.optimizers)})"
                )
        return self

    def learning_rates(self) -> dict[str, float]:
        """The learning rate of every optimizer in :data:`OPTIMIZERS` for this run (defaults, then ``lr``)."""
        rates = dict(DEFAULT_LR[self.task])
        if isinstance(self.lr, float):
            rates = dict.fromkeys(rates, self.lr)
        elif isinstance(self.lr, dict):
            rates.update(self.lr)
        return rates

    def batch(self) -> int:
        """The batch size of this run."""
        return self.batch_size if self.batch_size is not None else DEFAULT_BATCH[self.task]

    def fingerprint(self) -> dict[str, Any]:
        """Every setting that changes results (all but ``out``), resolved, as JSON-ready values."""
        rates = self.learning_rates()
        return {
            "task": self.task,
            "optimizers": list(self.optimizers),
            "steps": self.steps,
            "lr": {n: rates[n] for n in self.optimizers},
            "adamw_lr_of_other_params": rates["adamw"],
            "batch_size": self.batch(),
            "seed": self.seed,
        }


def make_config(**options: Any) -> CompareConfig:
    """The :class:`CompareConfig` of ``options``, its fields by name (None keeps a field's default).

    Raises:
        CompareConfigError: every mistake at once, one line each, starting with the option it concerns
            (:func:`gradinfo.core.jobconfig.build_config`).
    """
    return build_config(
        CompareConfig, options, job="compare-optimizers", option=OPTION, error=CompareConfigError
    )


# ---------------------------------------------------------------- task, model, optimizer


@dataclass(frozen=True)
class TaskData:
    """Training set, a fixed training subset and the held-out set of a task (inputs ``[N, ...]``)."""

    train: Dataset
    train_eval: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]


def load_task(task: str, seed: int) -> TaskData:
    """The data of ``task`` (offline, seeded); evaluation uses at most :data:`EVAL_SIZE` examples."""
    if task == "tiny-lm":
        train = load("text", split="train", seed=seed, block_size=BLOCK, max_bytes=TEXT_BYTES)
        test = load("text", split="test", seed=seed, block_size=BLOCK, max_bytes=BLOCK * 64 + 1)
        size = 64  # windows of 64 bytes: 4096 next-byte predictions
    else:
        name, options = ("digits", {}) if task == "mlp-digits" else ("photos", {"size": 32})
        train, test = (load(name, split=s, seed=seed, **options) for s in ("train", "test"))
        size = EVAL_SIZE
    return TaskData(train, (train.x[:size], train.y[:size]), (test.x[:size], test.y[:size]))


def build_model(task: str, seed: int) -> nn.Module:
    """A fresh, seeded model for ``task`` (the same weights for every optimizer)."""
    if task == "tiny-lm":
        return tiny_llama(hidden_size=64, num_layers=2, seed=seed)
    if task == "mlp-digits":
        return mlp(64, 10, hidden=(128, 64), seed=seed)
    return cnn(num_classes=10, in_channels=3, image_size=32, seed=seed)


def _logits(model: nn.Module, x: Tensor) -> Tensor:
    if x.dtype == torch.int64:  # byte ids [B, T]
        return model(input_ids=x).logits.flatten(0, 1)  # [B * T, V]
    return model(x)  # [B, K]


def evaluate(model: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x [N, ...], y [N] or [N, T])``."""
    with torch.no_grad():
        logits = _logits(model, x)  # [N', K]
        target = y.flatten()  # [N']
        return float(nn.functional.cross_entropy(logits, target)), float(
            (logits.argmax(-1) == target).float().mean()
        )


def _head(model: nn.Module) -> nn.Module | None:
    if hasattr(model, "get_output_embeddings"):
        return model.get_output_embeddings()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def matrix_layers(model: nn.Module) -> list[str]:
    """Names of the ``nn.Linear`` modules that SinkGD normalises and GaLore projects (all but the head)."""
    head = _head(model)
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and m is not head]


def _split(model: nn.Module, names: list[str]) -> tuple[list[Tensor], list[Tensor]]:
    matrices = [model.get_submodule(n).weight for n in names]
    chosen = {id(p) for p in matrices}
    return matrices, [p for p in model.parameters() if id(p) not in chosen]


def make_optimizer(
    name: str, model: nn.Module, lr: float, adam_lr: float, seed: int
) -> torch.optim.Optimizer:
    """The optimizer ``name`` for ``model`` (Q-GaLore first swaps the matrix layers for INT8 ones, in place).

    Args:
        name: a key of :data:`OPTIMIZERS`.
        model: the model (fresh from :func:`build_model`).
        lr: its learning rate.
        adam_lr: learning rate of the parameters SinkGD / GaLore / Q-GaLore leave to AdamW.
        seed: seeds Q-GaLore's stochastic rounding.
    """
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr)
    if name == "diffgrad":
        return DiffGrad(model.parameters(), lr=lr)
    if name == "mfac":
        return MFAC(model.named_parameters(), lr=lr, ngrads=NGRADS, damping=DAMPING)
    names = matrix_layers(model)
    if name == "sinkgd":
        matrices, rest = _split(model, names)
        return SinkGD(
            [
                {"params": matrices, "lr": lr, "sinkhorn": True},
                {"params": rest, "lr": adam_lr, "sinkhorn": False},
            ]
        )
    common = {"lr": lr, "rank": RANK, "update_proj_gap": GAP, "scale": SCALE}
    if name == "galore":
        matrices, rest = _split(model, names)
        return GaLoreAdamW([{"params": matrices}, {"params": rest, "rank": None, "lr": adam_lr}], **common)
    layers = quantize_linears(model, names, group_size=256)
    matrices, rest = _split(model, names)
    groups = [{"params": matrices}, {"params": rest, "rank": None, "lr": adam_lr}]
    return QGaLoreAdamW(groups, **common, int8_layers=layers, seed=seed)


# ---------------------------------------------------------------- the output folder


def open_out(config: CompareConfig) -> dict[str, dict[str, Any]]:
    """Create or reopen ``config.out``; return the finished rows by optimizer name.

    Raises:
        CompareError: a non-empty folder without our manifest, a manifest of another job or config, or a
            corrupt manifest / results file (other than a truncated last line, which is dropped).
    """
    noun = "optimizer comparison"
    open_job_dir(
        config.out,
        job=JOB,
        noun=noun,
        fingerprint=config.fingerprint(),
        error=CompareError,
    )
    done = read_rows(config.out / RESULTS, "optimizer", set(config.optimizers), noun=noun, error=CompareError)
    for name in done:  # a kill between writing the line and removing the checkpoint
        (config.out / CHECKPOINTS / f"{name}.pt").unlink(missing_ok=True)
    return done


# ---------------------------------------------------------------- training one optimizer


def _load_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        saved = torch.load(path, weights_only=True)
        missing = [k for k in _CHECKPOINT_KEYS if k not in saved]
        if missing:
            raise KeyError(f"missing entries {missing}")
    except Exception as err:  # any unreadable checkpoint gets the same clear error
        raise CompareError(
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
        data: from :func:`load_task`.
        tick: called with the number of steps done after each step (progress).

    Returns:
        The row written to ``results.jsonl``.

    Raises:
        CompareError: its checkpoint is corrupt.
    """
    seed, steps, batch = config.seed, config.steps, config.batch()
    rates = config.learning_rates()
    model = build_model(config.task, seed)
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
            raise CompareError(
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
        loss = nn.functional.cross_entropy(_logits(model, x_all[idx]), y_all[idx].flatten())
        loss.backward()
        stepped = time.perf_counter()
        optimizer.step()
        done = time.perf_counter()
        step_seconds.append(done - stepped)
        iteration_seconds.append(done - began)
        losses.append(loss.item())
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
    train_loss, train_acc = evaluate(model, *data.train_eval) if diverged is None else (None, None)
    test_loss, test_acc = evaluate(model, *data.test) if diverged is None else (None, None)
    sizes = memory_bytes(model, optimizer)
    return {
        "optimizer": name, "lr": rates[name], "steps": len(losses), "diverged_at_step": diverged,
        "train_losses": [v if math.isfinite(v) else None for v in losses],
        "train_loss": train_loss, "train_accuracy": train_acc, "test_loss": test_loss,
        "test_accuracy": test_acc, "weight_bytes": sizes["weights"],
        "optimizer_state_bytes": sizes["optimizer_state"], "projector_bytes": sizes["projectors"],
        "state_and_projector_bytes": sizes["optimizer_state"] + sizes["projectors"],
        "total_bytes": sizes["total"],
        "step_ms": 1e3 * sum(step_seconds) / len(step_seconds),
        "iteration_ms": 1e3 * sum(iteration_seconds) / len(iteration_seconds),
        "resumed_from_step": start,
    }  # fmt: skip


# ---------------------------------------------------------------- report


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
        f"<p class='note'>gradinfo {__version__}; {html.escape(TASKS[config.task])}; {config.steps} steps "
        f"of batch {config.batch()}; seed {config.seed}; the same initial weights and batches for every "
        "optimizer. "
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


# ---------------------------------------------------------------- the job


@dataclass(frozen=True)
class CompareResult:
    """What :func:`compare` did.

    Attributes:
        out: the output folder.
        report: the path of ``report.html``.
        rows: one dict per optimizer, in ``config.optimizers`` order, as written to ``results.jsonl``.
        computed: optimizers trained (or finished from a checkpoint) by this call.
        reused: finished optimizers found in the folder and not retrained.
        seconds: wall time of this call.
    """

    out: Path
    report: Path
    rows: list[dict[str, Any]]
    computed: int
    reused: int
    seconds: float


def compare(config: CompareConfig, *, progress: bool = True) -> CompareResult:
    """Run (or resume) the comparison ``config`` describes; write results, curves and the report.

    Args:
        config: a :class:`CompareConfig` (build one with :func:`make_config` to get every mistake at once).
        progress: show rich progress bars.

    Returns:
        A :class:`CompareResult`.

    Raises:
        TypeError: ``config`` is not a ``CompareConfig``.
        CompareError: the output folder is foreign, made with another config, or corrupt (nothing in it is
            overwritten).
    """
    if not isinstance(config, CompareConfig):
        raise TypeError(f"config must be a CompareConfig (see make_config), got {type(config).__name__}")
    began = time.perf_counter()
    done = open_out(config)
    reused = len(done)
    todo = [n for n in config.optimizers if n not in done]
    data = load_task(config.task, config.seed) if todo else None
    with job_progress(progress) as bar:
        overall = bar.add_task("optimizers", total=len(config.optimizers), completed=reused)
        for name in todo:
            steps = bar.add_task(f"  {name}", total=config.steps)
            started = time.perf_counter()
            row = train_one(config, name, data, lambda k, steps=steps: bar.update(steps, completed=k))
            append_row(config.out / RESULTS, row)
            (config.out / CHECKPOINTS / f"{name}.pt").unlink(missing_ok=True)
            done[name] = row
            bar.advance(overall)
            seconds = time.perf_counter() - started
            log_done(bar, f"compare {len(done)}/{len(config.optimizers)}: {name} trained ({seconds:.1f} s)")
            write_report(config, [done[n] for n in config.optimizers if n in done])
    rows = [done[n] for n in config.optimizers]
    report = write_report(config, rows)
    return CompareResult(config.out, report, rows, len(todo), reused, time.perf_counter() - began)
