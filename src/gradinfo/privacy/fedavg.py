"""A small in-process federated training loop (FedAvg) with any gradinfo defense on the client updates.

Federated averaging (McMahan et al., "Communication-Efficient Learning of Deep Networks from
Decentralized Data", 2017): at round t every client k starts from the global parameters theta_t, runs
``local_steps`` SGD steps on its own data, and sends the delta Delta_k = theta_t - theta_k; the server
sets theta_{t+1} = theta_t - sum_k (n_k / n) Delta_k, with n_k client k's number of examples.

Client updates are protected as :func:`gradinfo.privacy.share` protects them: a ``GradTransform``
defense (top-k, quantisation, sketching, clipping + noise, ...) is applied once to each client's delta,
``DPSGD`` replaces every local step's gradient by (sum_i clip_C(g_i) + N(0, sigma^2 C^2 I)) / b, and a
tuple ``(DPSGD(...), transform, ...)`` does both (DP-SGD steps, then the transforms on the delta). DP steps
on minibatches use Poisson sampling, as Opacus does (Abadi et al., "Deep Learning with Differential
Privacy", 2016): each of the client's n_k examples joins a step independently with probability
q_k = b / n_k, and the noisy sum is divided by the expected batch size b, so
``gradinfo.privacy.epsilon(sigma, q_k, rounds * local_steps, delta)`` bounds each example's privacy loss
(dp-accounting's ``PoissonSampledDpEvent``). Without DP a step takes b examples without replacement.
Parameters whose names start with one of the ``personal`` prefixes stay on the client (a personal head, a
private embedding): each client keeps its own copy across rounds, trained locally, never averaged or shared.

:func:`split_non_iid` partitions a dataset over clients by label (Dirichlet proportions, Hsu et al.,
"Measuring the Effects of Non-Identical Data Distribution for Federated Visual Classification", 2019;
or a fixed number of classes per client, as in McMahan et al. 2017).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradinfo.capture import batch_grads, clipped_grad_sum
from gradinfo.core.types import Grads, LossFn
from gradinfo.core.validate import positive, positive_int
from gradinfo.privacy.threat import DPSGD, Defense, split_defense

Client = tuple[Tensor, Tensor]


@dataclass(frozen=True, eq=False)
class FedHistory:
    """What a federated run measured.

    Attributes:
        accuracy: test accuracy in [0, 1] before training (index 0) and after each round (``rounds + 1``
            values). With per-client test sets, each client's model (global parameters plus its personal
            ones) is scored on its own test set and the accuracies are averaged weighted by test-set size.
        loss: the clients' mean training loss at their first local step, per round (``rounds`` values).
        model: the final global model (personal parameters as initialised).
        personal: each client's final personal parameters ``{name: tensor}`` (empty dicts if none).
        seconds: wall time of the run.
    """

    accuracy: list[float]
    loss: list[float]
    model: nn.Module
    personal: list[Grads]
    seconds: float


def _check_clients(name: str, clients: Any) -> list[Client]:
    if not isinstance(clients, Sequence) or isinstance(clients, (str, bytes)) or len(clients) == 0:
        raise TypeError(
            f"{name} must be a non-empty list of (inputs, targets) pairs, got {type(clients).__name__}"
        )
    for i, pair in enumerate(clients):
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(t, Tensor) for t in pair)):
            raise TypeError(
                f"{name}[{i}] must be a pair (inputs [N, ...], targets [N]) of tensors, got {pair!r:.80}"
            )
        if pair[0].shape[0] == 0 or pair[0].shape[0] != pair[1].shape[0]:
            raise ValueError(
                f"{name}[{i}] must hold N >= 1 inputs and as many targets, got shapes "
                f"{tuple(pair[0].shape)} and {tuple(pair[1].shape)}"
            )
    return list(clients)


def accuracy(model: nn.Module, inputs: Tensor, targets: Tensor) -> float:
    """Top-1 accuracy of ``model`` (in eval mode, no grad) on ``(inputs [N, ...], targets [N])``."""
    was = model.training
    model.eval()
    with torch.no_grad():
        hits = (model(inputs).argmax(-1) == targets).float().mean().item()  # scalar
    model.train(was)
    return float(hits)


def weighted_average(updates: list[Grads], weights: Sequence[float]) -> Grads:
    """``sum_k w_k u_k / sum_k w_k`` for dicts of tensors with equal keys and shapes."""
    total = float(sum(weights))
    return {n: sum(w * u[n] for w, u in zip(weights, updates, strict=True)) / total for n in updates[0]}


def _is_personal(name: str, personal: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in personal)


def _dp_step(
    model: nn.Module,
    params: dict[str, Tensor],
    loss_fn: LossFn,
    xb: Tensor,
    yb: Tensor,
    dp: DPSGD,
    expected: int,
) -> tuple[dict[str, Tensor], Tensor]:
    """(sum_i clip_C(g_i) + N(0, sigma^2 C^2 I)) / expected for the drawn batch, and the batch's loss.

    A Poisson draw may be empty: then the step is noise alone (and the loss NaN).
    """
    std = dp.noise_multiplier * dp.max_norm
    if len(xb) == 0:
        return {n: std * torch.randn_like(p) / expected for n, p in params.items()}, torch.tensor(
            float("nan")
        )
    with torch.no_grad():
        loss = loss_fn(model(xb), yb)
    total = clipped_grad_sum(model, loss_fn, xb, yb, dp.max_norm)
    return {n: (g + std * torch.randn_like(g)) / expected for n, g in total.items()}, loss


def local_update(
    model: nn.Module,
    data: Client,
    loss_fn: LossFn,
    steps: int,
    lr: float,
    batch_size: int | None,
    dp: DPSGD | None,
    seed: int,
) -> tuple[float, Grads]:
    """One client's local training: ``steps`` SGD steps on ``model`` in place (arguments as for fedavg).

    Dropout masks, minibatch draws and DP noise come from the global RNG forked and seeded with ``seed``.

    Returns:
        The first step's loss and the delta theta_0 - theta_K ``{name: param.shape}`` of the trainable
        parameters.
    """
    x, y = data
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    start = {n: p.detach().clone() for n, p in params.items()}
    first = float("nan")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for k in range(steps):
            full = batch_size is None or batch_size >= len(x)
            if full:
                xb, yb = x, y
            elif dp is None:
                idx = torch.randperm(len(x))[:batch_size]  # [b]
                xb, yb = x[idx], y[idx]
            else:
                keep = torch.rand(len(x)) < batch_size / len(x)  # [n] Poisson sampling, rate q = b / n
                xb, yb = x[keep], y[keep]
            if dp is None:
                step = batch_grads(model, loss_fn, xb, yb)
                grads, loss = step.grads, step.loss
            else:
                grads, loss = _dp_step(model, params, loss_fn, xb, yb, dp, len(x) if full else batch_size)
            if k == 0:
                first = float(loss.detach())
            with torch.no_grad():
                for n, p in params.items():
                    p.sub_(lr * grads[n])
    return first, {n: start[n] - p.detach() for n, p in params.items()}


def check_run(
    model_fn: Any,
    clients: Any,
    rounds: Any,
    local_steps: Any,
    lr: Any,
    test: Any,
    defense: Any,
    batch_size: Any,
    seed: Any,
) -> tuple[nn.Module, list[Client], list[Client]]:
    """Check the arguments of a federated run (as :func:`fedavg` takes them), before any training.

    Returns:
        ``(model_fn(), clients, test pairs)``.

    Raises:
        TypeError, ValueError: a bad argument, named in the message.
    """
    if not callable(model_fn):
        raise TypeError(f"model_fn must be a callable returning an nn.Module, got {type(model_fn).__name__}")
    clients = _check_clients("clients", clients)
    positive_int("rounds", rounds)
    positive_int("local_steps", local_steps)
    positive("lr", lr)
    tests = _check_clients("test", test if isinstance(test, list) else [test])
    if isinstance(test, list) and len(tests) != len(clients):
        raise ValueError(
            f"test must be one (inputs, targets) pair or {len(clients)} (one per client), got {len(tests)}"
        )
    split_defense(defense)
    if batch_size is not None:
        positive_int("batch_size", batch_size)
    positive_int("seed", seed, minimum=0)
    model = model_fn()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model_fn() must return an nn.Module, got {type(model).__name__}")
    return model, clients, tests


def client_seed(seed: int, round_: int, client: int) -> int:
    """The seed of client ``client``'s local training in round ``round_`` (0-based) of run ``seed``."""
    return seed * 100_003 + round_ * 1_009 + client


