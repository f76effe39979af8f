"""What a prune run measures of a model, and how it trains a builtin before pruning.

The metric of an LM or a classifier is :func:`gradinfo.tasks.evaluate`'s (perplexity, accuracy); an encoder's
is the MRR x100 of its held-out finance retrieval. Latency per token (per example for classifiers) is the
median wall time of :data:`TIMED_PASSES` forward passes (after one warm-up) over a fixed evaluation batch,
divided by its tokens, on this machine's CPU.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from gradinfo import tasks
from gradinfo.compress.prune.data import Task

TIMED_PASSES = 5
"""Forward passes timed for the latency (their median is reported)."""
TRAIN_LR, TRAIN_BATCH = 3e-3, 16
"""AdamW learning rate and batch size of a builtin's training."""
METRICS: dict[str, str] = {"lm": "perplexity", "classifier": "accuracy", "encoder": "mrr"}
"""The metric of each model kind."""


def forward(model: nn.Module, kind: str, x: Tensor) -> Tensor:
    """The model's output: logits ``[B, T, V]`` (lm), ``[B, K]`` (classifier), or a
    :class:`~gradinfo.compress.gaprune.SentenceEncoder`'s embeddings ``[B, K, D]``."""
    if kind == "lm":
        return model(input_ids=x).logits  # [B, T, V]
    return model(x)


def evaluate(model: nn.Module, task: Task) -> dict[str, float]:
    """The task's metric (:data:`METRICS`) and, for LMs and classifiers, the loss."""
    model.eval()
    metric = METRICS[task.kind]
    if task.kind != "encoder":
        scores = tasks.evaluate(model, *task.evaluation)
        return {"loss": scores["loss"], metric: scores[metric]}
    queries, passages = task.evaluation
    with torch.no_grad():
        q = model(queries[:, None])[:, 0]  # [N, D]
        p = model(passages[:, None])[:, 0]  # [N, D]
    sim = q @ p.T  # [N, N]
    rank = (sim > sim.diag().unsqueeze(1)).sum(1) + 1  # [N]
    return {metric: float((1.0 / rank.double()).mean()) * 100}


def latency(model: nn.Module, task: Task) -> float:
    """Median milliseconds per token (per example for classifiers) of :data:`TIMED_PASSES` forward passes."""
    if task.kind == "lm":
        x = task.evaluation[0][:8]  # [8, T]
        units = x.numel()
    elif task.kind == "classifier":
        x = task.evaluation[0][:256]  # [B, ...]
        units = x.shape[0]
    else:
        x = task.evaluation[0][:16, None]  # [16, 1, T]
        units = x.numel()
    model.eval()
    times = []
    with torch.no_grad():
        for i in range(TIMED_PASSES + 1):
            began = time.perf_counter()
            forward(model, task.kind, x)
            if i:
                times.append(time.perf_counter() - began)
    return 1e3 * statistics.median(times) / units


def measure(model: nn.Module, task: Task) -> dict[str, Any]:
    """Metrics, parameter counts (all, nonzero) and latency of ``model`` on ``task``."""
    params = list(model.parameters())
    counts = {
        "parameters": sum(p.numel() for p in params),
        "nonzero": sum(int(p.count_nonzero()) for p in params),
    }
    return {**evaluate(model, task), **counts, "latency_ms": latency(model, task)}


def train_builtin(model: nn.Module, task: Task, steps: int, seed: int, tick: Callable[[int], None]) -> None:
    """``steps`` seeded AdamW steps (lr :data:`TRAIN_LR`, batch :data:`TRAIN_BATCH`) on the train split."""
    x_all, y_all = task.train
    optimizer = torch.optim.AdamW(model.parameters(), lr=TRAIN_LR)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        idx = torch.randint(len(x_all), (TRAIN_BATCH,), generator=gen)  # [B]
        optimizer.zero_grad(set_to_none=True)
        task.loss(forward(model, task.kind, x_all[idx]), y_all[idx]).backward()
        optimizer.step()
        tick(step + 1)
    model.eval()


def max_difference(a: nn.Module, b: nn.Module, task: Task) -> float:
    """Largest absolute difference of two models' outputs on a few evaluation inputs (for an encoder: ``a``
    is the :class:`~gradinfo.compress.gaprune.SentenceEncoder`, ``b`` the reloaded encoder; their hidden
    states are compared)."""
    x = task.evaluation[0][:4]
    with torch.no_grad():
        if task.kind == "encoder":
            a = a.encoder
            mask = (x != a.config.pad_token_id).long() if a.config.pad_token_id is not None else None
            out_a = a(input_ids=x, attention_mask=mask).last_hidden_state  # [4, T, D]
            out_b = b(input_ids=x, attention_mask=mask).last_hidden_state  # [4, T, D]
            return float((out_a - out_b).abs().max())
        a.eval()
        b.eval()
        return float((forward(a, task.kind, x) - forward(b, task.kind, x)).abs().max())
