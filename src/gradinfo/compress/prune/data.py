"""The data of a prune run: a calibration set's training split, calibration batches and evaluation set.

``text``, ``digits`` and ``mnist1d`` are :mod:`gradinfo.tasks` data sets (:func:`gradinfo.tasks.load_data`);
``finance`` is the job's own: GAPrune's finance query-passage pairs (domain) and stdlib docstring pairs
(general) as InfoNCE batches of :data:`GROUP` in-batch negatives, and :data:`EVAL_PAIRS` held-out finance
pairs for retrieval.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from gradinfo.compress.gaprune import contrastive_batches, info_nce
from gradinfo.compress.llm_pruner import lm_loss
from gradinfo.datasets.pairs import docstring_pairs, finance_pairs
from gradinfo.tasks import KINDS, load_data

CALIBRATIONS: dict[str, str] = {
    **{name: KINDS[name] for name in ("text", "digits", "mnist1d")},
    "finance": "encoder",
}
"""Calibration set names and the kind of model each fits."""

GROUP, EVAL_PAIRS = 4, 128
"""Pairs per InfoNCE batch of the finance set; held-out finance pairs scored by retrieval."""

_LOSSES: dict[str, Callable[[Any, Tensor], Tensor]] = {
    "lm": lm_loss,
    "classifier": nn.functional.cross_entropy,
    "encoder": info_nce,
}


@dataclass(frozen=True)
class Task:
    """The data of one run.

    Attributes:
        kind: the kind of model it fits (``lm``, ``classifier``, ``encoder``).
        train: the training split ``(x [N, ...], y)`` a builtin is trained on; None for ``finance``.
        calibration: the calibration batches ``[(x, y)]`` (``finance``: the domain InfoNCE batches).
        general: ``finance``'s general-domain InfoNCE batches; else None.
        evaluation: ``(x, y)`` held out; ``finance``: ``(query ids [N, T], passage ids [N, T])``.
        loss: ``loss(model output, y)`` of the kind.
    """

    kind: str
    train: tuple[Tensor, Tensor] | None
    calibration: list[tuple[Tensor, Tensor]]
    general: list[tuple[Tensor, Tensor]] | None
    evaluation: Any
    loss: Callable[[Any, Tensor], Tensor]


def load_task(name: str, seed: int, examples: int, tokenizer: Any = None) -> Task:
    """Seeded, offline data of calibration set ``name`` with ``examples`` calibration examples.

    Args:
        name: a :data:`CALIBRATIONS` name.
        seed: seeds the data split and the calibration draw.
        examples: calibration examples (``finance``: pairs, rounded down to whole groups of :data:`GROUP`).
        tokenizer: the encoder's tokenizer (``finance`` only).
    """
    gen = torch.Generator().manual_seed(seed)
    kind = CALIBRATIONS[name]
    if kind != "encoder":
        data = load_data(name, seed)
        x, y = data.train.x, data.train.y
        pick = torch.randperm(len(x), generator=gen)[:examples]  # [examples]
        return Task(kind, (x, y), [(x[pick], y[pick])], None, data.test, _LOSSES[kind])
    usable = examples // GROUP * GROUP
    finance, general_pairs = _text_pairs(seed, usable)
    domain = contrastive_batches(tokenizer, finance[:usable], group=GROUP)
    general = contrastive_batches(tokenizer, general_pairs, group=GROUP)
    held_out = finance[usable : usable + EVAL_PAIRS]
    queries, passages = (
        tokenizer([pair[i] for pair in held_out], padding=True, truncation=True, max_length=64,
                  return_tensors="pt")["input_ids"]
        for i in (0, 1)
    )  # fmt: skip
    return Task(kind, None, domain, general, (queries, passages), _LOSSES[kind])


@functools.cache
def _text_pairs(seed: int, count: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """GAPrune's claim-check pairs: every finance pair, and ``count`` stdlib docstring pairs (parsing the
    stdlib takes seconds, so they are kept for the process)."""
    return finance_pairs(seed), docstring_pairs(seed, count)
