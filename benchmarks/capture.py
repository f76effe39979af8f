"""Benchmark of gradinfo.capture against Opacus, plain torch.func and the naive loop (not a test).

Cases: (a) CNN, 2 conv + 2 FC, 1x28x28 input, B=256; (b) token embedding + learned positions + 2-layer
``nn.TransformerEncoder`` (d=128, 4 heads, feed-forward 512, dropout 0, batch-first, train mode) + mean
pool + linear head, T=64, B=32. Rows are timed round-robin (one call of each implementation per round)
and the median over rounds is reported. Opacus needs ``ModuleValidator.fix`` for (b): it swaps
``nn.MultiheadAttention`` for its ``DPMultiheadAttention`` (same FLOPs, separate q/k/v Linears).

Peak memory is the peak of live tensor bytes allocated by torch on the CPU during one call, from
``torch.profiler`` with ``profile_memory=True`` (allocation and free events summed in time order); it sees
every tensor torch allocates and nothing else (no Python objects, no allocator caching).

Run: ``.venv/bin/python benchmarks/capture.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from opacus import GradSampleModule
from opacus.validators import ModuleValidator
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from gradinfo.capture import clipped_grad_sum, per_example_grads, per_example_norms


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


class Encoder(nn.Module):
    """Embedding + positions + 2-layer TransformerEncoder + mean pool + head."""

    def __init__(self, vocab: int = 1000, d: int = 128, t: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(t, d)
        layer = nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(d, classes)

    def forward(self, ids: Tensor) -> Tensor:
        b, t = ids.shape
        h = self.emb(ids) + self.pos(torch.arange(t, device=ids.device).expand(b, t))  # [B, T, D]
        return self.head(self.enc(h).mean(1))  # [B, C]


def opacus_grads(model: nn.Module) -> Callable[[Tensor, Tensor], object]:
    gsm = GradSampleModule(model, loss_reduction="sum")
    params = [p for p in model.parameters() if p.requires_grad]

    def run(x: Tensor, y: Tensor) -> object:
        for p in params:
            p.grad = None
            p.grad_sample = None
        F.cross_entropy(gsm(x), y, reduction="sum").backward()
        return [p.grad_sample for p in params]

    return run


def func_grads(model: nn.Module) -> Callable[[Tensor, Tensor], object]:
    params = {n: p.detach() for n, p in model.named_parameters()}

    def loss_one(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(functional_call(model, p, (x.unsqueeze(0),)), y.unsqueeze(0))

    fn = vmap(grad(loss_one), in_dims=(None, 0, 0))
    return lambda x, y: fn(params, x, y)


def loop_grads(model: nn.Module) -> Callable[[Tensor, Tensor], object]:
    params = list(model.parameters())

    def run(x: Tensor, y: Tensor) -> object:
        return [
            torch.autograd.grad(F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]), params)
            for i in range(x.shape[0])
        ]

    return run


def plain_step(model: nn.Module) -> Callable[[Tensor, Tensor], object]:
    params = list(model.parameters())

    def run(x: Tensor, y: Tensor) -> object:
        for p in params:
            p.grad = None
        F.cross_entropy(model(x), y).backward()
        return [p.grad for p in params]

    return run


def time_round_robin(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds per call; each round calls every function once, starting one later each round."""
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns.items())
    for r in range(rounds):
        for k, fn in order[r % len(order) :] + order[: r % len(order)]:
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def peak_bytes(fn: Callable[[], object]) -> int:
    """Peak live bytes of torch CPU allocations during ``fn()`` (torch.profiler memory events)."""
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
    ) as prof:
        fn()
    events = sorted(
        (e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
    )
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="round-robin rounds per case")
    parser.add_argument("--loop-rounds", type=int, default=3, help="rounds for the naive loop (slow)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    cases = {
        "(a) CNN B=256": (cnn(), torch.randn(256, 1, 28, 28), torch.randint(0, 10, (256,))),
        "(b) Transformer B=32 T=64": (
            Encoder(),
            torch.randint(0, 1000, (32, 64)),
            torch.randint(0, 10, (32,)),
        ),
    }
    table = Table(title=f"gradinfo.capture, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for col in ("case", "measurement", "median", "ratio", "target"):
        table.add_column(col, justify="left" if col in ("case", "measurement") else "right")
    for case, (model, x, y) in cases.items():
        model.train()
        fixed = ModuleValidator.fix(model) if isinstance(model, Encoder) else copy.deepcopy(model)
        opacus_fn, func_fn, step_fn = opacus_grads(fixed), func_grads(model), plain_step(model)
        fns = {
            "gradinfo per_example_grads": partial(per_example_grads, model, F.cross_entropy, x, y),
            "opacus GradSampleModule": partial(opacus_fn, x, y),
            "torch.func vmap(grad)": partial(func_fn, x, y),
            "plain step (fwd+bwd)": partial(step_fn, x, y),
            "gradinfo clipped_grad_sum": partial(clipped_grad_sum, model, F.cross_entropy, x, y, 1.0),
        }
        t = time_round_robin(fns, args.rounds)
        loop = time_round_robin({"loop": partial(loop_grads(model), x, y)}, args.loop_rounds)["loop"]
        g = t["gradinfo per_example_grads"]
        rows = [
            ("per-example: gradinfo", g, 1.0, ""),
            (
                "per-example: opacus",
                t["opacus GradSampleModule"],
                t["opacus GradSampleModule"] / g,
                ">= 1.5x" if case.startswith("(a)") else ">= 1.2x",
            ),
            (
                "per-example: torch.func",
                t["torch.func vmap(grad)"],
                t["torch.func vmap(grad)"] / g,
                ">= 1.0x",
            ),
            ("per-example: naive loop", loop, loop / g, ""),
            ("plain step", t["plain step (fwd+bwd)"], 1.0, ""),
            (
                "DP step: clipped_grad_sum",
                t["gradinfo clipped_grad_sum"],
                t["gradinfo clipped_grad_sum"] / t["plain step (fwd+bwd)"],
                "<= 1.6x",
            ),
        ]
        for name, sec, ratio, target in rows:
            table.add_row(case, name, f"{sec * 1e3:.1f} ms", f"{ratio:.2f}x", target)
        peak_step = min(peak_bytes(partial(step_fn, x, y)) for _ in range(2))
        peak_norms = min(
            peak_bytes(partial(per_example_norms, model, F.cross_entropy, x, y)) for _ in range(2)
        )
        table.add_row(case, "peak memory: plain step", f"{peak_step / 2**20:.1f} MiB", "1.00x", "")
        table.add_row(
            case,
            "peak memory: per_example_norms",
            f"{peak_norms / 2**20:.1f} MiB",
            f"{peak_norms / peak_step:.2f}x",
            "<= 1.3x",
        )
        table.add_section()
    table.caption = (
        "ratio: time of the row / gradinfo per_example_grads (per-example rows), / plain step (others)"
    )
    Console().print(table)


if __name__ == "__main__":
    main()
