"""The threat model: what a federated client shares, and what an attack returns.

Following the survey of gradient inversion (Guo et al., "Exploring the Vulnerabilities of Federated
Learning: A Deep Dive into Gradient Inversion Attacks", 2025; paper 4), an honest-but-curious server sees
one client's update and the global model at round start, nothing else. ``share`` produces exactly that
update:

- ``local_steps = 1`` (FedSGD): the batch-mean gradient g = (1/B) sum_i grad_theta loss(f(x_i), y_i), in the
  model's current mode (in train mode dropout is active, with masks the attacker does not know).
- ``local_steps = K > 1`` (FedAvg): the weight delta theta_0 - theta_K after K full-batch SGD steps
  theta_{k+1} = theta_k - lr g_k, i.e. lr sum_k g_k.

A defense then protects the update. A ``GradTransform`` (clip, noise, top-k, quantise, sketch, ...) is
applied once to the gradient or delta. ``DPSGD`` instead changes how each step's gradient is formed (Abadi
et al., "Deep Learning with Differential Privacy", 2016): g = (sum_i clip_C(g_i) + N(0, sigma^2 C^2 I)) / B,
with clip_C(g) = g min(1, C / ||g||), which needs the per-example gradients only the client has. A tuple
composes them: ``(DPSGD(C, sigma), sketch(s))`` runs DP-SGD at every local step and sketches the result
(the paper-6 remedy; post-processing keeps the DP guarantee); ``(t1, t2, ...)`` chains transforms.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from gradinfo.capture import batch_grads, clipped_grad_sum
from gradinfo.core.types import Grads, LossFn
from gradinfo.core.validate import positive, positive_int
from gradinfo.transform import GradTransform, chain


@dataclass(frozen=True)
class DPSGD:
    """The DP-SGD defense: clip each example's gradient to ``max_norm``, add noise of std sigma * max_norm.

    Pass it as ``share(..., defense=DPSGD(max_norm, noise_multiplier))``; every local step's gradient is
    ``(clipped_grad_sum + N(0, (noise_multiplier * max_norm)^2 I)) / B``. Account for its privacy with
    :func:`gradinfo.privacy.epsilon` (sample rate B / dataset size, steps = rounds x local steps): the
    federated loops (:func:`gradinfo.privacy.fedavg.fedavg`, Flower) draw DP minibatches by Poisson
    sampling at that rate, which is what the accountant assumes.

    Attributes:
        max_norm: the clipping bound C, > 0.
        noise_multiplier: sigma, >= 0 (0 gives clipping alone, which is not private).
    """

    max_norm: float
    noise_multiplier: float

    def __post_init__(self) -> None:
        positive("max_norm", self.max_norm)
        positive("noise_multiplier", self.noise_multiplier, allow_zero=True)

    def describe(self) -> str:
        return f"DP-SGD (clip {self.max_norm:g}, noise multiplier {self.noise_multiplier:g})"


Defense = GradTransform | DPSGD | tuple[GradTransform | DPSGD, ...]
"""A defense: one ``GradTransform``, ``DPSGD``, or a plain tuple of them applied in order (``DPSGD`` first, at
most once: it acts at every local step, the transforms once on the result). ``GradTransform`` is itself a
named tuple; it always counts as one transform."""


def split_defense(
    defense: Defense | None, name: str = "defense"
) -> tuple[DPSGD | None, GradTransform | None]:
    """``(dp, transform)``: the DP-SGD step rule and the transform (a ``chain`` of several) of ``defense``.

    Args:
        defense: None, a ``GradTransform``, ``DPSGD``, or a non-empty tuple of them with ``DPSGD`` only
            first.
        name: the argument's name in error messages.

    Returns:
        ``(DPSGD or None, GradTransform or None)``.

    Raises:
        TypeError: an element that is neither; ValueError: an empty tuple, or ``DPSGD`` not first or twice.
    """
    if defense is None:
        return None, None
    items = (
        (defense,)
        if isinstance(defense, (GradTransform, DPSGD)) or not isinstance(defense, tuple)
        else defense
    )
    if not items:
        raise ValueError(f"{name} must not be an empty tuple; pass None for no defense")
    bad = [type(d).__name__ for d in items if not isinstance(d, (GradTransform, DPSGD))]
    if bad:
        raise TypeError(
            f"{name} must be None, a GradTransform (e.g. gradinfo.transform.topk_sparsify(0.1)), "
            f"DPSGD(max_norm, noise_multiplier) or a tuple of them, got {', '.join(bad)}"
        )
    if any(isinstance(d, DPSGD) for d in items[1:]):
        raise ValueError(
            f"{name}: DPSGD may only come first in a tuple (it acts at every local step, the transforms "
            f"after it once on the update), got {', '.join(type(d).__name__ for d in items)}"
        )
    dp = items[0] if isinstance(items[0], DPSGD) else None
    rest = [d for d in items if isinstance(d, GradTransform)]
    transform = None if not rest else rest[0] if len(rest) == 1 else chain(*rest)
    return dp, transform


def describe_defense(defense: Defense | None) -> str:
    """A human-readable description: ``"none"``, DP-SGD's parameters, the transform factory names, joined."""
    if defense is None:
        return "none"
    items: Sequence[GradTransform | DPSGD] = (
        (defense,) if isinstance(defense, (GradTransform, DPSGD)) else defense
    )
    return " + ".join(
        d.describe() if isinstance(d, DPSGD) else d.update.__qualname__.split(".")[0]  # the factory's name
        for d in items
    )