def fedavg(
    model_fn: Callable[[], nn.Module],
    clients: list[Client],
    rounds: int,
    local_steps: int,
    lr: float,
    *,
    test: Client | list[Client],
    defense: Defense | None = None,
    batch_size: int | None = None,
    personal: tuple[str, ...] = (),
    loss_fn: LossFn = F.cross_entropy,
    seed: int = 0,
) -> FedHistory:
    """Train ``model_fn()`` by FedAvg over ``clients``, every client update protected by ``defense``.

    Round t: each client k copies the global model (and its own personal parameters), runs
    ``local_steps`` SGD steps theta <- theta - lr g on minibatches of ``batch_size`` of its data (g the
    batch-mean gradient, or DP-SGD's noisy clipped mean when ``defense`` is a ``DPSGD``), and sends the
    shared part of Delta_k = theta_t - theta_k (a ``GradTransform`` defense is applied once to it). The
    server sets theta_{t+1} = theta_t - sum_k n_k Delta_k / sum_k n_k.

    Args:
        model_fn: builds the model, identically on every call (e.g. ``lambda: cnn(seed=0)``).
        clients: one ``(inputs [N_k, ...], targets [N_k])`` pair per client.
        rounds: communication rounds, >= 1.
        local_steps: local SGD steps per round, >= 1.
        lr: local learning rate, > 0.
        test: ``(inputs, targets)`` scored with the global model, or one pair per client, each scored
            with that client's model (global plus personal parameters).
        defense: None, a ``GradTransform`` applied to each client's delta, ``DPSGD`` applied at each local
            step, or a tuple of them (``DPSGD`` only first, then transforms in order). A transform's state
            is initialised per client on the first round's parameters and carried across rounds, so a
            ``sketch(dim, seed, fresh=True)`` (with its paired ``desketch``) draws one fresh R_t per round,
            shared by all clients, as in Song et al. 2023; stochastic transforms built with one seed draw
            the same randomness on every client.
        batch_size: examples per local step, b: drawn without replacement, fresh each step; with a
            ``DPSGD`` defense, Poisson-sampled at rate b / n_k instead (the expected batch size is b).
            None: the client's whole data (rate 1).
        personal: parameter-name prefixes kept on each client (never averaged nor shared).
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` (mean reduction); cross-entropy by default.
        seed: int >= 0 seeding minibatch draws, dropout masks and DP noise (the transforms carry their
            own seeds).

    Returns:
        A :class:`FedHistory` with ``rounds + 1`` accuracies and ``rounds`` losses.

    Raises:
        TypeError, ValueError: a bad argument (named in the message), before any training.
    """
    model, clients, tests = check_run(
        model_fn, clients, rounds, local_steps, lr, test, defense, batch_size, seed
    )
    dp, transform = split_defense(defense)
    if not (isinstance(personal, tuple) and all(isinstance(p, str) for p in personal)):
        raise TypeError(f"personal must be a tuple of parameter-name prefixes, got {personal!r}")
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    shared = [n for n in names if not _is_personal(n, personal)]
    if not shared:
        raise ValueError(f"personal={personal!r} covers every trainable parameter: nothing would be shared")

    begin = time.perf_counter()
    state = dict(model.named_parameters())
    mine = [{n: state[n].detach().clone() for n in names if n not in shared} for _ in clients]
    states: list[Any] = [None] * len(clients)

    def score() -> float:
        if not isinstance(test, list):
            return accuracy(model, *tests[0])
        hits = 0.0
        for own, (xt, yt) in zip(mine, tests, strict=True):
            local = copy.deepcopy(model)
            local.load_state_dict(own, strict=False)
            hits += accuracy(local, xt, yt) * len(yt)
        return hits / sum(len(yt) for _, yt in tests)

    history, losses = [score()], []
    sizes = [float(len(y)) for _, y in clients]
    for t in range(rounds):
        deltas, round_loss = [], []
        start = {n: state[n].detach().clone() for n in shared}
        for k, data in enumerate(clients):
            local = copy.deepcopy(model)
            local.load_state_dict(mine[k], strict=False)
            local.train()
            first, delta = local_update(
                local, data, loss_fn, local_steps, lr, batch_size, dp, client_seed(seed, t, k)
            )
            round_loss.append(first)
            update = {n: delta[n] for n in shared}
            if transform is not None:
                if states[k] is None:
                    states[k] = transform.init(start)
                update, states[k] = transform.update(update, states[k], start)
            deltas.append(update)
            own = dict(local.named_parameters())
            mine[k] = {n: own[n].detach().clone() for n in mine[k]}
        step = weighted_average(deltas, sizes)
        with torch.no_grad():
            for n in shared:
                state[n].sub_(step[n])
        losses.append(float(np.mean(round_loss)))
        history.append(score())
    return FedHistory(history, losses, model, mine, time.perf_counter() - begin)


