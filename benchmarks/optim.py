"""Benchmark of gradinfo.optim's diffGrad, SinkGD, GaLore, Q-GaLore, M-FAC vs torch and pytorch-optimizer.

Model: ``gradinfo.models.tiny_llama(hidden_size=256, num_layers=4)`` (4 heads, 2 key/value heads, SwiGLU
width 512, byte vocabulary; 2.5 M parameters), one batch of 8 x 128 bytes from the ``text`` corpus.

What is timed (wall clock, ``time.perf_counter``): one ``optimizer.step()`` with the gradients already in
``p.grad`` (each optimizer has its own model copy with the same initial weights and its own gradients from
one forward/backward, computed once; the same gradients are reused every step). Forward and backward are
not timed: they are the same for every optimizer (Q-GaLore's INT8 layers also dequantise in the forward,
which is not counted here).

- ``torch AdamW``: ``torch.optim.AdamW`` (its default implementation on CPU);
- ``pytorch-optimizer DiffGrad`` / ``gradinfo DiffGrad``: the same hyperparameters;
- ``gradinfo SinkGD``: ``sinkgd_param_groups`` (linear weights normalised with L = 5, the rest AdamW);
- ``pytorch-optimizer GaLore`` / ``gradinfo GaLoreAdamW``: rank 64, T = 200, scale 0.25 on the linear
  weights but the head, AdamW elsewhere;
- ``gradinfo QGaLoreAdamW``: the same plus INT8 linear weights (stochastic rounding), INT4 projectors,
  lazy refresh;
- ``torch SGD`` / ``gradinfo MFAC``: plain SGD, and M-FAC's dynamic algorithm with a window of m = 32
  gradients (damping 1e-3) over all 2.5 M parameters.

The SVD refresh happens in the warm-up (T = 200 is longer than the run), so the GaLore rows are the
steady-state step; an SVD of every linear weight costs extra once per T steps. Each optimizer gets
``--warmup`` untimed steps; then ``--rounds`` rounds step every optimizer once, the starting one rotating
each round. Reported: median and interquartile range over rounds, ratios of medians. Bytes are from
``gradinfo.optim.memory_bytes`` (weights; optimizer state; projectors) after the warm-up. The load average
is printed: on a shared machine (load above the thread count) medians are inflated and ratios noisy.

M-FAC's floor: each step reads the ``[m, d]`` window twice (``G g`` for the new Gram row, then ``G^T c``),
``2 m d`` floats, where SGD reads and writes ``3 d``; the script prints those bytes and the bandwidth-bound
ratio ``2 m / 3`` beside the measured one.

Run: ``.venv/bin/python benchmarks/optim.py [--rounds N] [--warmup N] [--threads T]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import pytorch_optimizer
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from gradinfo.datasets import load
from gradinfo.models import tiny_llama
from gradinfo.optim import (
    MFAC,
    DiffGrad,
    GaLoreAdamW,
    Int8Linear,
    QGaLoreAdamW,
    SinkGD,
    memory_bytes,
    quantize_linears,
    sinkgd_param_groups,
)

LR = 1e-3
RANK, GAP, SCALE = 64, 200, 0.25
NGRADS, DAMPING = 32, 1e-3


def _model() -> nn.Module:
    return tiny_llama(hidden_size=256, num_layers=4, num_heads=4, num_kv_heads=2, seed=0)


def _galore_groups(model: nn.Module, torch_style: bool) -> list[dict]:
    head = model.get_output_embeddings()
    matrices = [m.weight for m in model.modules() if isinstance(m, (nn.Linear, Int8Linear)) and m is not head]
    chosen = {id(p) for p in matrices}
    rest = [p for p in model.parameters() if id(p) not in chosen]
    if torch_style:  # pytorch-optimizer enables projection by the presence of "rank" in a group
        settings = {"rank": RANK, "update_proj_gap": GAP, "scale": SCALE, "projection_type": "std"}
        return [{"params": matrices, **settings}, {"params": rest}]
    return [{"params": matrices}, {"params": rest, "rank": None}]


def _q_galore(model: nn.Module) -> QGaLoreAdamW:
    layers = quantize_linears(model, group_size=256)  # before the forward/backward that fills the grads
    groups = _galore_groups(model, False)
    return QGaLoreAdamW(groups, lr=LR, rank=RANK, update_proj_gap=GAP, scale=SCALE, int8_layers=layers)


CASES: dict[str, Callable[[nn.Module], torch.optim.Optimizer]] = {
    "torch AdamW": lambda m: torch.optim.AdamW(m.parameters(), lr=LR),
    "pytorch-optimizer DiffGrad": lambda m: pytorch_optimizer.DiffGrad(m.parameters(), lr=LR),
    "gradinfo DiffGrad": lambda m: DiffGrad(m.parameters(), lr=LR),
    "gradinfo SinkGD": lambda m: SinkGD(sinkgd_param_groups(m, lr=LR, adam_lr=LR)),
    "pytorch-optimizer GaLore": lambda m: pytorch_optimizer.GaLore(_galore_groups(m, True), lr=LR),
    "gradinfo GaLoreAdamW": lambda m: GaLoreAdamW(
        _galore_groups(m, False), lr=LR, rank=RANK, update_proj_gap=GAP, scale=SCALE
    ),
    "gradinfo QGaLoreAdamW": _q_galore,
    "torch SGD": lambda m: torch.optim.SGD(m.parameters(), lr=LR),
    "gradinfo MFAC": lambda m: MFAC(m.parameters(), lr=LR, ngrads=NGRADS, damping=DAMPING),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(width=150)
    console.print(f"threads {args.threads}, load average before: {os.getloadavg()}")

    data = load("text", split="train", seed=0, block_size=128, max_bytes=8 * 128 + 1)
    x, y = data.x[:8], data.y[:8]  # [B, T], [B, T]
    runs: dict[str, tuple[nn.Module, torch.optim.Optimizer]] = {}
    for name, make in CASES.items():
        model = _model()
        opt = make(model)
        logits = model(input_ids=x).logits  # [B, T, V]
        nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()).backward()
        for _ in range(args.warmup):
            opt.step()
        runs[name] = (model, opt)

    names = list(runs)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            opt = runs[name][1]
            start = time.perf_counter()
            opt.step()
            times[name].append(time.perf_counter() - start)
    console.print(f"load average after: {os.getloadavg()}")

    med = {n: statistics.median(t) * 1e3 for n, t in times.items()}
    iqr = {
        n: (statistics.quantiles(t, n=4)[2] - statistics.quantiles(t, n=4)[0]) * 1e3 for n, t in times.items()
    }
    sizes = {n: memory_bytes(*runs[n]) for n in names}
    adamw_state = sizes["torch AdamW"]["optimizer_state"]
    table = Table(
        "optimizer",
        "step ms (median)",
        "IQR ms",
        "x AdamW",
        "weights MB",
        "state MB",
        "proj. MB",
        "(state+proj) / AdamW state",
    )
    for n in names:
        s = sizes[n]
        table.add_row(
            n,
            f"{med[n]:.2f}",
            f"{iqr[n]:.2f}",
            f"{med[n] / med['torch AdamW']:.2f}",
            f"{s['weights'] / 1e6:.2f}",
            f"{s['optimizer_state'] / 1e6:.2f}",
            f"{s['projectors'] / 1e6:.3f}",
            f"{(s['optimizer_state'] + s['projectors']) / adamw_state:.3f}",
        )
    console.print(table)
    sink_opt = runs["gradinfo SinkGD"][1]
    matrix_state = sum(len(sink_opt.state[p]) for p in sink_opt.param_groups[0]["params"])
    q = sizes["gradinfo QGaLoreAdamW"]
    dim = sum(p.numel() for p in runs["torch SGD"][0].parameters())
    window_mb, sgd_mb = 2 * NGRADS * dim * 4 / 1e6, 3 * dim * 4 / 1e6
    console.print(
        f"SinkGD step / AdamW step = {med['gradinfo SinkGD'] / med['torch AdamW']:.2f} (target <= 1.3); "
        f"matrix state entries = {matrix_state} (target 0)\n"
        f"gradinfo DiffGrad / pytorch-optimizer DiffGrad = "
        f"{med['gradinfo DiffGrad'] / med['pytorch-optimizer DiffGrad']:.2f} (target <= 1.1)\n"
        f"Q-GaLore (state + projectors) / AdamW state = "
        f"{(q['optimizer_state'] + q['projectors']) / adamw_state:.3f} (target <= 0.35)\n"
        f"M-FAC step / SGD step = {med['gradinfo MFAC'] / med['torch SGD']:.2f} at m = {NGRADS} "
        "(target <= 3); "
        f"bytes read per step: M-FAC >= {window_mb:.0f} MB (window twice), SGD {sgd_mb:.0f} MB, "
        f"bandwidth-bound ratio >= {window_mb / sgd_mb:.1f}"
    )


if __name__ == "__main__":
    main()