@dataclass(frozen=True)
class SharedUpdate:
    """What a client sends to the server, with the metadata the server knows anyway.

    Attributes:
        grads: ``{name: param.shape}`` for every trainable parameter (names as ``named_parameters()``),
            after the defense. For ``kind == "gradient"`` the batch-mean gradient; for ``kind == "delta"``
            the weight delta theta_0 - theta_K (divide by ``lr * local_steps`` for the mean gradient along
            the local trajectory).
        kind: ``"gradient"`` (``local_steps == 1``) or ``"delta"`` (``local_steps > 1``).
        batch_size: B, the number of examples behind the update.
        local_steps: K, the number of local full-batch SGD steps.
        lr: the local learning rate (public: the server sets it).
        defense: a human-readable description of the defense ("none" if undefended).
    """

    grads: Grads
    kind: Literal["gradient", "delta"]
    batch_size: int
    local_steps: int
    lr: float
    defense: str


@dataclass(frozen=True)
class Reconstruction:
    """What an attack recovers from a ``SharedUpdate``.

    Attributes:
        inputs: reconstructed inputs ``[B, ...]`` (for text, token ids or embeddings, as the attack states).
        labels: recovered labels ``[B]``, or None when the attack does not recover labels.
        loss_trace: the attack objective at each iteration (empty for closed-form attacks).
        seconds: wall time of the attack.
        extras: attack-specific results (e.g. recovered dropout masks, restart losses).
    """

    inputs: Tensor
    labels: Tensor | None
    loss_trace: list[float]
    seconds: float
    extras: dict[str, Any] = field(default_factory=dict)


def _check(
    model: Any, loss_fn: Any, inputs: Any, targets: Any, defense: Any, lr: Any, seed: Any, name: Any
) -> int:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(
            "model has no trainable parameters (requires_grad=True): there is no update to share"
        )
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be callable as loss_fn(outputs, targets), got {type(loss_fn).__name__}"
        )
    for arg, t in (("inputs", inputs), ("targets", targets)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{arg} must be a torch.Tensor [B, ...], got {type(t).__name__}")
        if t.dim() == 0 or t.shape[0] == 0:
            raise ValueError(f"{arg} must be a non-empty batch [B, ...], got shape {tuple(t.shape)}")
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(
            f"inputs and targets must have the same batch size, got {inputs.shape[0]} and {targets.shape[0]}"
        )
    split_defense(defense)
    positive("lr", lr)
    positive_int("seed", seed, minimum=0)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"defense_name must be a str or None, got {type(name).__name__}")
    return int(inputs.shape[0])