def split_non_iid(
    dataset: Client | Any,
    clients: int,
    *,
    alpha: float | None = None,
    classes_per_client: int | None = None,
    seed: int = 0,
) -> list[Client]:
    """Partition ``dataset`` over ``clients`` by label, non-IID.

    Exactly one of:

    - ``alpha``: client k's share of class c is p_{c,k}, with (p_{c,1..K}) ~ Dirichlet(alpha) per class;
      small alpha (0.1) gives clients few classes, large alpha (100) is near IID.
    - ``classes_per_client``: client k gets classes (k * m + j) mod C for j < m (m = classes_per_client),
      shifted by a seeded random permutation of the classes; each class is split evenly among its clients.

    The label distribution of each client depends only on ``(clients, alpha or classes_per_client,
    seed)`` and the number of classes, so splitting the train and the test split with the same
    arguments gives every client matching train and test label distributions.

    Args:
        dataset: a ``gradinfo.datasets.Dataset`` or an ``(inputs [N, ...], targets [N])`` pair with int
            labels.
        clients: number of clients K, >= 1.
        alpha: Dirichlet concentration, > 0.
        classes_per_client: m in [1, C].
        seed: int >= 0.

    Returns:
        K pairs ``(inputs [N_k, ...], targets [N_k])``; every example goes to exactly one client (with
        ``classes_per_client``, examples of a class no client holds are dropped).

    Raises:
        TypeError, ValueError: bad arguments, or a client that would get no example (fewer clients, a
            larger alpha or more classes per client help).
    """
    if isinstance(dataset, tuple):
        x, y = _check_clients("dataset", [dataset])[0]
    elif isinstance(getattr(dataset, "x", None), Tensor) and isinstance(getattr(dataset, "y", None), Tensor):
        x, y = dataset.x, dataset.y
    else:
        raise TypeError(
            f"dataset must be a Dataset or an (inputs, targets) pair, got {type(dataset).__name__}"
        )
    if y.dim() != 1 or y.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"dataset targets must be int class labels [N], got {y.dtype} {tuple(y.shape)}")
    clients = positive_int("clients", clients)
    seed = positive_int("seed", seed, minimum=0)
    if (alpha is None) == (classes_per_client is None):
        raise ValueError(
            f"give exactly one of alpha and classes_per_client, got {alpha!r} and {classes_per_client!r}"
        )
    num_classes = int(y.max()) + 1
    rng = np.random.default_rng(seed)
    if alpha is not None:
        share_of = rng.dirichlet([positive("alpha", alpha)] * clients, size=num_classes)  # [C, K]
    else:
        m = positive_int("classes_per_client", classes_per_client)
        if m > num_classes:
            raise ValueError(f"classes_per_client must be <= the {num_classes} classes, got {m}")
        order = rng.permutation(num_classes)
        share_of = np.zeros((num_classes, clients))  # [C, K]
        for k in range(clients):
            for j in range(m):
                share_of[order[(k * m + j) % num_classes], k] = 1.0
        share_of = share_of / np.maximum(share_of.sum(1, keepdims=True), 1.0)
    parts: list[list[Tensor]] = [[] for _ in range(clients)]
    labels = y.numpy()
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        idx = idx[np.random.default_rng([seed, c]).permutation(len(idx))]
        cuts = np.round(np.cumsum(share_of[c]) * len(idx)).astype(int)  # [K]
        for k, chunk in enumerate(np.split(idx, cuts[:-1])):
            if share_of[c, k] > 0:
                parts[k].append(torch.as_tensor(chunk, dtype=torch.int64))
    out = []
    for k, chunks in enumerate(parts):
        idx = torch.cat(chunks) if chunks else torch.empty(0, dtype=torch.int64)  # [N_k]
        if len(idx) == 0:
            raise ValueError(
                f"client {k} would get no example (clients={clients}, alpha={alpha!r}, "
                f"classes_per_client={classes_per_client!r}); use fewer clients or a larger alpha"
            )
        idx = idx.sort().values
        out.append((x[idx], y[idx]))
    return out
