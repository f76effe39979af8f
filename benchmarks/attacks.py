"""Benchmark of gradinfo's Inverting Gradients against the classic loop (not a test).

Default case (the audit's): ``gradinfo.models.cnn`` for 3 x 32 x 32 ``photos`` (untrained, no dropout:
undefended), one image per client (B = 1), shared with ``gradinfo.privacy.share``.

1. Speed. Both run the same Inverting Gradients objective (cosine distance + 1e-2 TV, signed Adam lr 0.1,
   box [0, 1], MultiStepLR at 3/8, 5/8, 7/8) with R restarts:
   - gradinfo: ``match_gradients`` (what ``inverting_gradients`` calls): a ``torch.func`` forward
     (``functional_call`` + ``torch.func.grad``) ``vmap``-ed over the R restarts, one batched
     double-backward per iteration, elementwise Adam with per-restart step sizes;
   - classic: the reference implementations' loop, one restart after the other: an ``nn.Module`` forward,
     ``torch.autograd.grad(create_graph=True)`` for the parameter gradient, a closure that backpropagates
     the objective, ``x.grad.sign_()``, ``torch.optim.Adam`` and ``MultiStepLR``.
   Reported: restart-iterations per second (R x iterations / wall time), median over rounds that
   alternate the two; the ratio of medians, of minima as a check against load spikes, and of the
   medians of process CPU time (``time.process_time``), which other jobs on a shared machine disturb less.
2. Time to leak. ``inverting_gradients`` with its defaults (1,000 steps, 4 restarts, TV 1e-2, labels from
   ``label_recovery``), run through ``match_gradients`` to attach a callback that
   records the wall time at which some restart's current iterate first reaches PSNR 25 dB (the attacker
   cannot see PSNR; this is the speed of leakage), and the PSNR of the reconstruction finally returned.

Run: ``.venv/bin/python benchmarks/attacks.py [--restarts 4] [--iterations 50] [--rounds 3] [--threads 2]
[--victims 3]``. The load average is printed: on a shared machine wall-clock times are inflated.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn

from gradinfo.claims._inversion import INPUT_SHAPE, victim_model, victims
from gradinfo.privacy import psnr, share
from gradinfo.privacy.attacks import Adam, Inputs, MultiStep, label_recovery, match_gradients, total_variation

TV = 1e-2
LR = 0.1


def classic(
    model: nn.Module, target: dict[str, Tensor], label: Tensor, restarts: int, iterations: int
) -> Tensor:
    """The classic Inverting Gradients loop, one restart at a time; returns the inputs ``[R, 1, C, H, W]``."""
    net = copy.deepcopy(model).eval()
    params = [p for n, p in net.named_parameters() if n in target]
    targets = [target[n] for n, p in net.named_parameters() if n in target]
    target_norm = torch.sqrt(sum(t.pow(2).sum() for t in targets))
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(restarts):
        x = torch.rand(1, *INPUT_SHAPE, generator=gen).requires_grad_(True)  # [1, 3, 32, 32]
        opt = torch.optim.Adam([x], lr=LR)
        sched = torch.optim.lr_scheduler.MultiStepLR(
            opt, [int(iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)], gamma=0.1
        )

        def closure(x: Tensor = x, opt: torch.optim.Optimizer = opt) -> Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(net(x), label)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            dot = sum((g * t).sum() for g, t in zip(grads, targets, strict=True))
            norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
            objective = 1 - dot / (norm * target_norm + 1e-8) + TV * total_variation(x)
            objective.backward()
            x.grad.sign_()
            return objective

        for _ in range(iterations):
            opt.step(closure)
            sched.step()
            with torch.no_grad():
                x.clamp_(0, 1)
        out.append(x.detach())
    return torch.stack(out)


def ours(
    model: nn.Module, target: dict[str, Tensor], label: Tensor, restarts: int, iterations: int
) -> Tensor:
    return match_gradients(
        model, target, Inputs(INPUT_SHAPE), batch_size=1, labels=label, iterations=iterations,
        optimizer=Adam(LR, signed=True, schedule=MultiStep()), restarts=restarts, tv=TV,
    ).restart_inputs  # fmt: skip


def speed(args: argparse.Namespace, console: Console) -> None:
    images, labels = victims(1, 0)
    model = victim_model(0.0, 0)
    update = share(model, F.cross_entropy, images[:1], labels[:1])
    runs = {"gradinfo (vmap restarts)": ours, "classic loop": classic}
    for fn in runs.values():  # warm-up
        fn(model, update.grads, labels[:1], args.restarts, 3)
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(args.rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            start, start_cpu = time.perf_counter(), time.process_time()
            runs[name](model, update.grads, labels[:1], args.restarts, args.iterations)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    table = Table(title=f"Inverting Gradients, R={args.restarts}, {args.iterations} iterations, B=1")
    for col in ("implementation", "restart-it/s (median)", "min s", "max s"):
        table.add_column(col)
    rate = {}
    for name, ts in times.items():
        rate[name] = args.restarts * args.iterations / statistics.median(ts)
        table.add_row(name, f"{rate[name]:.1f}", f"{min(ts):.2f}", f"{max(ts):.2f}")
    console.print(table)
    fast, slow = times["gradinfo (vmap restarts)"], times["classic loop"]
    cpu_fast, cpu_slow = cpu["gradinfo (vmap restarts)"], cpu["classic loop"]
    console.print(
        f"speed-up: {rate['gradinfo (vmap restarts)'] / rate['classic loop']:.2f}x of medians, "
        f"{min(slow) / min(fast):.2f}x of minima; process CPU time (less sensitive to other jobs): "
        f"{statistics.median(cpu_slow) / statistics.median(cpu_fast):.2f}x of medians (target >= 1.5x)"
    )


def time_to_leak(args: argparse.Namespace, console: Console) -> None:
    images, labels = victims(args.victims, 0)
    model = victim_model(0.0, 0)
    table = Table(title="inverting_gradients defaults (1000 steps, 4 restarts): time to PSNR 25 dB")
    for col in ("victim (class)", "first >= 25 dB (s)", "at step", "total (s)", "returned PSNR (dB)"):
        table.add_column(col)
    for i in range(args.victims):
        x, y = images[i : i + 1], labels[i : i + 1]
        update = share(model, F.cross_entropy, x, y, seed=i)
        reached: list[tuple[float, int]] = []
        start = time.perf_counter()

        def watch(
            it: int, inputs: Tensor, x: Tensor = x, reached: list = reached, start: float = start
        ) -> None:
            if not reached and float(psnr(inputs[:, 0], x.expand_as(inputs[:, 0])).max()) >= 25.0:
                reached.append((time.perf_counter() - start, it + 1))

        label = label_recovery(model, update).labels  # what inverting_gradients does first (exact at B=1)
        result = match_gradients(  # = inverting_gradients(model, update, input_shape=..., seed=i), watched
            model, update.grads, Inputs(INPUT_SHAPE), batch_size=1, labels=label, iterations=1000,
            optimizer=Adam(LR, signed=True, schedule=MultiStep()), restarts=4, tv=TV, callback=watch, seed=i,
        )  # fmt: skip
        total = time.perf_counter() - start
        first = f"{reached[0][0]:.1f}" if reached else "not reached"
        step = str(reached[0][1]) if reached else "-"
        table.add_row(f"{i} ({int(y)})", first, step, f"{total:.1f}", f"{float(psnr(result.inputs, x)):.1f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--victims", type=int, default=3)
    parser.add_argument("--skip-leak", action="store_true", help="only the speed comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console()
    console.print(f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()}")
    speed(args, console)
    if not args.skip_leak:
        time_to_leak(args, console)
    console.print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
