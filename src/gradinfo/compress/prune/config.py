"""The options of ``gradinfo prune``: :class:`PruneConfig`; each field's help is formatted from the tables."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from gradinfo.compress.llm_pruner import IMPORTANCES
from gradinfo.compress.prune.data import CALIBRATIONS
from gradinfo.compress.prune.methods import DEFAULT_IMPORTANCE, METHODS
from gradinfo.compress.prune.models import BUILTINS, KIND_NAMES, LAYOUTS, trained
from gradinfo.core.jobconfig import JobConfig, OutDir, choice_field, int_field

TRAIN_STEPS = 200
"""AdamW steps a builtin model is trained for before pruning, unless ``--train-steps`` says otherwise."""


def _names(names: Iterable[str]) -> str:
    return " or ".join(names)


_STRUCTURAL = [m.name for m in METHODS.values() if m.structural]
_IMPORTANCE = [m.name for m in METHODS.values() if m.importance]


class PruneConfig(JobConfig):
    """The inputs of ``gradinfo prune``; each field is checked on its own, then :meth:`cross_checks`.

    Checks that need the model loaded are :func:`~gradinfo.compress.prune.checks.check_model`'s.
    """

    job = "prune"

    model: str = Field(
        "tiny-llama",
        description=f"A builtin ({', '.join(BUILTINS)}), a Hugging Face folder or cached id, or "
        "'module:factory'.",
    )
    method: str = Field("llm_pruner", description=f"{', '.join(METHODS)}.")
    ratio: float = Field(0.3, description="Share removed, in (0, 1).")
    calibration: str | None = Field(
        None,
        description=f"{', '.join(CALIBRATIONS)} (default: the builtin's own, else the method's: "
        f"{', '.join(f'{m.name} {m.calibration}' for m in METHODS.values())}).",
    )
    importance: str | None = Field(
        None,
        description=f"{_names(_IMPORTANCE)} only: {', '.join(IMPORTANCES)} (default: {DEFAULT_IMPORTANCE}).",
    )
    lora_steps: int = Field(0, description=f"LoRA recovery steps after {_names(_STRUCTURAL)} (0: none).")
    train_steps: int | None = Field(
        None,
        description=f"Builtins only: training steps before pruning (default: {TRAIN_STEPS}; 0: random init).",
    )
    examples: int | None = Field(
        None,
        description="Calibration examples (default per method: "
        f"{', '.join(f'{m.name} {m.examples}' for m in METHODS.values())}).",
    )
    seed: int = Field(0, description="Seed of model, training and calibration.")
    out: OutDir = Field(
        Path("gradinfo-prune"), description="Output folder (a finished run is returned as is)."
    )

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        looks_external = ":" in value or "/" in value or Path(value).expanduser().is_dir()
        if value not in BUILTINS and not looks_external:
            raise ValueError(
                f"unknown builtin model {value!r}; builtins: {', '.join(BUILTINS)}; or give a Hugging Face "
                "folder or id, or a 'module:factory' string"
            )
        return value

    _check_method = choice_field("method", METHODS, kind="method")

    @field_validator("ratio", mode="before")
    @classmethod
    def _check_ratio(cls, value: Any) -> Any:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(value, bool) or not 0 < number < 1:
            raise ValueError(f"must be a number in (0, 1) (the share removed), got {value!r}")
        return number

    _check_calibration = choice_field("calibration", CALIBRATIONS, kind="calibration dataset")
    _check_importance = choice_field("importance", IMPORTANCES, kind="importance")
    _check_count = int_field("lora_steps", "seed", minimum=0)
    _check_train_steps = int_field("train_steps", minimum=0, optional=True)
    _check_examples = int_field("examples", minimum=1, optional=True)

    def dataset(self) -> str:
        """The calibration set of this run (when not given: the builtin's own, else the method's default)."""
        if self.calibration is not None:
            return self.calibration
        builtin = BUILTINS.get(self.model)
        return builtin.calibration if builtin is not None else METHODS[self.method].calibration

    def fingerprint(self) -> dict[str, Any]:
        """Every setting that changes results (all but ``out``), resolved, as JSON-ready values."""
        method = METHODS[self.method]
        return {
            "model": self.model,
            "method": self.method,
            "ratio": self.ratio,
            "calibration": self.dataset(),
            "importance": (self.importance or DEFAULT_IMPORTANCE) if method.importance else None,
            "lora_steps": self.lora_steps,
            "train_steps": (TRAIN_STEPS if self.train_steps is None else self.train_steps)
            if trained(self.model)
            else 0,
            "examples": self.examples or method.examples,
            "seed": self.seed,
        }

    def cross_checks(self) -> list[str]:
        """Method against model kind and calibration set, options that only some methods take."""
        return self._fit_checks() + self._option_checks()

    def _fit_checks(self) -> list[str]:
        method, data = METHODS[self.method], self.dataset()
        kind, prunes = CALIBRATIONS[data], " or ".join(KIND_NAMES[k] for k in METHODS[self.method].kinds)
        builtin, lines = BUILTINS.get(self.model), []
        if kind not in method.kinds and not (
            builtin is not None and builtin.kind not in method.kinds and self.calibration is None
        ):
            fits = " or ".join(repr(c) for c, k in CALIBRATIONS.items() if k in method.kinds)
            lines.append(
                f"--calibration: {method.name} prunes {prunes}, but {data!r} is a {KIND_NAMES[kind]} "
                f"dataset; use {fits}"
            )
        if builtin is None:
            return lines
        if builtin.kind not in method.kinds:
            fits = ", ".join(b for b, spec in BUILTINS.items() if spec.kind in method.kinds)
            lines.append(
                f"--model: {method.name} cannot prune {self.model!r} (a {KIND_NAMES[builtin.kind]}); it "
                f"prunes {prunes}, e.g. {fits}"
            )
        elif builtin.kind != kind and kind in method.kinds:
            fits = " or ".join(repr(c) for c, k in CALIBRATIONS.items() if k == builtin.kind)
            lines.append(
                f"--calibration: {data!r} does not fit {self.model!r} (a {KIND_NAMES[builtin.kind]}); "
                f"use {fits}"
            )
        elif method.layouts and builtin.layout not in method.layouts:
            needs = " or ".join(f"{LAYOUTS[n][0]} ({LAYOUTS[n][1]})" for n in method.layouts)
            fits = " or ".join(repr(b) for b, spec in BUILTINS.items() if spec.layout in method.layouts)
            lines.append(
                f"--model: {method.name} needs {needs}; {self.model!r} has {LAYOUTS[builtin.layout][1]}: "
                f"use {fits}"
            )
        if self.train_steps is not None and not trained(self.model):
            lines.append(f"--train-steps: {self.model!r} is pretrained and not trained by this job; drop it")
        return lines

    def _option_checks(self) -> list[str]:
        method, lines = METHODS[self.method], []
        if self.train_steps is not None and self.model not in BUILTINS:
            lines.append(
                "--train-steps: only builtin models are trained by this job; your model is used as loaded"
            )
        if self.importance is not None and not method.importance:
            lines.append(
                f"--importance: only {_names(_IMPORTANCE)} takes an importance kind, not {method.name}; "
                "drop it"
            )
        if self.lora_steps and not method.structural:
            lines.append(
                "--lora-steps: LoRA recovery merges a dense update that would refill the weights "
                f"{method.name} zeroed; use it with {_names(_STRUCTURAL)}"
            )
        least, unit = method.min_examples
        if self.examples is not None and self.examples < least:
            lines.append(f"--examples: {method.name} needs at least {least} {unit}")
        return lines
