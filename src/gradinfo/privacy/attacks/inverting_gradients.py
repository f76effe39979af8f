"""Inverting Gradients: cosine gradient matching with a total-variation prior, signed Adam, box constraints.

Geiping et al., "Inverting Gradients - How easy is it to break privacy in federated learning?", 2020, as
surveyed in Guo et al., "Exploring the Vulnerabilities of Federated Learning: A Deep Dive into Gradient
Inversion Attacks", 2025 (paper 4). With labels y from :func:`label_recovery` (exact at B = 1):

    x* = argmin_{x in [low, high]^n}  1 - <grad_theta L(x, y), g*> / (||grad_theta L(x, y)|| ||g*||)
                                      + alpha_TV TV(x)

optimised by Adam on the sign of the input gradient (lr 0.1, decayed x0.1 at 3/8, 5/8 and 7/8 of the
iterations), clipping x to the data range after every step; R random restarts run together and the one with
the lowest objective is returned. The paper runs 24,000 iterations; the default here (1,000) is sized for a
CPU (see docs/benchmarks.md, "## attacks"). The TV weight depends on the data scale and model (the
reference implementations use 1e-6 to 0.2); the default 1e-2 is the one measured best on the default audit
case, images in [0, 1] on a small CNN (mean PSNR over 4 victims, 1,000 steps, 1 restart: 26.3 dB at 1e-2,
16.2 dB at 1e-4).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradinfo.core.registry import Conformance, register
from gradinfo.core.validate import one_of
from gradinfo.privacy.attacks._common import check_attack_args, example_model, example_update
from gradinfo.privacy.attacks.label_recovery import label_recovery
from gradinfo.privacy.attacks.matching import match_gradients
from gradinfo.privacy.attacks.optimizers import Adam, Constant, MultiStep, Plateau
from gradinfo.privacy.attacks.search import Inputs
from gradinfo.privacy.threat import Reconstruction, SharedUpdate

SCHEDULES = {"multistep": MultiStep(), "plateau": Plateau(patience=800), "none": Constant()}
"""The ``schedule`` names :func:`inverting_gradients` takes and the step-size schedules they stand for."""


@register(
    "inverting_gradients",
    family="privacy",
    paper=4,
    summary="Inversion by signed Adam on a boxed dummy input minimising cosine gradient distance + TV",
    claim="gradinfo.claims.inverting_gradients:check",
    example="gradinfo.privacy.attacks.inverting_gradients:CONFORMANCE",
)
def inverting_gradients(
    model: nn.Module,
    update: SharedUpdate,
    *,
    input_shape: tuple[int, ...],
    iterations: int = 1000,
    restarts: int = 4,
    lr: float = 0.1,
    tv: float = 1e-2,
    box: tuple[float, float] = (0.0, 1.0),
    labels: Tensor | None = None,
    schedule: str = "multistep",
    seed: int = 0,
) -> Reconstruction:
    """Reconstruct the client's inputs by Inverting Gradients (Geiping et al., 2020).

    The optimisation-based attack (OP-GIA) of "Exploring the Vulnerabilities of Federated Learning: A Deep
    Dive into Gradient Inversion Attacks" (2025): minimise
    ``1 - cos(grad_theta CE(f(x), y), g*) + tv * TV(x)`` over ``x`` in the box by signed Adam with a
    multi-step learning-rate decay, keeping the best of ``restarts`` batched restarts.

    Args:
        model: the round-start model (run in eval mode: the attacker does not know dropout masks).
        update: the shared batch-mean gradient (``kind == "gradient"``).
        input_shape: one example's shape, e.g. ``(3, 32, 32)`` (public: the data format).
        iterations: Adam steps, >= 1.
        restarts: random initialisations run together, >= 1.
        lr: Adam's initial step size, > 0.
        tv: weight of the total-variation prior, >= 0.
        box: the data range ``(low, high)``; inputs start uniform in it and are clipped to it.
        labels: the batch's labels ``[B]`` if known; None recovers them with :func:`label_recovery`.
        schedule: ``"multistep"`` (the paper's: x0.1 at 3/8, 5/8 and 7/8 of the iterations), ``"plateau"``
            (x0.1 for a restart that has not improved for 800 steps) or ``"none"``.
        seed: seeds the initialisations (and the label-recovery probes).

    Returns:
        A ``Reconstruction`` with ``inputs`` ``[B, *input_shape]``, ``labels`` ``[B]``, the chosen
        restart's objective per iteration, and ``extras``: ``restart_losses`` ``[R]``, ``best_restart``,
        ``restart_inputs`` ``[R, B, *input_shape]``.

    Raises:
        TypeError, ValueError: a bad argument or an update that does not fit the model, before any work.
    """
    batch, input_shape = check_attack_args(
        model, update, input_shape=input_shape, iterations=iterations, restarts=restarts
    )
    search = Inputs(input_shape, box)
    optimizer = Adam(lr, signed=True, schedule=SCHEDULES[one_of("schedule", schedule, tuple(SCHEDULES))])
    if labels is None:
        labels = label_recovery(model, update, input_shape=input_shape, box=box, seed=seed).labels
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
        seed=seed,
    )
    return result.reconstruction(labels, restart_inputs=result.restart_inputs)


CONFORMANCE = Conformance(
    call=lambda seed: (
        inverting_gradients(
            example_model(seed),
            example_update(seed),
            input_shape=(3, 8, 8),
            iterations=3,
            restarts=2,
            seed=seed,
        ).inputs
    ),
    bad_calls=(
        lambda: inverting_gradients(example_model(0), example_update(0), input_shape=(3, 8, 8), iterations=0),
        lambda: inverting_gradients(example_model(0), example_update(0), input_shape=(3, 8, 8), restarts=0),
        lambda: inverting_gradients(example_model(0), example_update(0), input_shape=(3, 0, 8)),
        lambda: inverting_gradients(example_model(0), None, input_shape=(3, 8, 8)),  # type: ignore[arg-type]
        lambda: inverting_gradients(
            example_model(0), example_update(0), input_shape=(3, 8, 8), labels=torch.tensor([1.0])
        ),
    ),
)
