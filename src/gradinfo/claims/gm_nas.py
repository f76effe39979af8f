"""Claim check for GM-NAS (paper 5): gradient matching groups agreeing operations and splits usefully.

"Generalizing Few-Shot NAS with Gradient Matching" (2022). Two parts, fixed in advance:

(a) Grouping. On edge 0 of the (freshly initialised) supernet below, the candidates are replaced by
    identity, negate and a second identity; :func:`gradinfo.compress.gm_nas` must put the two identities
    in one group and negate in the other (``min_group_size`` 1).

(b) Ranking. A cell supernet on MNIST-1D (3000 training signals, 1000 held-out validation signals from the
    training split, the 1000 test signals for the ground truth): ``n0 = stem(x)`` (linear 40 -> 32),
    ``n1 = o_0(n0)``, ``n2 = o_1(n0) + o_2(n1)``, logits ``head(n2)`` (32 -> 10); every edge chooses from
    {zero, skip, linear+ReLU, linear+tanh} (each linear 32 -> 32, its own weights per edge and operation),
    so 4^3 = 64 architectures. Ground truth, trained once per check: every architecture trained stand-alone
    (Adam lr 3e-3, 500 steps of batch 64, PyTorch's default Linear initialisation), its test accuracy.
    The stem has no activation so that the cell alone decides how nonlinear a network is: with a ReLU
    after the stem, two stand-alone trainings from different initialisations ranked the 64 architectures
    with a Kendall tau of only 0.36 (too noisy a ground truth); without it, 0.82 (measured at seed 0
    before any supernet was trained).
    Each repetition (seeds ``3 * seed + i``, i = 0, 1, 2; they vary the supernet's initialisation, path
    sampling and batch order) then runs:

    - one-shot warm-up: 800 steps of Adam (lr 3e-3, batch 64), one architecture per step sampled uniformly
      (single-path uniform sampling);
    - GM-NAS on the warmed supernet: distances over 10 batches of 64 (the official fast mode), other edges
      sampled uniformly per batch; the highest-score edge is split 2-vs-2 (``min_group_size`` 2, the
      balanced cut of the official NB201/DARTS code);
    - every balanced partition of every edge (3 edges x 3 partitions, the GM split among them) as two
      sub-supernets, each inheriting weights and Adam state and trained 400 more steps with uniform
      sampling inside it (800 steps per split, the budget the one-shot supernet gets to continue);
    - each architecture's predicted accuracy: its sub-supernet's validation accuracy with that path.

    Kendall tau-b (scipy) between predicted and stand-alone accuracy over the 64 architectures is measured
    for the GM split, for a random split of the same edge (the exact expectation over its 3 balanced
    partitions: their mean tau) and for a random split of a random edge (the mean over all 9), and for
    the one-shot supernet trained the same 1600 steps (reported, not part of the criterion).

Pass (the paper digest's CPU proof criterion; the digest confirms no headline number of the paper to size a
margin from): (a) holds, and the mean over the 3 repetitions of tau(GM split) exceeds both the mean tau of
a random partition of the same edge and the mean tau of a random partition of a random edge, and is at
least the one-shot supernet's mean tau + 0.1 (the digest's "tau(GM split) >= tau(one-shot) + 0.1"). Every
sub-supernet of one repetition trains with the same batch and path random stream, so identical partitions
give identical predictions.

Measured by an earlier version of this check (the same runs, without the one-shot term; means over the 3
repetitions; GM, random same edge, random edge, one-shot): seed 0 0.605, 0.598, 0.654, 0.642; seed 1 0.578,
0.587, 0.554, 0.536; seed 2 0.497, 0.516, 0.568, 0.575. Part (a) holds at every seed, part (b) does not: GM
always picks edge 1 (``n0 -> n2``) and its split ranks no better than a random one, nor than the one-shot
supernet. The operations of an edge own their weights here, but the stem, the head and every other edge's
weights are shared by all 64 architectures, and those are the weights GM compares gradients on; the
one-shot supernet's tau (0.54-0.64) stays below the stand-alone re-training reproducibility (0.82), so its
estimate is imperfect, yet no split of this supernet measurably repairs it. A positive control where the
operations of one edge share a weight tensor (as in the once-for-all space) is not built. GM-NAS is a
``component``: the paper's claim lives in the NB201/DARTS/MobileNet spaces with benchmark ground truths
(the nas-bench-201 file) that are not available offline.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from scipy.stats import kendalltau
from torch import Tensor
from torch.nn import functional as F

from gradinfo.claims import ClaimResult
from gradinfo.compress.gm_nas import gm_nas
from gradinfo.datasets import load

PAPER_EFFECT = (
    "abstract: GM splitting significantly outperforms exhaustive Few-Shot splitting and One-Shot on "
    "NB201/DARTS/MobileNet; no number confirmed in the digest, whose CPU proof asks "
    "tau(GM) >= tau(one-shot) + 0.1"
)
ONE_SHOT_MARGIN = 0.1
SLOW = True

OPS = ("zero", "skip", "lin_relu", "lin_tanh")
PARAMETRIC = ("lin_relu", "lin_tanh")
EDGES = 3
ARCHS = tuple(itertools.product(range(len(OPS)), repeat=EDGES))
WIDTH, IN, CLASSES = 32, 40, 10
NUM_TRAIN = 3000
LR, BATCH = 3e-3, 64
STANDALONE_STEPS = 500
WARMUP_STEPS, SPLIT_STEPS = 800, 800
GM_BATCHES = 10
REPEATS = 3

Params = dict[str, Tensor]
Op = Callable[[Tensor], Tensor]
Data = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]


@contextmanager
def _single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: intra-op threads only add synchronisation
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _uniform(shape: Sequence[int], fan_in: int, gen: torch.Generator) -> Tensor:
    """PyTorch's default Linear initialisation for weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return (torch.rand(*shape, generator=gen) * 2 - 1) / fan_in**0.5


