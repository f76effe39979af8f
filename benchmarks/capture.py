"""Benchmark of gradinfo.capture against Opacus, plain torch.func and the naive loop (not a test).

Cases: (a) CNN, 2 conv + 2 FC, 1x28x28 input, B=256; (b) token embedding + learned positions + 2-layer
``nn.TransformerEncoder`` (d=128, 4 heads, feed-forward 512, dropout 0, batch-first, train mode) + mean
pool + linear head, T=64, B=32. Opacus needs ``ModuleValidator.fix`` for (b): it swaps
``nn.MultiheadAttention`` for its ``DPMultiheadAttention`` (same FLOPs, separate q/k/v Linears).

What is timed (wall clock, ``time.perf_counter``): one call that produces the full result from the inputs.

- gradinfo: ``per_example_grads(model, F.cross_entropy, x, y)`` (a dict ``{name: [B, *shape]}``), and
  ``clipped_grad_sum(model, F.cross_entropy, x, y, 1.0)``;
- Opacus: ``GradSampleModule`` forward, ``cross_entropy(reduction="sum")`` (so ``grad_sample`` is the exact
  per-example gradient), ``backward()``, and collecting every ``p.grad_sample`` (Opacus also fills
  ``p.grad``, which is part of its cost);
- torch.func: ``vmap(grad(loss_i))`` over the batch with ``functional_call``;
- naive loop: ``torch.autograd.grad`` of each example's loss, one example at a time;
- plain step: ``p.grad = None``, forward, mean cross-entropy, ``backward()``.

Fairness: after every timed call, outside the timed region, the result is dropped and Opacus' and the
plain step's ``p.grad_sample`` / ``p.grad`` are cleared, then ``gc.collect()`` runs, so no implementation
runs while another one's ``B x P`` result is alive. Each implementation gets ``--warmup`` untimed calls;
then ``--rounds`` rounds call every implementation once, the starting one rotating each round. Reported:
median, min and interquartile range (IQR, q3 - q1) over rounds; ratios are of medians (and, as a check
against noise, of minima). The load average before and after each case is printed: on a shared machine
(load above the number of threads) wall-clock medians are inflated and ratios are noisy.

Peak memory is the peak of live tensor bytes allocated by torch on the CPU during one call, from
``torch.profiler`` with ``profile_memory=True`` (allocation and free events summed in time order); it sees
every tensor torch allocates and nothing else (no Python objects, no allocator caching).

Run: ``.venv/bin/python benchmarks/capture.py [--rounds N] [--threads T]`` (about 2-3 minutes with the
defaults on a quiet 2-core machine).
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


@dataclass
class Impl:
    """A timed call and the clean-up that runs, untimed, after it."""

    run: Callable[[], object]
    release: Callable[[], None] = lambda: None


def clear_grads(params: list[nn.Parameter]) -> None:
    for p in params:
        p.grad = None
        if hasattr(p, "grad_sample"):
            p.grad_sample = None


def opacus_impl(model: nn.Module, x: Tensor, y: Tensor) -> Impl:
    gsm = GradSampleModule(model, loss_reduction="sum")
    params = [p for p in model.parameters() if p.requires_grad]

    def run() -> object:
        F.cross_entropy(gsm(x), y, reduction="sum").backward()
        return [p.grad_sample for p in params]

    return Impl(run, partial(clear_grads, params))


def func_impl(model: nn.Module, x: Tensor, y: Tensor) -> Impl:
    params = {n: p.detach() for n, p in model.named_parameters()}

    def loss_one(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        return F.cross_entropy(functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    fn = vmap(grad(loss_one), in_dims=(None, 0, 0))
    return Impl(partial(fn, params, x, y))


def loop_impl(model: nn.Module, x: Tensor, y: Tensor) -> Impl:
    params = list(model.parameters())

    def run() -> object:
        return [
            torch.autograd.grad(F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]), params)
            for i in range(x.shape[0])
        ]

    return Impl(run)


def plain_impl(model: nn.Module, x: Tensor, y: Tensor) -> Impl:
    params = list(model.parameters())

    def run() -> object:
        F.cross_entropy(model(x), y).backward()
        return [p.grad for p in params]

    return Impl(run, partial(clear_grads, params))


@dataclass
class Stats:
    """Seconds per call over rounds."""

    median: float
    low: float
    iqr: float


def summarise(times: list[float]) -> Stats:
    q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
    return Stats(statistics.median(times), min(times), q3 - q1)


def time_round_robin(impls: dict[str, Impl], rounds: int, warmup: int) -> dict[str, Stats]:
    """Wall seconds per call; each round calls every implementation once, the first one rotating."""

    def call(impl: Impl) -> float:
        gc.collect()
        t0 = time.perf_counter()
        result = impl.run()
        elapsed = time.perf_counter() - t0
        del result
        impl.release()
        return elapsed

    for impl in impls.values():
        for _ in range(warmup):
            call(impl)
    times: dict[str, list[float]] = {k: [] for k in impls}
    order = list(impls.items())
    for r in range(rounds):
        for k, impl in order[r % len(order) :] + order[: r % len(order)]:
            times[k].append(call(impl))
    return {k: summarise(v) for k, v in times.items()}


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence the profiler's native start/stop log lines (written to file descriptor 2)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def peak_bytes(fn: Callable[[], object]) -> int:
    """Peak live bytes of torch CPU allocations during ``fn()`` (torch.profiler memory events)."""
    gc.collect()
    with (
        quiet_stderr(),
        torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof,
    ):
        fn()
    events = sorted(
        (e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
    )
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    return peak


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def verdict(ratio: float, target: str) -> str:
    if not target:
        return ""
    bound = float(target.split()[1].rstrip("x"))
    ok = ratio >= bound if target.startswith(">=") else ratio <= bound
    return "[green]met[/green]" if ok else "[red]MISSED[/red]"


def run_case(
    case: str, model: nn.Module, x: Tensor, y: Tensor, args: argparse.Namespace, table: Table
) -> None:
    model.train()
    fixed = ModuleValidator.fix(model) if isinstance(model, Encoder) else copy.deepcopy(model)
    load_before = os.getloadavg()[0]
    impls = {
        "gradinfo": Impl(partial(per_example_grads, model, F.cross_entropy, x, y)),
        "opacus": opacus_impl(fixed, x, y),
        "torch.func": func_impl(model, x, y),
        "plain": plain_impl(model, x, y),
        "clipped": Impl(partial(clipped_grad_sum, model, F.cross_entropy, x, y, 1.0)),
    }
    t = time_round_robin(impls, args.rounds, args.warmup)
    t["loop"] = time_round_robin({"loop": loop_impl(model, x, y)}, args.loop_rounds, 1)["loop"]
    load = f"load {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    target = ">= 1.5x" if case.startswith("(a)") else ">= 1.2x"
    g, plain = t["gradinfo"], t["plain"]
    rows = [
        ("per-example: gradinfo", g, g, ""),
        ("per-example: opacus", t["opacus"], g, target),
        ("per-example: torch.func", t["torch.func"], g, ">= 1.0x"),
        ("per-example: naive loop", t["loop"], g, ""),
        ("plain step (fwd+bwd)", plain, plain, ""),
        ("DP step: clipped_grad_sum", t["clipped"], plain, "<= 1.6x"),
    ]
    for name, s, ref, goal in rows:
        ratio = s.median / ref.median
        table.add_row(
            case if name.endswith("gradinfo") else (load if name.endswith("opacus") else ""),
            name,
            ms(s.median),
            ms(s.low),
            ms(s.iqr),
            f"{ratio:.2f}x",
            f"{s.low / ref.low:.2f}x",
            goal,
            verdict(ratio, goal),
        )
    peak_step = min(peak_bytes(impls["plain"].run) for _ in range(2))
    impls["plain"].release()
    peak_norms = min(peak_bytes(partial(per_example_norms, model, F.cross_entropy, x, y)) for _ in range(2))
    table.add_row("", "peak memory: plain step", f"{peak_step / 2**20:.1f} MiB", "", "", "1.00x", "", "", "")
    ratio = peak_norms / peak_step
    table.add_row(
        "",
        "peak memory: per_example_norms",
        f"{peak_norms / 2**20:.1f} MiB",
        "",
        "",
        f"{ratio:.2f}x",
        "",
        "<= 1.3x",
        verdict(ratio, "<= 1.3x"),
    )
    table.add_section()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21, help="round-robin rounds per case")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls of each implementation first")
    parser.add_argument("--loop-rounds", type=int, default=3, help="rounds for the naive loop (slow)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = parser.parse_args()
    # Known and expected: Opacus' hooks on a model whose input needs no gradient, and torch.func's vmap
    # running scaled_dot_product_attention through its slow per-example fallback (no batching rule).
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cases = {
        "(a) CNN B=256": (cnn(), torch.randn(256, 1, 28, 28), torch.randint(0, 10, (256,))),
        "(b) Transformer B=32 T=64": (
            Encoder(),
            torch.randint(0, 1000, (32, 64)),
            torch.randint(0, 10, (32,)),
        ),
    }
    table = Table(
        title=f"gradinfo.capture, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, {args.rounds} rounds"
    )
    for col in ("case", "measurement", "median ms", "min ms", "IQR ms", "ratio", "ratio (min)"):
        table.add_column(col, justify="left" if col in ("case", "measurement") else "right")
    table.add_column("target", justify="right")
    table.add_column("", justify="left")
    start = time.perf_counter()
    for case, (model, x, y) in cases.items():
        run_case(case, model, x, y, args, table)
    table.caption = (
        "ratio: the row's time / gradinfo per_example_grads (per-example rows) or / the plain step\n"
        "(DP step, memory); > 1 means gradinfo is faster for per-example rows. Timed: one call producing\n"
        "the full result; results released and gc run between calls (see the module docstring).\n"
        "torch.func on (b) runs attention through vmap's per-example fallback (no batching rule in torch).\n"
        f"Total {time.perf_counter() - start:.0f} s."
    )
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
