"""Benchmark of gradinfo.compress (not a test): LLM-Pruner against torch-pruning, per-example Fisher memory.

Part 1, structural pruning of the ``gradinfo prune`` builtin tiny Llama (hidden 64, 4 layers, 8 heads without
grouping, SwiGLU 256, byte vocabulary; seeded, trained ``--train-steps`` AdamW steps on the ``text`` corpus,
64-byte windows). Both pruners get the same trained weights, the same 10 calibration windows of 64 bytes (the
LLM-Pruner paper's 10 x 64) and remove 25% of the attention heads and MLP channels of layers 1-2 (first and
last kept): 2 of 8 heads and 64 of 256 channels in each (at 25% both libraries round to the same counts; at
30% ours floors to 2 heads and 76 channels, torch-pruning rounds to 3 and 77):

- ours: :func:`gradinfo.compress.llm_pruner` with element-wise Taylor ``|w g|`` summed over each coupled
  group (heads: q/k/v rows and o columns; channels: gate/up rows and down column);
- torch-pruning: ``tp.pruner.MetaPruner`` with ``tp.importance.GroupTaylorImportance`` (``|w g|`` summed
  over the group the dependency graph finds), ``num_heads`` for q/k/v so heads go whole
  (``prune_num_heads=True, prune_head_dims=False, head_pruning_ratio=0.25``), ``pruning_ratio=0.25`` for the
  MLP channels, and every other layer (embeddings, head, o/down projections whose outputs are the residual
  stream, layers 0 and 3) ignored; the gradient comes from one backward of the same calibration loss.

Timed (wall clock, ``time.perf_counter``): the whole pruning call including its gradient pass (for
torch-pruning: building the pruner, i.e. its dependency graph, the backward and ``pruner.step()``). Reported:
median and min over ``--rounds`` runs on fresh copies, perplexity on 64 held-out windows of 64 bytes, and
the ratios ours / torch-pruning.

Part 2, the empirical Fisher diagonal of the packaged MiniLM encoder's MLP weights (12 matrices, 7.1M
parameters) under GAPrune's InfoNCE loss on ``--pairs`` finance query-passage examples: the true
per-example Fisher ``(1/N) sum_i g_i^2`` (:func:`gradinfo.compress.scores.fisher_diag`, per-example
gradients in chunks of ``chunk_size`` examples) against the squared batch gradient ``g^2``
(:func:`gradinfo.compress.scores.mean_grad` squared, one backward), which is what many pruning codes use
instead. Each variant runs in its own fresh Python process; peak memory is the growth of the process's
peak resident set (``resource.getrusage(...).ru_maxrss``) over its value after model and data are loaded.
The relative difference ``||F - g^2|| / ||F||`` shows how far the approximation is from the Fisher.

The load average is printed before and after: on a shared machine (load above the core count) the
wall-clock figures are inflated and noisy, memory is not.

Run: ``.venv/bin/python benchmarks/compress.py [--rounds 3] [--train-steps 200] [--pairs 16]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

from gradinfo.compress.llm_pruner import llm_pruner, lm_loss
from gradinfo.datasets import load
from gradinfo.models import tiny_llama

BLOCK, RATIO, CALIBRATION, EVAL_WINDOWS = 64, 0.25, 10, 64
MODEL = {"hidden_size": 64, "num_layers": 4, "num_heads": 8, "num_kv_heads": 8, "intermediate_size": 256}


def trained_llama(steps: int, seed: int = 0) -> tuple[nn.Module, tuple, tuple]:
    """The job's builtin tiny Llama trained ``steps`` steps; calibration pairs and held-out windows."""
    train = load("text", split="train", seed=seed, block_size=BLOCK, max_bytes=200_000)
    test = load("text", split="test", seed=seed, block_size=BLOCK, max_bytes=BLOCK * EVAL_WINDOWS + 1)
    model = tiny_llama(**MODEL, seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(train.x), (16,), generator=gen)  # [B]
        optimizer.zero_grad(set_to_none=True)
        lm_loss(model(train.x[idx]), train.y[idx]).backward()
        optimizer.step()
    model.eval()
    pick = torch.randperm(len(train.x), generator=gen)[:CALIBRATION]
    return model, (train.x[pick], train.y[pick]), (test.x[:EVAL_WINDOWS], test.y[:EVAL_WINDOWS])


def perplexity(model: nn.Module, data: tuple) -> float:
    with torch.no_grad():
        return math.exp(float(lm_loss(model(input_ids=data[0]), data[1])))


def ours(model: nn.Module, calibration: tuple) -> nn.Module:
    return llm_pruner(model, [calibration], RATIO, importance="taylor")[0]


def torch_pruning(model: nn.Module, calibration: tuple) -> nn.Module:
    import torch_pruning as tp

    layers = model.model.layers
    pruned_layers = range(1, len(layers) - 1)
    kept = {id(m) for i in pruned_layers for m in layers[i].modules()}
    ignored = [m for m in model.modules() if isinstance(m, nn.Linear) and id(m) not in kept]
    ignored += [model.model.embed_tokens, model.lm_head]
    ignored += [m for i in pruned_layers for m in (layers[i].self_attn.o_proj, layers[i].mlp.down_proj)]
    heads = {}
    for i in pruned_layers:
        attn = layers[i].self_attn
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            heads[proj] = model.config.num_attention_heads
    pruner = tp.pruner.MetaPruner(
        model,
        example_inputs=calibration[0][:1],
        importance=tp.importance.GroupTaylorImportance(),
        pruning_ratio=RATIO,
        ignored_layers=ignored,
        num_heads=heads,
        prune_num_heads=True,
        prune_head_dims=False,
        head_pruning_ratio=RATIO,
        global_pruning=False,
        unwrapped_parameters=[(p, 0) for n, p in model.named_parameters() if n.endswith("norm.weight")],
    )
    model.zero_grad()
    lm_loss(model(input_ids=calibration[0]), calibration[1]).backward()
    pruner.step()
    model.zero_grad(set_to_none=True)
    return model


