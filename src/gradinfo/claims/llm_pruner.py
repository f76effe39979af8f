"""Claim check for LLM-Pruner (paper 17): Taylor importance keeps perplexity better than L2 and random.

"LLM-Pruner: On the Structural Pruning of Large Language Models" (2023). A tiny ``LlamaForCausalLM``
(hidden 64, 4 layers, 8 heads without grouping, SwiGLU 256, byte vocabulary) is trained on the byte-level
``text`` corpus. From copies of it, :func:`gradinfo.compress.llm_pruner` removes 30% of the heads and MLP
channels of layers 1-2 (first and last kept; ``floor(0.3 n)``: 2 of 8 heads, 76 of 256 channels) scored
by element-wise Taylor ``|w g|`` on 10 calibration windows of 64 bytes (the paper's 10 x 64), by L2
magnitude and at random; each pruned model then gets the same short LoRA recovery.

Pass (fixed before running; from the issue): with ``r(k) = ppl(pruned by k) / ppl(original)`` on held-out
windows, ``r(taylor) <= 0.85 r(l2)`` and ``r(taylor) <= 0.6 r(random)``, and after recovery Taylor's
perplexity is the lowest of the three. ``param_mix`` figures are reported beside, not judged.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from gradinfo.claims import ClaimResult
from gradinfo.compress.llm_pruner import llm_pruner, lm_loss, lora_recover
from gradinfo.datasets import load
from gradinfo.models import tiny_llama

SLOW = True
BLOCK = 64
BATCH = 16
TRAIN_STEPS = 200
LR = 3e-3
RATIO = 0.3
LORA_STEPS = 50
EVAL_WINDOWS = 64


def _perplexity(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return math.exp(lm_loss(model(x), y).item())


def check(seed: int = 0) -> ClaimResult:
    """Train, prune with taylor / l2 / random (and param_mix, reported), recover with LoRA, compare."""
    torch.manual_seed(seed)
    train = load("text", split="train", seed=seed, block_size=BLOCK, max_bytes=200_000)
    test = load("text", split="test", seed=seed, block_size=BLOCK, max_bytes=BLOCK * EVAL_WINDOWS + 1)
    x_test, y_test = test.x[:EVAL_WINDOWS], test.y[:EVAL_WINDOWS]  # [N, T]
    model = tiny_llama(
        hidden_size=64, num_layers=4, num_heads=8, num_kv_heads=8, intermediate_size=256, seed=seed
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
    base = _perplexity(model, x_test, y_test)
    calib = torch.randperm(len(train.x), generator=gen)[:10]
    calibration = [(train.x[calib], train.y[calib])]  # 10 windows of 64 bytes
    recovery = (train.x, train.y)
    figures: dict[str, float] = {"ppl_original": base}
    for kind in ("taylor", "param_mix", "l2", "random"):
        pruned, report = llm_pruner(copy.deepcopy(model), calibration, RATIO, importance=kind, seed=seed)
        figures[f"ratio_{kind}"] = _perplexity(pruned, x_test, y_test) / base
        figures["params_kept_fraction"] = report.kept_fraction
        if kind != "param_mix":
            recovered = lora_recover(pruned, recovery, LORA_STEPS, seed=seed)
            figures[f"ppl_recovered_{kind}"] = _perplexity(recovered, x_test, y_test)
    figures["taylor_over_l2"] = figures["ratio_taylor"] / figures["ratio_l2"]
    figures["taylor_over_random"] = figures["ratio_taylor"] / figures["ratio_random"]
    passed = (
        figures["taylor_over_l2"] <= 0.85
        and figures["taylor_over_random"] <= 0.6
        and figures["ppl_recovered_taylor"]
        < min(figures["ppl_recovered_l2"], figures["ppl_recovered_random"])
    )
    return ClaimResult(
        method="llm_pruner",
        claim=(
            "30% heads+channels: ppl ratio taylor <= 0.85x l2 and <= 0.6x random; "
            "taylor lowest ppl after 50 LoRA steps"
        ),
        passed=bool(passed),
        figures=figures,
        seed=seed,
    )
