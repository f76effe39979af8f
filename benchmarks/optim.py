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
each round. Reported: median and interquartile range over rounds, ratios of medians (and, for the target
ratios, the ratio of median thread CPU times, which waiting for a core under load does not inflate).
Bytes are from ``gradinfo.optim.memory_bytes`` (weights; optimizer state; projectors) after the warm-up.
The load average is printed: on a shared machine (load above the thread count) medians are inflated and
ratios noisy.

M-FAC's floor: each step reads the ``[m, d]`` window twice (``G g`` for the new Gram row, then ``G^T c``),
``2 m d`` floats, where SGD reads and writes ``3 d``; the script prints those bytes and the bandwidth-bound
ratio ``2 m / 3`` beside the measured one, and times two plain reads of M-FAC's window (``sum`` of every
row, twice) in the same rounds: the step cannot be faster than that on this machine (the window, 320 MB
here, streams from memory while SGD's 30 MB may sit in cache, so the measured floor ratio can exceed
``2 m / 3``).

Full iteration: the optimizer step alone cannot show what a user pays, so ``torch AdamW``, ``torch SGD`` and
``gradinfo MFAC`` are also timed over a whole training iteration (``zero_grad``, forward and backward on the
same batch, ``step``; ``--warmup`` untimed iterations, then ``--rounds`` interleaved rounds, as above). The
M-FAC paper reports its overhead this way; the script prints M-FAC iteration / SGD iteration next to the
step-only ratio.

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
from gradinfo.transform.optimizer import STATE_KEY

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
    cpu_times: dict[str, list[float]] = {n: [] for n in names}  # thread CPU time: less inflated by load
    window = runs["gradinfo MFAC"][1].state[STATE_KEY]["rows"]  # m tensors [d]
    window_reads: list[float] = []
    for r in range(args.rounds):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            opt = runs[name][1]
            start, cpu_start = time.perf_counter(), time.thread_time()
            opt.step()
            times[name].append(time.perf_counter() - start)
            cpu_times[name].append(time.thread_time() - cpu_start)
        start = time.perf_counter()
        for _ in range(2):
            for row in window:
                row.sum()
        window_reads.append(time.perf_counter() - start)

    iter_names = ["torch AdamW", "torch SGD", "gradinfo MFAC"]
    iter_times: dict[str, list[float]] = {n: [] for n in iter_names}
    for _ in range(args.warmup):
        for name in iter_names:
            _iteration(*runs[name], x, y)
    for r in range(args.rounds):
        for k in range(len(iter_names)):
            name = iter_names[(r + k) % len(iter_names)]
            start = time.perf_counter()
            _iteration(*runs[name], x, y)
            iter_times[name].append(time.perf_counter() - start)
    console.print(f"load average after: {os.getloadavg()}")

    med, iqr = _median_iqr(times)
    cpu_med, _ = _median_iqr(cpu_times)
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
        f"SinkGD step / AdamW step = {med['gradinfo SinkGD'] / med['torch AdamW']:.2f} (target <= 1.3; "
        f"CPU time {cpu_med['gradinfo SinkGD'] / cpu_med['torch AdamW']:.2f}); "
        f"matrix state entries = {matrix_state} (target 0)\n"
        f"gradinfo DiffGrad / pytorch-optimizer DiffGrad = "
        f"{med['gradinfo DiffGrad'] / med['pytorch-optimizer DiffGrad']:.2f} (target <= 1.1)\n"
        f"Q-GaLore (state + projectors) / AdamW state = "
        f"{(q['optimizer_state'] + q['projectors']) / adamw_state:.3f} (target <= 0.35)\n"
        f"M-FAC step / SGD step = {med['gradinfo MFAC'] / med['torch SGD']:.2f} at m = {NGRADS} "
        f"(target <= 3; CPU time {cpu_med['gradinfo MFAC'] / cpu_med['torch SGD']:.2f}); "
        f"bytes read per step: M-FAC >= {window_mb:.0f} MB (window twice), SGD {sgd_mb:.0f} MB, "
        f"bandwidth-bound ratio >= {window_mb / sgd_mb:.1f}"
    )
    read_ms = statistics.median(window_reads) * 1e3
    console.print(
        f"M-FAC window read twice (measured floor): {read_ms:.2f} ms "
        f"= {read_ms / med['torch SGD']:.1f} x SGD step; "
        f"M-FAC step / that floor = {med['gradinfo MFAC'] / read_ms:.2f}"
    )
    it_med, it_iqr = _median_iqr(iter_times)
    table = Table(
        "full iteration (fwd + bwd + step)",
        "ms (median)",
        "IQR ms",
        "x SGD iteration",
        "step-only / iteration",
    )
    for n in iter_names:
        table.add_row(
            n,
            f"{it_med[n]:.2f}",
            f"{it_iqr[n]:.2f}",
            f"{it_med[n] / it_med['torch SGD']:.2f}",
            f"{med[n] / it_med[n]:.2f}",
        )
    console.print(table)
    console.print(
        f"M-FAC / SGD at m = {NGRADS}: full iteration {it_med['gradinfo MFAC'] / it_med['torch SGD']:.2f} "
        f"(what a user pays); step only {med['gradinfo MFAC'] / med['torch SGD']:.2f} "
        f"(bandwidth floor >= {window_mb / sgd_mb:.1f}, measured floor {read_ms / med['torch SGD']:.1f})"
    )


def _iteration(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    """One training iteration on the batch ``x`` ``[B, T]`` with targets ``y`` ``[B, T]``."""
    opt.zero_grad()
    logits = model(input_ids=x).logits  # [B, T, V]
    nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()).backward()
    opt.step()


def _median_iqr(times: dict[str, list[float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Median and interquartile range of each list of seconds, in milliseconds."""
    med = {n: statistics.median(t) * 1e3 for n, t in times.items()}
    iqr = {
        n: (statistics.quantiles(t, n=4)[2] - statistics.quantiles(t, n=4)[0]) * 1e3 for n, t in times.items()
    }
    return med, iqr


if __name__ == "__main__":
    main()
