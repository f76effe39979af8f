"""Claim check for LLM-Pruner (paper 17): Taylor importance costs far less perplexity than L2 and random.

"LLM-Pruner: On the Structural Pruning of Large Language Models" (Ma et al., 2023), Table 1 (LLaMA-7B,
20% of parameters pruned, no tuning, WikiText2 perplexity): dense 12.62, element-wise Taylor ``|w g|``
(Element1) 19.09, random 27.51, L2 582.41; excess perplexity over dense 6.5 (Taylor) against 14.9 (random),
a ratio of 0.43.

Setting (the paper digest's CPU setting): a tiny ``LlamaForCausalLM`` (hidden 128, 4 layers, 4 heads
without grouping, SwiGLU 512, byte vocabulary) trained 600 AdamW steps on the byte-level ``text`` corpus.
From copies of it, :func:`gradinfo.compress.llm_pruner` removes 30% of the heads and MLP channels
(``floor(0.3 n)``: 1 of 4 heads, 153 of 512 channels) of the middle layers, keeping the first and last as
the paper does, scored by element-wise Taylor ``|w g|`` on 128 calibration windows of 64 bytes, by L2
magnitude, and at random (5 draws); each pruned model then gets the same 50-step LoRA recovery.

Pass (fixed before running, margin from Table 1): with excess perplexity
``e(k) = ppl(pruned by k) - ppl(dense)`` on 64 held-out windows, ``e(taylor) <= 0.5 mean_draws e(random)``
and ``e(taylor) <= 0.5 e(l2)`` (the paper's ratios are 0.43 and 0.01), and after recovery Taylor's
perplexity is at most the mean of random's.

History: an earlier version pruned all four layers on 10 calibration windows with one random draw and judged
ratios of ratios (``r(taylor) <= 0.6 r(random)``, a test the paper's own Table 1 fails: 1.51 / 2.18 = 0.69);
pruning the first and last layers dominated the damage there (seed 0: r = 1.60 Taylor, 1.57 L2, 1.43 random).
"""

from __future__ import annotations

import copy
import math
import statistics

import torch
from torch import nn

from gradinfo.claims import ClaimResult
from gradinfo.compress.llm_pruner import llm_pruner, lm_loss, lora_recover
from gradinfo.datasets import load
from gradinfo.models import tiny_llama

PAPER_EFFECT = (
    "Table 1, LLaMA-7B 20% pruned w/o tune, WikiText2 ppl: dense 12.62, Taylor(Element1) 19.09, "
    "random 27.51, L2 582.41 (excess 6.5 vs 14.9: ratio 0.43)"
)
SLOW = True
BLOCK = 64
BATCH = 16
TRAIN_STEPS = 600
LR = 3e-3
RATIO = 0.3
CALIBRATION = 128
RANDOM_DRAWS = 5
LORA_STEPS = 50
EVAL_WINDOWS = 64
MARGIN = 0.5


def _perplexity(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return math.exp(lm_loss(model(x), y).item())


def check(seed: int = 0) -> ClaimResult:
    """Train, prune with taylor / l2 / random (5 draws), recover each with LoRA, compare excess perplexity."""
    torch.manual_seed(seed)
    train = load("text", split="train", seed=seed, block_size=BLOCK, max_bytes=200_000)
    test = load("text", split="test", seed=seed, block_size=BLOCK, max_bytes=BLOCK * EVAL_WINDOWS + 1)
    x_test, y_test = test.x[:EVAL_WINDOWS], test.y[:EVAL_WINDOWS]  # [N, T]
    model = tiny_llama(
        hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=4, intermediate_size=512, seed=seed
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(TRAIN_STEPS):
        idx = torch.randint(len(train.x), (BATCH,), generator=gen)  # [B]
        optimizer.zero_grad(set_to_none=True)
        lm_loss(model(train.x[idx]), train.y[idx]).backward()
        optimizer.step()
    model.eval()
    dense = _perplexity(model, x_test, y_test)
    calib = torch.randperm(len(train.x), generator=gen)[:CALIBRATION]
    calibration = [(train.x[calib], train.y[calib])]  # [128, 64] windows
    recovery = (train.x, train.y)

    def prune(kind: str, draw: int = 0) -> tuple[float, float]:
        pruned, report = llm_pruner(
            copy.deepcopy(model), calibration, RATIO, importance=kind, seed=seed * RANDOM_DRAWS + draw
        )
        before = _perplexity(pruned, x_test, y_test) - dense
        recovered = lora_recover(pruned, recovery, LORA_STEPS, seed=seed)
        figures["params_kept_fraction"] = report.kept_fraction
        return before, _perplexity(recovered, x_test, y_test)

    figures: dict[str, float] = {"ppl_dense": dense}
    for kind in ("taylor", "l2"):
        figures[f"excess_{kind}"], figures[f"ppl_recovered_{kind}"] = prune(kind)
    draws = [prune("random", d) for d in range(RANDOM_DRAWS)]
    figures["excess_random"] = statistics.mean(e for e, _ in draws)
    figures["excess_random_min"] = min(e for e, _ in draws)
    figures["ppl_recovered_random"] = statistics.mean(r for _, r in draws)
    figures["taylor_over_random"] = figures["excess_taylor"] / figures["excess_random"]
    figures["taylor_over_l2"] = figures["excess_taylor"] / figures["excess_l2"]
    passed = (
        figures["excess_taylor"] <= MARGIN * figures["excess_random"]
        and figures["excess_taylor"] <= MARGIN * figures["excess_l2"]
        and figures["ppl_recovered_taylor"] <= figures["ppl_recovered_random"]
    )
    return ClaimResult(
        method="llm_pruner",
        claim=(
            "30% heads+channels of the middle layers: excess ppl taylor <= 0.5x random (mean of 5 draws) "
            "and <= 0.5x l2; after 50 LoRA steps taylor ppl <= random's mean"
        ),
        passed=bool(passed),
        figures=figures,
        seed=seed,
    )
