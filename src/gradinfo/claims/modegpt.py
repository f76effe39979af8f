"""Claim check for MoDeGPT (paper 19): a working compressed model from forward passes only.

Fixed in advance: the tiny Llama of the optimizer checks (``_tiny_lm``: d = 64, 2 layers, 4 heads, 2 key/value
heads) trained with AdamW (lr 3e-3, 300 steps of 16 x 64 bytes of the ``text`` corpus); calibration: 32
windows of 64 bytes from the train split; evaluation: perplexity on the 64 held-out windows. MoDeGPT with its
defaults (global allocation, epsilon 0.1, ridge 1e-2) at 10% and at 30%. During the compressions
``torch.autograd.backward`` and ``torch.autograd.grad`` are counted and every parameter's ``.grad`` is
checked afterwards. Pass: zero backward calls, no ``.grad`` anywhere, perplexity at 10% <= 2x dense, and
perplexity at 30% finite (reported; no bound is claimed at 30%).

Measured on this CPU (seed 0 / 1): dense perplexity 14.97 / 21.11, at 10% 15.06 / 21.14 (x1.005 / x1.001),
at 30% 15.44 / 18.15 (x1.031 / x0.860).

LLM-Pruner (``gradinfo.compress.llm_pruner``) did not exist when this check was written, so no comparison
is made here.
"""

from __future__ import annotations

import math
from unittest import mock

import torch
from torch import nn

from gradinfo.claims import ClaimResult
from gradinfo.claims._tiny_lm import BLOCK, EVAL_WINDOWS, train
from gradinfo.compress.modegpt import modegpt
from gradinfo.datasets import load

SLOW = True

STEPS, LR, CALIBRATION = 300, 3e-3, 32
BOUND_AT_10 = 2.0


def _perplexity(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        logits = model(input_ids=x).logits  # [B, T, V]
        return math.exp(float(nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())))


def check(seed: int = 0) -> ClaimResult:
    """Train, compress at 10% and 30% while counting backward calls, compare perplexities."""
    trained: list[nn.Module] = []
    train(lambda m: torch.optim.AdamW(m.parameters(), lr=LR), STEPS, seed, prepare=trained.append)
    model = trained[0]
    model.zero_grad(set_to_none=True)
    calib = load("text", split="train", seed=seed + 1, block_size=BLOCK, max_bytes=(BLOCK + 1) * 400)
    ids = calib.x[torch.randperm(len(calib.x), generator=torch.Generator().manual_seed(seed))[:CALIBRATION]]
    test = load("text", split="test", seed=seed, block_size=BLOCK, max_bytes=BLOCK * EVAL_WINDOWS + 1)
    x, y = test.x[:EVAL_WINDOWS], test.y[:EVAL_WINDOWS]  # [N, T]
    dense = _perplexity(model, x, y)
    with (
        mock.patch.object(torch.autograd, "backward", wraps=torch.autograd.backward) as backward,
        mock.patch.object(torch.autograd, "grad", wraps=torch.autograd.grad) as grad,
    ):
        light, report_10 = modegpt(model, ids, 0.1)
        heavy, report_30 = modegpt(model, ids, 0.3)
    calls = backward.call_count + grad.call_count
    grads = sum(p.grad is not None for m in (model, light, heavy) for p in m.parameters())
    ppl_10, ppl_30 = _perplexity(light, x, y), _perplexity(heavy, x, y)
    figures = {
        "dense_perplexity": dense,
        "perplexity_10": ppl_10,
        "perplexity_30": ppl_30,
        "ratio_10": ppl_10 / dense,
        "ratio_30": ppl_30 / dense,
        "compression_10": report_10.compression,
        "compression_30": report_30.compression,
        "backward_calls": calls,
        "params_with_grad": grads,
    }
    passed = calls == 0 and grads == 0 and ppl_10 <= BOUND_AT_10 * dense and math.isfinite(ppl_30)
    return ClaimResult(
        "modegpt",
        "no backward pass (0 autograd calls, no .grad), held-out perplexity at 10% compression <= 2x dense, "
        "finite at 30% (tiny Llama on the text corpus)",
        bool(passed),
        figures,
        seed=seed,
    )
