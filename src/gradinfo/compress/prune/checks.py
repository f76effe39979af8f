"""The checks of a loaded model against a prune config, run before any work."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gradinfo.compress.prune.config import PruneConfig
from gradinfo.compress.prune.data import CALIBRATIONS
from gradinfo.compress.prune.methods import METHODS
from gradinfo.compress.prune.models import BUILTINS, KIND_NAMES, model_kind
from gradinfo.core.jobconfig import JobConfigError
from gradinfo.datasets import load


def check_model(config: PruneConfig, model: nn.Module, tokenizer: Any = None) -> None:
    """Check that ``config.method`` can prune ``model`` on ``config.dataset()``, before any work.

    The model's kind is its builtin row's, else what ``transformers`` declares of it
    (:func:`~gradinfo.compress.prune.models.model_kind`).

    Raises:
        JobConfigError: one line per problem (a kind the method cannot prune, a model that does not fit the
            calibration data, layers the method cannot prune).
    """
    builtin = BUILTINS.get(config.model)
    kind = builtin.kind if builtin is not None else model_kind(model)
    method, data = METHODS[config.method], config.dataset()
    data_kind = CALIBRATIONS[data]
    if kind not in method.kinds:
        lines = [
            f"--model: {method.name} cannot prune {type(model).__name__} (a {KIND_NAMES[kind]}); it prunes "
            f"{' or '.join(KIND_NAMES[k] for k in method.kinds)}"
        ]
    elif kind != data_kind:
        fits = " or ".join(repr(c) for c, k in CALIBRATIONS.items() if k == kind)
        lines = [
            f"--calibration: {data!r} is {KIND_NAMES[data_kind]} data, the model is a {KIND_NAMES[kind]}; "
            f"use {fits}"
        ]
    else:
        lines = _fit(model, kind, data, config.seed) + method.check(model, kind, tokenizer)
    if lines:
        raise JobConfigError(lines)


def _fit(model: nn.Module, kind: str, data: str, seed: int) -> list[str]:
    """Whether the model takes the calibration set's inputs and gives outputs of the right shape."""
    if kind == "lm":
        vocab = getattr(model.config, "vocab_size", 0)
        if vocab < 256:
            return [f"--model: the text set holds byte ids 0-255, the model's vocabulary is {vocab}"]
    if kind != "classifier":
        return []
    test = load(data, split="test", seed=seed)
    try:
        with torch.no_grad():
            logits = model(test.x[:2])
        ok = isinstance(logits, Tensor) and logits.shape == (2, len(test.classes))
        problem = "" if ok else f"it returned {getattr(logits, 'shape', type(logits).__name__)}"
    except Exception as err:  # any failure of the user's forward is reported as one line
        problem = f"its forward failed ({type(err).__name__}: {str(err).splitlines()[0][:120]})"
    if not problem:
        return []
    return [
        f"--model: on {data!r} inputs {tuple(test.x.shape[1:])} the model must return logits "
        f"[B, {len(test.classes)}]; {problem}"
    ]
