"""Claim check for MoDeGPT (paper 19): without a backward pass, as good as gradient-based structured pruning.

"MoDeGPT: Modular Decomposition for Large Language Model Compression" (Lin et al., ICLR 2025), abstract: with
no backward propagation it "matches or surpasses previous structured compression methods that rely on
gradient information" and keeps 90-95% of zero-shot performance at 25-30% compression (Llama-2/3, OPT).

Setting: a tiny Llama (``_tiny_lm``: hidden 128, 4 layers, 4 heads over 2 key/value heads, SwiGLU 256)
trained 600 AdamW steps (lr 3e-3) on 16 x 64 bytes of the ``text`` corpus, so that removing structure costs
perplexity (an earlier version trained hidden 64 for 300 steps, and 30% compression lowered perplexity at
seed 1: 21.11 -> 18.15). Calibration: 32 windows of 64 bytes; evaluation: perplexity on 64 held-out windows.
MoDeGPT with its defaults (global allocation, epsilon 0.1, ridge 1e-2) removes 30% of the decoder layers'
linear parameters; at the same compression (45% of every layer's MLP channels = 29.9% of those parameters)
LLM-Pruner removes the channels of lowest Taylor ``|w g|`` on the same calibration windows, and a random
structured baseline removes random channels (mean of 5 draws); none is fine-tuned afterwards.

Pass (fixed before running): during MoDeGPT ``torch.autograd.backward``/``grad`` are never called and no
parameter gets a ``.grad``; with excess perplexity ``e = ppl - ppl(dense)``, ``e(modegpt) <= e(taylor)``
(the paper's "matches or surpasses") and ``e(modegpt) <= 0.5 e(random)``.
"""

from __future__ import annotations

import copy
import math
import statistics
from unittest import mock

import torch
from torch import nn

from gradinfo.claims import ClaimResult
from gradinfo.claims._tiny_lm import BLOCK, EVAL_WINDOWS, train
from gradinfo.compress.llm_pruner import llm_pruner
from gradinfo.compress.modegpt import modegpt
from gradinfo.datasets import load

PAPER_EFFECT = (
    "abstract: no backward pass, matches or surpasses gradient-based structured compression; "
    "90-95% zero-shot kept at 25-30% compression (Llama-2/3, OPT)"
)
SLOW = True

STEPS, LR, CALIBRATION = 600, 3e-3, 32
HIDDEN, LAYERS = 128, 4
RATIO = 0.3
CHANNEL_RATIO = 0.45
RANDOM_DRAWS = 5


def _perplexity(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        logits = model(input_ids=x).logits  # [B, T, V]
        return math.exp(float(nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())))


def check(seed: int = 0) -> ClaimResult:
    """Train, compress by MoDeGPT (counting backward calls), by Taylor and random channels; compare."""
    trained: list[nn.Module] = []
    train(
        lambda m: torch.optim.AdamW(m.parameters(), lr=LR),
        STEPS,
        seed,
        hidden_size=HIDDEN,
        num_layers=LAYERS,
        prepare=trained.append,
    )
    model = trained[0].eval()
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
        compressed, report = modegpt(model, ids, RATIO)
    calls = backward.call_count + grad.call_count
    grads = sum(p.grad is not None for m in (model, compressed) for p in m.parameters())

    def channels(kind: str, draw: int = 0) -> float:
        pruned, _ = llm_pruner(
            copy.deepcopy(model),
            [ids],
            CHANNEL_RATIO,
            importance=kind,
            layers=list(range(LAYERS)),
            prune=("channels",),
            seed=seed * RANDOM_DRAWS + draw,
        )
        return _perplexity(pruned, x, y) - dense

    figures = {
        "ppl_dense": dense,
        "excess_modegpt": _perplexity(compressed, x, y) - dense,
        "compression_modegpt": report.compression,
        "backward_calls": calls,
        "params_with_grad": grads,
    }
    figures["excess_taylor"] = channels("taylor")
    figures["excess_random"] = statistics.mean(channels("random", d) for d in range(RANDOM_DRAWS))
    passed = (
        calls == 0
        and grads == 0
        and figures["excess_modegpt"] <= figures["excess_taylor"]
        and figures["excess_modegpt"] <= 0.5 * figures["excess_random"]
    )
    return ClaimResult(
        "modegpt",
        "30% compression, no backward pass: excess ppl modegpt <= Taylor channel pruning and <= 0.5x random "
        "channels (mean of 5 draws) at the same parameter count",
        bool(passed),
        figures,
        seed=seed,
    )