def _supernet(gen: torch.Generator) -> Params:
    params = {
        "stem.weight": _uniform((IN, WIDTH), IN, gen),
        "stem.bias": _uniform((WIDTH,), IN, gen),
        "head.weight": _uniform((WIDTH, CLASSES), WIDTH, gen),
        "head.bias": _uniform((CLASSES,), WIDTH, gen),
    }
    for edge, op in itertools.product(range(EDGES), PARAMETRIC):
        params[f"e{edge}.{op}.weight"] = _uniform((WIDTH, WIDTH), WIDTH, gen)
        params[f"e{edge}.{op}.bias"] = _uniform((WIDTH,), WIDTH, gen)
    return {k: v.requires_grad_() for k, v in params.items()}


def _op(params: Params, edge: int, op: int) -> Op:
    name = OPS[op]
    if name == "zero":
        return torch.zeros_like
    if name == "skip":
        return lambda h: h
    weight, bias = params[f"e{edge}.{name}.weight"], params[f"e{edge}.{name}.bias"]
    act = torch.relu if name == "lin_relu" else torch.tanh
    return lambda h: act(h @ weight + bias)


def _cell(params: Params, x: Tensor, ops: Sequence[Op]) -> Tensor:
    n0 = x @ params["stem.weight"] + params["stem.bias"]  # [B, W]
    n1 = ops[0](n0)  # [B, W]
    n2 = ops[1](n0) + ops[2](n1)  # [B, W]
    return n2 @ params["head.weight"] + params["head.bias"]  # [B, C]


def _forward(params: Params, x: Tensor, arch: Sequence[int]) -> Tensor:
    return _cell(params, x, [_op(params, e, o) for e, o in enumerate(arch)])


def _standalone_accuracies(data: Data, seed: int) -> Tensor:
    """Train all 64 architectures at once (independent weights, batched matmuls); test accuracies ``[A]``."""
    x, y, _, _, xt, yt = data
    gen = torch.Generator().manual_seed(seed)
    n = len(ARCHS)
    ops = torch.tensor(ARCHS)  # [A, E]
    skip, relu, tanh = ((ops == OPS.index(k)).float()[:, :, None, None] for k in OPS[1:])  # [A, E, 1, 1]
    params = [
        _uniform((n, IN, WIDTH), IN, gen),
        _uniform((n, 1, WIDTH), IN, gen),
        _uniform((n, EDGES, WIDTH, WIDTH), WIDTH, gen),
        _uniform((n, EDGES, 1, WIDTH), WIDTH, gen),
        _uniform((n, WIDTH, CLASSES), WIDTH, gen),
        _uniform((n, 1, CLASSES), WIDTH, gen),
    ]
    for p in params:
        p.requires_grad_()
    w_in, b_in, w_e, b_e, w_out, b_out = params

    def edge(h: Tensor, e: int) -> Tensor:
        z = h @ w_e[:, e] + b_e[:, e]  # [A, B, W]
        return skip[:, e] * h + relu[:, e] * torch.relu(z) + tanh[:, e] * torch.tanh(z)  # zero: all masks 0

    def logits(xb: Tensor) -> Tensor:
        n0 = xb @ w_in + b_in  # [A, B, W]
        n2 = edge(n0, 1) + edge(edge(n0, 0), 2)  # [A, B, W]
        return n2 @ w_out + b_out  # [A, B, C]

    opt = torch.optim.Adam(params, lr=LR)
    for _ in range(STANDALONE_STEPS):
        idx = torch.randint(0, len(x), (BATCH,), generator=gen)  # [B]
        out = logits(x[idx])  # [A, B, C]
        loss = F.cross_entropy(out.reshape(-1, CLASSES), y[idx].repeat(n), reduction="sum") / BATCH
        opt.zero_grad()
        loss.backward()  # the sum over architectures keeps their gradients independent
        opt.step()
    with torch.no_grad():
        return (logits(xt).argmax(-1) == yt).double().mean(-1)  # [A]


