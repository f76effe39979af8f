"""What a comparison runs: the tasks it offers with their default learning rates and batch sizes, and its
config (the single schema of ``compare-optimizers``' options), checked in full before any work starts."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from gradinfo.core.jobconfig import JobConfig, OutDir, choice_field, int_field, names_field, split_names
from gradinfo.optim.compare.optimizers import OPTIMIZERS

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
"""Batch size per task when ``--batch-size`` does not set it."""

TASK_NAMES: tuple[str, ...] = tuple(DEFAULT_BATCH)
"""The tasks of :data:`gradinfo.tasks.TASKS` a comparison offers (the keys of both tables above)."""


def _positive_float(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 and not isinstance(text, bool) else None


def _per_task(values: dict[str, Any]) -> str:
    return "; ".join(f"{task} {value}" for task, value in values.items())


def _rates(rates: dict[str, float]) -> str:
    return ",".join(f"{name}={lr:g}" for name, lr in rates.items())


class CompareConfig(JobConfig):
    """The inputs of ``gradinfo compare-optimizers``; every field is checked when the model is built.

    Attributes:
        task: a name from :data:`TASK_NAMES` (:data:`gradinfo.tasks.TASKS`).
        optimizers: names from :data:`~gradinfo.optim.compare.optimizers.OPTIMIZERS` (a comma-separated
            string is split, empty names dropped), no repeats.
        steps: optimizer steps per optimizer, >= 1.
        lr: learning rates overriding :data:`DEFAULT_LR`: one positive number for every optimizer, or
            ``{name: lr}`` (the string ``"adamw=1e-3,sinkgd=0.03"`` is parsed to that); names must be among
            ``optimizers``.
        batch_size: examples (windows for ``tiny-lm``) per step, >= 1; None: :data:`DEFAULT_BATCH`.
        seed: int >= 0 seeding the model, the data split and the batch order.
        out: the output folder.
    """

    job = "compare-optimizers"

    task: str = Field("tiny-lm", description=f"The task: {', '.join(TASK_NAMES)}.")
    optimizers: tuple[str, ...] = Field(
        tuple(OPTIMIZERS), description=f"Comma-separated: {','.join(OPTIMIZERS)}."
    )
    steps: int = Field(200, description="Optimizer steps per optimizer.")
    lr: float | dict[str, float] | None = Field(
        None,
        description="One learning rate for all, or name=lr pairs (adamw=1e-3,mfac=0.01); default per task: "
        f"{_per_task({t: _rates(r) for t, r in DEFAULT_LR.items()})}.",
    )
    batch_size: int | None = Field(
        None, description=f"Batch size (default per task: {_per_task(DEFAULT_BATCH)})."
    )
    seed: int = Field(0, description="Seed of model, data and batches.")
    out: OutDir = Field(
        Path("gradinfo-compare"), description="Output folder (resumed if it holds this comparison)."
    )

    _check_task = choice_field("task", TASK_NAMES, kind="task")
    _check_optimizers = names_field("optimizers", OPTIMIZERS, kind="optimizer")

    @field_validator("optimizers", mode="before")
    @classmethod
    def _drop_empty_names(cls, value: Any) -> Any:
        """``"adamw,,sinkgd"`` -> ``("adamw", "sinkgd")``; runs before ``_check_optimizers`` (pydantic runs a
        field's before-validators last-defined first)."""
        names = split_names(value)
        if not isinstance(names, tuple) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"must be comma-separated optimizer names, got {value!r}")
        return tuple(n for n in names if n)

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

    def cross_checks(self) -> list[str]:
        """``--lr`` names an optimizer that is not among ``--optimizers``."""
        extra = [n for n in self.lr if n not in self.optimizers] if isinstance(self.lr, dict) else []
        if not extra:
            return []
        return [f"--lr: {', '.join(map(repr, extra))} not among --optimizers ({', '.join(self.optimizers)})"]

    def learning_rates(self) -> dict[str, float]:
        """The learning rate of every optimizer in ``OPTIMIZERS`` for this run (defaults, then ``lr``)."""
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


make_config = CompareConfig.make
"""The :class:`CompareConfig` of keyword options (None keeps a field's default): every mistake at once, one
line each, as :class:`~gradinfo.core.jobconfig.JobConfigError` (:meth:`JobConfig.make
<gradinfo.core.jobconfig.JobConfig.make>`)."""