def _step_grad(
    client: nn.Module,
    params: dict[str, nn.Parameter],
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Tensor,
    dp: DPSGD | None,
) -> Grads:
    """The client's gradient at its current parameters: plain batch mean, or DP-SGD's noisy clipped mean."""
    if dp is None:
        return batch_grads(client, loss_fn, inputs, targets).grads
    batch = inputs.shape[0]
    total = clipped_grad_sum(client, loss_fn, inputs, targets, dp.max_norm)
    std = dp.noise_multiplier * dp.max_norm
    return {  # noise from the client's forked RNG, after any dropout masks were drawn
        n: (g + std * torch.randn(g.shape, dtype=g.dtype, device=g.device)) / batch for n, g in total.items()
    }


def share(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Tensor,
    *,
    defense: Defense | None = None,
    local_steps: int = 1,
    lr: float = 0.1,
    seed: int = 0,
    defense_name: str | None = None,
) -> SharedUpdate:
    """What a client holding ``(inputs, targets)`` sends for the global ``model``.

    The client works on a deep copy: the caller's model (parameters, buffers, ``.grad``) and the global RNG
    state are left untouched. The client's own randomness (dropout masks, DP-SGD noise) comes from the
    global generators forked and seeded with ``seed`` (``torch.random.fork_rng``); a ``GradTransform``
    defense draws from its own seed, as every gradinfo transform does.

    Args:
        model: the global model at round start, in the mode the client trains in (``train()`` keeps
            dropout active, ``eval()`` disables it).
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` with mean reduction over the batch (DP-SGD calls it
            on one example at a time).
        inputs: the client's batch ``[B, ...]``.
        targets: its labels ``[B, ...]``.
        defense: None, a ``GradTransform`` (initialised on the round-start parameters and applied once to
            the gradient or delta), ``DPSGD`` (applied at every local step), or a tuple of them (``DPSGD``
            only first; the transforms applied in order), e.g. ``(DPSGD(1.0, sigma), sketch(s, seed))``.
        local_steps: K >= 1 local full-batch SGD steps; K > 1 shares the delta theta_0 - theta_K.
        lr: the local learning rate, > 0 (only used when ``local_steps > 1``, recorded always).
        seed: int >= 0 seeding the client's dropout masks and DP-SGD noise.
        defense_name: overrides the automatic description of the defense (the factory's name for a
            transform, the parameters for DP-SGD).

    Returns:
        A ``SharedUpdate`` with ``grads`` keyed like the model's trainable parameters.

    Raises:
        TypeError, ValueError: an argument of the wrong type or value, before any computation.
    """
    batch = _check(model, loss_fn, inputs, targets, defense, lr, seed, defense_name)
    local_steps = positive_int("local_steps", local_steps)
    lr = float(lr)
    dp, transform = split_defense(defense)

    client = copy.deepcopy(model)
    params = {n: p for n, p in client.named_parameters() if p.requires_grad}
    start = {n: p.detach().clone() for n, p in params.items()}
    devices = sorted({p.device.index or 0 for p in params.values() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        if local_steps == 1:
            update = _step_grad(client, params, loss_fn, inputs, targets, dp)
        else:
            for _ in range(local_steps):
                step = _step_grad(client, params, loss_fn, inputs, targets, dp)
                with torch.no_grad():
                    for n, p in params.items():
                        p.sub_(lr * step[n])
            update = {n: start[n] - p.detach() for n, p in params.items()}
    if transform is not None:
        update, _ = transform.update(update, transform.init(start), start)
    return SharedUpdate(
        grads={n: g.detach() for n, g in update.items()},
        kind="gradient" if local_steps == 1 else "delta",
        batch_size=batch,
        local_steps=local_steps,
        lr=lr,
        defense=defense_name if defense_name is not None else describe_defense(defense),
    )
