"""HyperFL: a hypernetwork generates each client's feature extractor; only the hypernetwork is shared.

Guo et al., "A New Federated Learning Framework Against Gradient Inversion Attacks" (2024). Client i's
model is a classifier head g(.; phi_i) on a feature extractor f(.; theta_i) whose weights are generated
from a private client embedding v_i by a hypernetwork h shared by all clients:

    theta_i = h(v_i; varphi),    y_hat = g(f(x; theta_i); phi_i).

Locally the gradient reaches the hypernetwork through the generated weights,
grad_varphi L = J_h(v_i)^T grad_theta L; v_i and phi_i are trained locally and never leave the client;
only varphi (its update) is sent, and the server averages it weighted by client data size (FedAvg on
varphi). An attacker inverting the shared update must therefore invert through the unknown, v_i-dependent
Jacobian J_h(v_i) with an unknown head.

Following the official code (github.com/Pengxin-Guo/HyperFL, ``cnn/``): the hypernetwork is
``Linear(embed_dim, hidden_dim) -> ReLU`` followed by one linear map per extractor parameter; a round of
local training is first ``head_epochs`` epochs on the head alone (SGD, lr 0.1, momentum 0.5, weight decay
5e-4), then ``local_epochs`` epochs on the hypernetwork and the embedding (SGD, lr 0.02, momentum 0.5,
weight decay 5e-4, gradients clipped to norm 50 separately for each), minibatches of 50.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from gradinfo.core.registry import Conformance, register
from gradinfo.core.types import Grads, LossFn
from gradinfo.core.validate import positive, positive_int
from gradinfo.privacy.fedavg import Client, FedHistory, accuracy, weighted_average
from gradinfo.privacy.threat import SharedUpdate, share

PERSONAL: tuple[str, ...] = ("embedding", "head")
"""Parameter-name prefixes of a :class:`HyperFLNet` that stay on the client."""


class HyperFLNet(nn.Module):
    """One HyperFL client model: ``head(extractor(x; hypernetwork(embedding)))``.

    Parameters (as ``named_parameters()`` names them): ``embedding`` ``[embed_dim]`` (private),
    ``hypernetwork.*`` (shared), ``head.*`` (private). The extractor holds no parameters of its own: its
    weights are generated at every forward.
    """

    def __init__(self, extractor: nn.Module, head: nn.Module, embed_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.randn(embed_dim))  # [E], N(0, 1) as nn.Embedding
        self.hypernetwork = nn.ModuleDict(
            {"body": nn.Sequential(nn.Linear(embed_dim, hidden_dim), nn.ReLU())}
        )
        self.shapes: dict[str, tuple[int, ...]] = {}
        for name, p in list(extractor.named_parameters()):
            self.shapes[name] = tuple(p.shape)
            self.hypernetwork[_key(name)] = nn.Linear(hidden_dim, p.numel())
            owner = extractor.get_submodule(name.rpartition(".")[0]) if "." in name else extractor
            leaf = name.rpartition(".")[2]
            del owner._parameters[leaf]
            owner.register_buffer(leaf, torch.zeros(p.shape), persistent=False)
        self.extractor = extractor
        self.head = head

    def generate(self, embedding: Tensor | None = None) -> dict[str, Tensor]:
        """The extractor's weights theta = h(v) for ``embedding`` v ``[embed_dim]`` (default: own)."""
        v = self.embedding if embedding is None else embedding  # [E]
        hidden = self.hypernetwork["body"](v)  # [H]
        return {n: self.hypernetwork[_key(n)](hidden).view(s) for n, s in self.shapes.items()}

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, classes]`` for inputs ``x`` ``[B, ...]``."""
        return self.head(functional_call(self.extractor, self.generate(), (x,)))


def _key(name: str) -> str:
    return name.replace(".", "_")


@register(
    "hyperfl",
    family="privacy",
    paper=30,
    summary="FL defence: a hypernetwork makes client extractors from private embeddings; only it is shared",
    claim="gradinfo.claims.hyperfl:check",
    example="gradinfo.privacy.defenses.hyperfl:CONFORMANCE",
)
def hyperfl_model(
    extractor: nn.Module, head: nn.Module, *, embed_dim: int = 64, hidden_dim: int = 128, seed: int = 0
) -> HyperFLNet:
    """Wrap ``head(extractor(x))`` as a HyperFL client model whose extractor weights come from a hypernetwork.

    HyperFL (Guo et al., "A New Federated Learning Framework Against Gradient Inversion Attacks", 2024):
    theta = h(v; varphi) with h(v) = W_p ReLU(W_0 v + b_0) + b_p for each extractor parameter p, and
    y_hat = g(f(x; theta); phi). Only varphi is shared; v and phi stay on the client.

    Args:
        extractor: the feature extractor f; it is deep-copied, and its parameters become generated
            weights (their values are discarded).
        head: the classifier g on the extractor's output (deep-copied, keeps its weights).
        embed_dim: size of the client embedding v (official default 64).
        hidden_dim: width of the hypernetwork's hidden layer (official default 128).
        seed: int >= 0 initialising the embedding and the hypernetwork (the global RNG is left as it was).

    Returns:
        A :class:`HyperFLNet`; ``PERSONAL`` names its private parameter prefixes.

    Raises:
        TypeError, ValueError: non-module extractor/head, an extractor without parameters, bad sizes.
    """
    for name, m in (("extractor", extractor), ("head", head)):
        if not isinstance(m, nn.Module):
            raise TypeError(f"{name} must be an nn.Module, got {type(m).__name__}")
    if not any(True for _ in extractor.parameters()):
        raise ValueError("extractor has no parameters: there are no weights for the hypernetwork to generate")
    embed_dim = positive_int("embed_dim", embed_dim)
    hidden_dim = positive_int("hidden_dim", hidden_dim)
    seed = positive_int("seed", seed, minimum=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return HyperFLNet(copy.deepcopy(extractor), copy.deepcopy(head), embed_dim, hidden_dim)


def hyperfl_share(
    model: HyperFLNet, loss_fn: LossFn, inputs: Tensor, targets: Tensor, **kwargs: Any
) -> SharedUpdate:
    """What a HyperFL client sends: :func:`gradinfo.privacy.share` restricted to the hypernetwork.

    The embedding and the head are frozen on a copy, so the update (gradient, or delta after
    ``local_steps``) holds only ``hypernetwork.*`` entries, computed at this client's embedding and head.

    Args:
        model: the client's :class:`HyperFLNet`.
        loss_fn, inputs, targets, **kwargs: as :func:`gradinfo.privacy.share`.

    Returns:
        A ``SharedUpdate`` keyed by the hypernetwork's parameter names.

    Raises:
        TypeError: ``model`` is not a ``HyperFLNet``; otherwise as ``share``.
    """
    if not isinstance(model, HyperFLNet):
        raise TypeError(f"model must be a HyperFLNet (see hyperfl_model), got {type(model).__name__}")
    client = copy.deepcopy(model)
    for name, p in client.named_parameters():
        p.requires_grad_(not name.startswith(PERSONAL))
    return share(client, loss_fn, inputs, targets, **kwargs)


def _epochs(
    model: HyperFLNet,
    params: list[nn.Parameter],
    groups: list[list[nn.Parameter]],
    data: Client,
    epochs: int,
    batch_size: int,
    lr: float,
    clip: float | None,
    loss_fn: LossFn,
) -> float:
    """SGD (momentum 0.5, weight decay 5e-4) on ``params`` for ``epochs`` epochs; returns the mean loss."""
    x, y = data
    opt = torch.optim.SGD(params, lr=lr, momentum=0.5, weight_decay=5e-4)
    losses = []
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(batch_size):  # [b] each
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            if clip is not None:
                for group in groups:
                    torch.nn.utils.clip_grad_norm_(group, clip)
            opt.step()
            losses.append(float(loss.detach()))
    return float(np.mean(losses))


def hyperfl_train(
    model_fn: Callable[[], HyperFLNet],
    clients: list[Client],
    rounds: int,
    *,
    test: list[Client],
    local_epochs: int = 5,
    head_epochs: int = 1,
    batch_size: int = 50,
    lr: float = 0.02,
    head_lr: float = 0.1,
    clip: float = 50.0,
    loss_fn: LossFn = F.cross_entropy,
    seed: int = 0,
) -> FedHistory:
    """Federated HyperFL training: clients keep embedding and head, the server averages the hypernetwork.

    Round t, client i (the official schedule): ``head_epochs`` epochs on phi_i alone (lr ``head_lr``), then
    ``local_epochs`` epochs on (varphi, v_i) (lr ``lr``, gradient norms of each clipped to ``clip``), SGD
    with momentum 0.5 and weight decay 5e-4 on minibatches of ``batch_size``. The server sets
    varphi_{t+1} = sum_i n_i varphi_i / sum_i n_i and sends it back. Every client starts from the same
    ``model_fn()`` (so from the same embedding; local training separates them).

    Args:
        model_fn: builds the client model, identically on every call (e.g. ``lambda: hyperfl_model(...)``).
        clients: one ``(inputs [N_i, ...], targets [N_i])`` pair per client.
        rounds: communication rounds, >= 1.
        test: one ``(inputs, targets)`` pair per client, scored with that client's model.
        local_epochs, head_epochs: epochs of each local phase, >= 1 and >= 0.
        batch_size: minibatch size, >= 1.
        lr, head_lr: learning rates of the hypernetwork/embedding phase and of the head phase, > 0.
        clip: gradient-norm bound of the hypernetwork and of the embedding, > 0.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``.
        seed: int >= 0 seeding the minibatch order.

    Returns:
        A :class:`~gradinfo.privacy.fedavg.FedHistory` (accuracy before training and after each round,
        averaged over clients weighted by test size; ``personal`` holds each client's embedding and head).

    Raises:
        TypeError, ValueError: a bad argument, before any training.
    """
    if not callable(model_fn):
        raise TypeError(f"model_fn must be a callable returning a HyperFLNet, got {type(model_fn).__name__}")
    if (
        not isinstance(clients, list)
        or not clients
        or not isinstance(test, list)
        or len(test) != len(clients)
    ):
        raise ValueError(
            f"clients and test must be lists of (inputs, targets) pairs of equal, non-zero length, got "
            f"{type(clients).__name__} and {type(test).__name__}"
        )
    rounds = positive_int("rounds", rounds)
    local_epochs = positive_int("local_epochs", local_epochs)
    head_epochs = positive_int("head_epochs", head_epochs, minimum=0)
    batch_size = positive_int("batch_size", batch_size)
    lr, head_lr, clip = positive("lr", lr), positive("head_lr", head_lr), positive("clip", clip)
    seed = positive_int("seed", seed, minimum=0)
    models = [model_fn() for _ in clients]
    if not isinstance(models[0], HyperFLNet):
        raise TypeError(f"model_fn() must return a HyperFLNet, got {type(models[0]).__name__}")

    begin = time.perf_counter()
    sizes = [float(len(y)) for _, y in clients]

    def score() -> float:
        hits = sum(accuracy(m, xt, yt) * len(yt) for m, (xt, yt) in zip(models, test, strict=True))
        return hits / sum(len(yt) for _, yt in test)

    history, losses = [score()], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(rounds):
            shared, round_loss = [], []
            for m, data in zip(models, clients, strict=True):
                m.train()
                head = list(m.head.parameters())
                if head_epochs:
                    _epochs(m, head, [], data, head_epochs, batch_size, head_lr, None, loss_fn)
                hyper = list(m.hypernetwork.parameters())
                body = [*hyper, m.embedding]
                round_loss.append(
                    _epochs(
                        m, body, [hyper, [m.embedding]], data, local_epochs, batch_size, lr, clip, loss_fn
                    )
                )
                shared.append({n: p.detach().clone() for n, p in m.hypernetwork.named_parameters()})
            mean = weighted_average(shared, sizes)
            for m in models:
                with torch.no_grad():
                    for n, p in m.hypernetwork.named_parameters():
                        p.copy_(mean[n])
            losses.append(float(np.mean(round_loss)))
            history.append(score())
    personal: list[Grads] = [
        {n: p.detach().clone() for n, p in m.named_parameters() if n.startswith(PERSONAL)} for m in models
    ]
    return FedHistory(history, losses, models[0], personal, time.perf_counter() - begin)


def _tiny(seed: int) -> HyperFLNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Linear(3, 2)
    return hyperfl_model(nn.Linear(4, 3), head, embed_dim=2, hidden_dim=3, seed=seed)


CONFORMANCE = Conformance(
    call=lambda seed: (
        hyperfl_share(
            _tiny(seed), F.cross_entropy, torch.linspace(-1, 1, 8).view(2, 4), torch.tensor([0, 1])
        ).grads
    ),
    bad_calls=(
        lambda: hyperfl_model(nn.ReLU(), nn.Linear(3, 2)),
        lambda: hyperfl_model(nn.Linear(4, 3), "head"),  # type: ignore[arg-type]
        lambda: hyperfl_model(nn.Linear(4, 3), nn.Linear(3, 2), embed_dim=0),
        lambda: hyperfl_share(nn.Linear(4, 2), F.cross_entropy, torch.zeros(1, 4), torch.zeros(1).long()),  # type: ignore[arg-type]
    ),
)