def _sample(allowed: Sequence[Sequence[int]], gen: torch.Generator) -> tuple[int, ...]:
    return tuple(ops[int(torch.randint(0, len(ops), (), generator=gen))] for ops in allowed)


def _train(
    params: Params, opt: torch.optim.Adam, allowed: Sequence[Sequence[int]], steps: int, data: Data, seed: int
) -> None:
    """Single-path uniform sampling: each step one architecture from ``allowed``, one Adam step."""
    x, y = data[0], data[1]
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        arch = _sample(allowed, gen)
        idx = torch.randint(0, len(x), (BATCH,), generator=gen)  # [B]
        opt.zero_grad()
        F.cross_entropy(_forward(params, x[idx], arch), y[idx]).backward()
        opt.step()


def _copy(params: Params, opt: torch.optim.Adam) -> tuple[Params, torch.optim.Adam]:
    """A child supernet that inherits the weights and the Adam state."""
    child = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    child_opt = torch.optim.Adam(child.values(), lr=LR)
    child_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    return child, child_opt


def _val_accuracy(params: Params, arch: Sequence[int], data: Data) -> float:
    with torch.no_grad():
        return float((_forward(params, data[2], arch).argmax(-1) == data[3]).double().mean())


def _split_tau(
    params: Params,
    opt: torch.optim.Adam,
    edge: int,
    groups: Sequence[Sequence[int]],
    data: Data,
    truth: Tensor,
    seed: int,
) -> float:
    """Split ``edge`` into sub-supernets by ``groups``, train each, and rank the architectures."""
    full = [tuple(range(len(OPS)))] * EDGES
    predicted = torch.zeros(len(ARCHS), dtype=torch.float64)  # [A]
    for group in sorted(tuple(sorted(g)) for g in groups):
        child, child_opt = _copy(params, opt)
        allowed = [*full[:edge], group, *full[edge + 1 :]]
        _train(child, child_opt, allowed, SPLIT_STEPS // len(groups), data, seed)
        for a, arch in enumerate(ARCHS):
            if arch[edge] in group:
                predicted[a] = _val_accuracy(child, arch, data)
    return float(kendalltau(predicted.numpy(), truth.numpy()).statistic)


def _balanced_partitions() -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    k = len(OPS)
    return [
        (tuple(first), tuple(o for o in range(k) if o not in first))
        for first in itertools.combinations(range(k), k // 2)
        if 0 in first
    ]


def _grouping(seed: int) -> tuple[bool, float, float]:
    """Part (a): identity, negate, identity on edge 0; do the identities group together?"""
    gen = torch.Generator().manual_seed(seed)
    params = _supernet(gen)
    x = torch.randn(64, IN, generator=gen)  # [B, IN]
    y = torch.randint(0, CLASSES, (64,), generator=gen)  # [B]
    candidates: list[Op] = [lambda h: h, lambda h: -h, lambda h: h]
    rest = [_op(params, 1, OPS.index("skip")), _op(params, 2, OPS.index("lin_relu"))]

    def op_loss(edge: int, op: int, batch: tuple[Tensor, Tensor]) -> Tensor:
        return F.cross_entropy(_cell(params, batch[0], [candidates[op], *rest]), batch[1])

    split = gm_nas(op_loss, params, {}, {0: [0, 1, 2]}, [(x, y)])
    d = split.distances[0]
    return split.groups == ((0, 2), (1,)), float(d[0, 2]), float(d[0, 1])


def _repeat(seed: int, data: Data, truth: Tensor) -> dict[str, float]:
    gen = torch.Generator().manual_seed(seed)
    params = _supernet(gen)
    opt = torch.optim.Adam(params.values(), lr=LR)
    full = [tuple(range(len(OPS)))] * EDGES
    _train(params, opt, full, WARMUP_STEPS, data, seed + 1)

    x, y = data[0], data[1]
    batches = []
    for _ in range(GM_BATCHES):
        idx = torch.randint(0, len(x), (BATCH,), generator=gen)  # [B]
        batches.append((x[idx], y[idx], _sample(full, gen)))

    def op_loss(edge: int, op: int, batch: tuple[Tensor, Tensor, tuple[int, ...]]) -> Tensor:
        arch = list(batch[2])
        arch[edge] = op
        return F.cross_entropy(_forward(params, batch[0], arch), batch[1])

    edge_params = {e: [k for k in params if k.startswith(f"e{e}.")] for e in range(EDGES)}
    edge_ops = {e: list(range(len(OPS))) for e in range(EDGES)}
    split = gm_nas(op_loss, params, edge_params, edge_ops, batches, min_group_size=2)

    taus = {
        (e, groups): _split_tau(params, opt, e, groups, data, truth, seed + 2)
        for e in range(EDGES)
        for groups in _balanced_partitions()
    }
    gm_groups = tuple(sorted(tuple(sorted(g)) for g in split.groups))
    one_shot, one_shot_opt = _copy(params, opt)
    _train(one_shot, one_shot_opt, full, SPLIT_STEPS, data, seed + 2)
    predicted = torch.tensor([_val_accuracy(one_shot, arch, data) for arch in ARCHS])  # [A]
    same_edge = [t for (e, _), t in taus.items() if e == split.edge]
    return {
        "tau_gm": taus[(split.edge, gm_groups)],
        "tau_random_same_edge": sum(same_edge) / len(same_edge),
        "tau_random_edge": sum(taus.values()) / len(taus),
        "tau_one_shot": float(kendalltau(predicted.numpy(), truth.numpy()).statistic),
        "gm_edge": float(split.edge),
        "gm_partner_of_zero": float(next(g for g in gm_groups if 0 in g)[1]),
        "gm_score": split.score,
    }


def check(seed: int = 0) -> ClaimResult:
    """Part (a), the ground truth once, then three repetitions of part (b); figures per repetition, means."""
    train = load("mnist1d", split="train", seed=seed)
    test = load("mnist1d", split="test", seed=seed)
    data = (
        train.x[:NUM_TRAIN],
        train.y[:NUM_TRAIN],
        train.x[NUM_TRAIN:],
        train.y[NUM_TRAIN:],
        test.x,
        test.y,
    )  # [N, 40] / [N] pairs: training, validation, test
    with _single_thread():
        grouped, d_identities, d_negate = _grouping(seed)
        truth = _standalone_accuracies(data, seed)
        runs = [_repeat(REPEATS * seed + i, data, truth) for i in range(REPEATS)]
    figures = {
        "identities_grouped_apart_from_negate": float(grouped),
        "distance_identity_identity": d_identities,
        "distance_identity_negate": d_negate,
        "standalone_acc_min": float(truth.min()),
        "standalone_acc_max": float(truth.max()),
        "standalone_acc_median": float(truth.median()),
    }
    for i, run in enumerate(runs):
        figures |= {f"{k}_{i}": v for k, v in run.items()}
    for key in ("tau_gm", "tau_random_same_edge", "tau_random_edge", "tau_one_shot"):
        figures[f"mean_{key}"] = sum(run[key] for run in runs) / REPEATS
    ranks = (
        figures["mean_tau_gm"] > figures["mean_tau_random_same_edge"]
        and figures["mean_tau_gm"] > figures["mean_tau_random_edge"]
        and figures["mean_tau_gm"] >= figures["mean_tau_one_shot"] + ONE_SHOT_MARGIN
    )
    return ClaimResult(
        "gm_nas",
        "(a) identity and its copy grouped apart from negate; (b) mean Kendall tau over 3 repetitions of the "
        "GM split > that of a random balanced split of the same edge and > that of a random edge, and >= "
        "one-shot's + 0.1 (64-arch MNIST-1D cell supernet, stand-alone ground truth, equal budgets)",
        bool(grouped and ranks),
        figures,
        seed=seed,
    )
