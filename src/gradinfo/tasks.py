"""Named tasks the jobs share: offline data, a seeded model builder and the metric they are scored by.

A job that trains or scores a model on a builtin setting (``compare-optimizers --task``, ``prune --model``,
and the jobs to come) picks it here by name, so the same name means the same data, model and metric in every
job. Data sets (:data:`DATA`) are built offline and seeded by :func:`load_data`; tasks (:data:`TASKS`) pair
one with a model builder:

===========  =============  =====================================================================  ==========
task         data           model                                                                  metric
===========  =============  =====================================================================  ==========
tiny-lm      text           ``tiny_llama`` hidden 64, 2 layers (byte vocabulary)                   perplexity
tiny-llama   text           ``tiny_llama`` hidden 64, 4 layers, 8 heads, SwiGLU 256                 perplexity
tiny-gpt2    text           ``tiny_gpt2`` hidden 64, 4 layers, 8 heads                              perplexity
mlp-digits   digits         ``mlp`` 64-128-64-10                                                   accuracy
cnn-photos   photos         ``cnn`` on 32x32 RGB crops of 10 photos                                accuracy
===========  =============  =====================================================================  ==========

Text is the byte-level ``text`` corpus (Python stdlib sources) in windows of :data:`BLOCK` bytes, scored on
:data:`TEXT_EVAL_WINDOWS` held-out windows; classification sets are scored on at most :data:`EVAL_EXAMPLES`
held-out examples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from gradinfo.datasets import Dataset, load
from gradinfo.models import cnn, mlp, tiny_gpt2, tiny_llama

BLOCK, TEXT_BYTES, TEXT_EVAL_WINDOWS, EVAL_EXAMPLES = 64, 200_000, 64, 512

DATA: dict[str, str] = {
    "text": "byte-level text corpus (Python stdlib sources), 64-byte windows",
    "digits": "scikit-learn 8x8 digits [N, 1, 8, 8], 10 classes",
    "mnist1d": "MNIST-1D [N, 40], 10 classes",
    "photos": "32x32 RGB crops of 10 photos, label = photo",
}
"""Data set names, with what each holds."""

KINDS: dict[str, str] = {
    "text": "lm",
    "digits": "classifier",
    "mnist1d": "classifier",
    "photos": "classifier",
}
"""The kind of model each data set trains: ``lm`` (next-byte prediction) or ``classifier``."""


@dataclass(frozen=True)
class TaskData:
    """A data set's training split, a fixed training subset and the held-out evaluation set.

    Attributes:
        train: the whole training split (inputs ``[N, ...]``; text: byte windows ``[N, T]``, targets
            ``[N, T]``).
        train_eval: the first evaluation-sized slice of ``train`` (loss on a fixed training subset).
        test: the held-out evaluation inputs and targets.
    """

    train: Dataset
    train_eval: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]


def load_data(name: str, seed: int) -> TaskData:
    """The data set ``name`` (:data:`DATA`), offline and seeded.

    Raises:
        ValueError: unknown ``name``.
    """
    if name == "text":
        train = load("text", split="train", seed=seed, block_size=BLOCK, max_bytes=TEXT_BYTES)
        max_bytes = BLOCK * TEXT_EVAL_WINDOWS + 1
        test = load("text", split="test", seed=seed, block_size=BLOCK, max_bytes=max_bytes)
        size = TEXT_EVAL_WINDOWS  # 64 windows of 64 bytes: 4096 next-byte predictions
    elif name in DATA:
        options = {"size": 32} if name == "photos" else {}
        train, test = (load(name, split=s, seed=seed, **options) for s in ("train", "test"))
        size = EVAL_EXAMPLES
    else:
        raise ValueError(f"unknown data set {name!r}; valid: {', '.join(DATA)}")
    return TaskData(train, (train.x[:size], train.y[:size]), (test.x[:size], test.y[:size]))


@dataclass(frozen=True)
class Task:
    """A named task: a data set, a seeded model builder with its arguments, and what it is.

    Attributes:
        name: the task's name (:data:`TASKS`).
        data: its data set (:data:`DATA`).
        build: the model builder, called as ``build(**kwargs, seed=seed)``.
        kwargs: the builder's arguments (JSON-ready: a job records them to rebuild the model).
        about: the task in words.
    """

    name: str
    data: str
    build: Callable[..., nn.Module]
    kwargs: dict[str, Any] = field(default_factory=dict)
    about: str = ""

    @property
    def kind(self) -> str:
        """``lm`` or ``classifier``."""
        return KINDS[self.data]

    @property
    def metric(self) -> str:
        """``perplexity`` (lm) or ``accuracy`` (classifier)."""
        return "perplexity" if self.kind == "lm" else "accuracy"

    def model(self, seed: int | None) -> nn.Module:
        """A fresh model, seeded (same seed, same weights); ``seed=None`` leaves torch's RNG as it is."""
        return self.build(**_arguments(self.kwargs), seed=seed)


def _arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


_LLAMA = {"hidden_size": 64, "num_layers": 4, "num_heads": 8, "num_kv_heads": 8, "intermediate_size": 256}
TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("tiny-lm", "text", tiny_llama, {"hidden_size": 64, "num_layers": 2},
             "tiny Llama (hidden 64, 2 layers) on the byte-level text corpus, 64-byte windows"),
        Task("tiny-llama", "text", tiny_llama, _LLAMA,
             "LlamaForCausalLM, hidden 64, 4 layers, 8 heads, SwiGLU 256, byte vocabulary"),
        Task("tiny-gpt2", "text", tiny_gpt2, {"hidden_size": 64, "num_layers": 4, "num_heads": 8},
             "GPT2LMHeadModel, hidden 64, 4 layers, 8 heads, byte vocabulary"),
        Task("mlp-digits", "digits", mlp, {"in_features": 64, "num_classes": 10, "hidden": [128, 64]},
             "MLP 64-128-64-10 on the 8x8 digits"),
        Task("cnn-photos", "photos", cnn, {"num_classes": 10, "in_channels": 3, "image_size": 32},
             "LeNet-style CNN on 32x32 RGB crops of 10 photos"),
    )
}  # fmt: skip
"""Task names, each a data set and a seeded model builder."""


def logits(model: nn.Module, x: Tensor) -> Tensor:
    """The model's logits, flattened over positions for byte windows: ``[B * T, V]`` or ``[B, K]``."""
    if x.dtype == torch.int64:  # byte ids [B, T]
        return model(input_ids=x).logits.flatten(0, 1)  # [B * T, V]
    return model(x)  # [B, K]


def loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy of ``model`` on ``(x, y)``: next-byte for windows, class for examples."""
    return nn.functional.cross_entropy(logits(model, x), y.flatten())


def evaluate(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, float]:
    """Loss, accuracy and perplexity (``exp(loss)``) of ``model`` on ``(x [N, ...], y [N] or [N, T])``."""
    with torch.no_grad():
        out = logits(model, x)  # [N', K]
        target = y.flatten()  # [N']
        value = float(nn.functional.cross_entropy(out, target))
        accuracy = float((out.argmax(-1) == target).float().mean())
    return {"loss": value, "accuracy": accuracy, "perplexity": math.exp(value)}