def part1(args: argparse.Namespace) -> None:
    model, calibration, test = trained_llama(args.train_steps)
    dense = perplexity(model, test)
    params = sum(p.numel() for p in model.parameters())
    print(
        f"tiny Llama trained {args.train_steps} steps: {params:,} parameters, held-out perplexity {dense:.3f}"
    )
    rows = {}
    for name, run in (("gradinfo llm_pruner", ours), ("torch-pruning MetaPruner", torch_pruning)):
        times, result = [], None
        for _ in range(args.rounds):
            fresh = copy.deepcopy(model)
            began = time.perf_counter()
            result = run(fresh, calibration)
            times.append(time.perf_counter() - began)
        shapes = [
            (l.self_attn.q_proj.out_features, l.mlp.gate_proj.out_features) for l in result.model.layers
        ]
        rows[name] = {
            "median_s": statistics.median(times), "min_s": min(times), "ppl": perplexity(result, test),
            "params": sum(p.numel() for p in result.parameters()), "shapes": shapes,
        }  # fmt: skip
    for name, r in rows.items():
        print(
            f"{name:26s} prune {r['median_s']:.3f} s (min {r['min_s']:.3f}) | perplexity {r['ppl']:.3f} "
            f"(x{r['ppl'] / dense:.3f} of dense) | {r['params']:,} parameters | (q rows, MLP width) per "
            f"layer {r['shapes']}"
        )
    a, b = rows["gradinfo llm_pruner"], rows["torch-pruning MetaPruner"]
    print(
        f"ours / torch-pruning: time x{a['median_s'] / b['median_s']:.2f} "
        f"(min x{a['min_s'] / b['min_s']:.2f}), "
        f"perplexity x{a['ppl'] / b['ppl']:.3f}"
    )


def fisher_worker(kind: str, pairs: int, chunk: int | None) -> None:
    """One Fisher variant in this (fresh) process; prints a JSON line."""
    from transformers import AutoModel, AutoTokenizer

    from gradinfo.compress.gaprune import SentenceEncoder, contrastive_batches, info_nce, prunable_weights
    from gradinfo.compress.scores import fisher_diag, mean_grad
    from gradinfo.datasets.pairs import finance_pairs
    from gradinfo.models import minilm_path

    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    bert = AutoModel.from_pretrained(path, local_files_only=True, attn_implementation="eager").eval()
    model = SentenceEncoder(bert, pad_id=tokenizer.pad_token_id)
    batches = contrastive_batches(tokenizer, finance_pairs(0)[:pairs], group=4, batch_size=pairs)
    names = prunable_weights(model, "mlp")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.perf_counter()
    if kind == "fisher":
        f = fisher_diag(model, batches, info_nce, params=names, chunk_size=chunk)
    else:
        g = mean_grad(model, batches, info_nce, params=names)
        f = {n: v.square() for n, v in g.items()}
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    flat = torch.cat([v.reshape(-1) for v in f.values()])
    torch.save(flat, f"/tmp/gradinfo-bench-fisher-{kind}-{chunk}.pt")
    numel = sum(v.numel() for v in f.values())
    print(json.dumps({"seconds": seconds, "peak_mib": (peak - base) / 1024, "params": numel}))


def part2(args: argparse.Namespace) -> None:
    variants = [("fisher", c) for c in (2, 8)] + [("squared_batch_grad", None)]
    results = {}
    for kind, chunk in variants:
        command = [sys.executable, __file__, "--fisher-worker", kind, "--pairs", str(args.pairs)]
        command += ["--chunk", str(chunk)] if chunk else []
        out = (
            subprocess.run(command, capture_output=True, text=True, check=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        results[(kind, chunk)] = json.loads(out)
    exact = torch.load("/tmp/gradinfo-bench-fisher-fisher-2.pt")
    approx = torch.load("/tmp/gradinfo-bench-fisher-squared_batch_grad-None.pt")
    same = torch.load("/tmp/gradinfo-bench-fisher-fisher-8.pt")
    n = results[("fisher", 2)]["params"]
    print(f"MiniLM MLP weights ({n:,} parameters), {args.pairs} finance examples (5 texts each):")
    for (_, chunk), r in results.items():
        label = f"per-example Fisher, chunk {chunk}" if chunk else "squared batch gradient"
        print(f"  {label:32s} {r['seconds']:.2f} s, peak RSS growth {r['peak_mib']:.0f} MiB")
    fisher, squared = results[("fisher", 8)], results[("squared_batch_grad", None)]
    print(
        f"  Fisher (chunk 8) / squared batch gradient: time x{fisher['seconds'] / squared['seconds']:.1f}, "
        f"peak memory x{fisher['peak_mib'] / max(squared['peak_mib'], 1):.1f}; chunks 2 and 8 agree to "
        f"{float((exact - same).norm() / exact.norm()):.1e} (relative); "
        f"||F - g^2|| / ||F|| = {float((exact - approx).norm() / exact.norm()):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=None)
    parser.add_argument("--fisher-worker", default=None)
    parser.add_argument("--part", choices=("1", "2", "both"), default="both")
    args = parser.parse_args()
    if args.fisher_worker:
        fisher_worker(args.fisher_worker, args.pairs, args.chunk)
        return
    threads = torch.get_num_threads()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, torch threads {threads}")
    if args.part in ("1", "both"):
        part1(args)
    print(f"load average {os.getloadavg()[0]:.1f}")
    if args.part in ("2", "both"):
        part2(args)
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
