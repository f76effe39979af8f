"""Inversion of a multi-step FedAvg update by unrolling the client's local SGD steps on the dummy data.

A FedAvg client runs K full-batch SGD steps ``theta_{k+1} = theta_k - lr grad L(theta_k; x, y)`` and shares
``Delta = theta_0 - theta_K`` (:func:`gradinfo.privacy.share` with ``local_steps = K``). Matching ``Delta``
with a single gradient is only right for K = 1; following the survey (Guo et al., "Exploring the
Vulnerabilities of Federated Learning: A Deep Dive into Gradient Inversion Attacks", 2025; paper 4) and
the unrolled attack of Geiping et al. ("Inverting Gradients", 2020, multi-step section), the attacker
replays the K steps differentiably on the dummy batch (``torch.func.functional_call`` and
``torch.func.grad``, so restarts run batched) and matches the resulting delta:

    x* = argmin_{x in box}  1 - cos(theta_0 - U_K(theta_0; x, y), Delta) + alpha_TV TV(x),
    U_{k+1} = U_k - lr grad_theta CE(f(x; U_k), y),  U_0 = theta_0,

with ``K`` and ``lr`` read from the update's public metadata. Labels come from :func:`label_recovery`
applied to ``Delta / (lr K)``, the mean gradient along the trajectory (exact at B = 1: every step's bias
gradient is negative only at the true class), unless given.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradinfo.core.registry import Conformance, register
from gradinfo.core.types import Grads
from gradinfo.core.validate import positive, positive_int
from gradinfo.privacy.attacks._common import check_attack_args, example_model
from gradinfo.privacy.attacks.label_recovery import label_recovery
from gradinfo.privacy.attacks.matching import match_gradients
from gradinfo.privacy.attacks.objective import UpdateFn, loss_gradient
from gradinfo.privacy.attacks.optimizers import Adam, MultiStep
from gradinfo.privacy.attacks.search import Inputs
from gradinfo.privacy.threat import Reconstruction, SharedUpdate, share


def unrolled_delta(steps: int, lr: float) -> UpdateFn:
    """The update ``theta_0 - theta_K`` of ``steps`` full-batch SGD steps (a match_gradients ``update_fn``).

    Args:
        steps: K >= 1 (K = 1 gives ``lr`` times the batch-mean gradient).
        lr: the client's learning rate, > 0.

    Returns:
        ``update_fn(net, params, buffers, inputs, targets) -> Grads``, differentiable in the inputs and
        ``vmap``-compatible.
    """
    steps = positive_int("steps", steps)
    lr = positive("lr", lr)

    def update_fn(
        net: nn.Module, params: Grads, buffers: dict[str, Tensor], inputs: Tensor, targets: Tensor
    ) -> Grads:
        current = dict(params)
        for _ in range(steps):
            grads = loss_gradient(net, current, buffers, inputs, targets)
            current = {n: current[n] - lr * grads[n] for n in current}
        return {n: params[n] - current[n] for n in params}

    return update_fn


@register(
    "local_steps_inversion",
    family="privacy",
    paper=4,
    summary="Inverts a K-step FedAvg delta by unrolling the local SGD steps on the dummy batch (cosine + TV)",
    claim="gradinfo.claims.local_steps_inversion:check",
    example="gradinfo.privacy.attacks.local_steps_inversion:CONFORMANCE",
)
def local_steps_inversion(
    model: nn.Module,
    update: SharedUpdate,
    *,
    input_shape: tuple[int, ...],
    iterations: int = 1000,
    restarts: int = 4,
    lr: float = 0.1,
    tv: float = 1e-4,
    box: tuple[float, float] = (0.0, 1.0),
    labels: Tensor | None = None,
    seed: int = 0,
) -> Reconstruction:
    """Reconstruct the client's batch from its weight delta after K local SGD steps.

    The multi-step setting of "Exploring the Vulnerabilities of Federated Learning: A Deep Dive into
    Gradient Inversion Attacks" (2025): minimise ``1 - cos(theta_0 - U_K(theta_0; x, y), Delta) + tv TV(x)``
    with ``U_K`` the K SGD steps of rate ``update.lr`` replayed on the dummy batch, by signed Adam with
    batched restarts. For ``update.local_steps == 1`` this is Inverting Gradients.

    Args:
        model: the round-start model.
        update: the shared update, ``kind == "delta"`` (or ``"gradient"`` for K = 1), undefended.
        input_shape: one example's shape, e.g. ``(1, 8, 8)``.
        iterations: Adam steps, >= 1.
        restarts: random initialisations run together, >= 1.
        lr: Adam's initial step size (not the client's learning rate, which comes from ``update.lr``), > 0.
        tv: weight of the total-variation prior, >= 0.
        box: the data range ``(low, high)``.
        labels: the batch's labels ``[B]`` if known; None recovers them from ``Delta / (lr K)``.
        seed: seeds the initialisations and the label probes.

    Returns:
        A ``Reconstruction`` with ``inputs`` ``[B, *input_shape]``, ``labels`` ``[B]``, the chosen restart's
        objective per iteration, and ``extras``: ``restart_losses`` ``[R]``, ``best_restart``.

    Raises:
        TypeError, ValueError: a bad argument or an update that does not fit the model, before any work.
    """
    batch, input_shape = check_attack_args(
        model, update, input_shape=input_shape, iterations=iterations, restarts=restarts, gradient=False
    )
    steps = positive_int("update.local_steps", update.local_steps)
    client_lr = positive("update.lr", update.lr)
    search = Inputs(input_shape, box)
    optimizer = Adam(lr, signed=True, schedule=MultiStep())
    if labels is None:
        scale = 1.0 if update.kind == "gradient" else 1.0 / (client_lr * steps)
        mean_grad = {n: g * scale for n, g in update.grads.items()}
        proxy = dataclasses.replace(update, grads=mean_grad, kind="gradient", local_steps=1)
        labels = label_recovery(model, proxy, input_shape=input_shape, box=box, seed=seed).labels
    result = match_gradients(
        model,
        update.grads,
        search,
        batch_size=batch,
        labels=labels,
        iterations=iterations,
        optimizer=optimizer,
        restarts=restarts,
        tv=tv,
        update_fn=loss_gradient if update.kind == "gradient" else unrolled_delta(steps, client_lr),
        seed=seed,
    )
    return result.reconstruction(labels)


def _example_update(seed: int) -> SharedUpdate:
    gen = torch.Generator().manual_seed(seed)
    x, y = (
        torch.rand(2, 3, 8, 8, generator=gen),
        torch.randint(0, 4, (2,), generator=gen),
    )  # [2, 3, 8, 8], [2]
    return share(example_model(seed), F.cross_entropy, x, y, local_steps=3, lr=0.1, seed=seed)


CONFORMANCE = Conformance(
    call=lambda seed: (
        local_steps_inversion(
            example_model(seed),
            _example_update(seed),
            input_shape=(3, 8, 8),
            iterations=2,
            restarts=2,
            seed=seed,
        ).inputs
    ),
    bad_calls=(
        lambda: local_steps_inversion(example_model(0), "delta", input_shape=(3, 8, 8)),  # type: ignore[arg-type]
        lambda: local_steps_inversion(
            example_model(0), _example_update(0), input_shape=(3, 8, 8), iterations=0
        ),
        lambda: local_steps_inversion(example_model(0), _example_update(0), input_shape=(3, -8, 8)),
        lambda: unrolled_delta(0, 0.1),
    ),
)
