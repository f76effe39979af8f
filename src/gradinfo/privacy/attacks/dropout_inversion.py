"""The Dropout Inversion Attack (DIA): optimise the client's unknown dropout masks jointly with the input.

Scheliga et al., "Dropout is NOT All You Need to Prevent Gradient Leakage", 2023 (paper 2). A client that
trains with dropout computes its gradient with random masks m* the server never sees, so a plain attack
(Inverting Gradients) matches the wrong function and fails. DIA replaces every ``nn.Dropout(p)`` (p > 0) by
``x * m / (1 - p)`` with a free mask m of the activation's shape and solves

    min_{x in box, m in [0, 1]}  1 - cos(grad_theta CE(f(x; m), y), g*) + 1e-5 TV(x)
                                 + 1e-4 sum_l |(1 - mean m_l) - p_l|

with Adam (lr 0.1; signed gradient on x, plain on m; masks initialised from Bernoulli(1 - p) and clipped to
[0, 1] after every step; x clipped to the data range), decaying a restart's step size x0.1 after 800 steps
without improvement (ReduceLROnPlateau) and keeping its best iterate: the official defaults
(dAI-SY-Group/DropoutInversionAttack, ``example_configs/attacks/DIA.yaml``), except the iteration budget
(20,000 there, with early stopping after 4,000 steps without improvement). Labels are known to the attacker
in the paper; here they default to :func:`label_recovery` (exact at B = 1). A model without dropout leaves
no mask to optimise, and DIA is then Inverting Gradients with these settings, as in the official code.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradinfo.core.registry import Conformance, register
from gradinfo.privacy.attacks._common import check_attack_args, example_model, example_update
from gradinfo.privacy.attacks.label_recovery import label_recovery
from gradinfo.privacy.attacks.matching import match_gradients
from gradinfo.privacy.attacks.optimizers import Adam, Plateau
from gradinfo.privacy.attacks.search import InputsAndDropoutMasks
from gradinfo.privacy.threat import Reconstruction, SharedUpdate


@register(
    "dropout_inversion",
    family="privacy",
    paper=2,
    summary="Gradient inversion jointly optimising the dummy input and the unknown dropout masks (cos + TV)",
    claim="gradinfo.claims.dropout_inversion:check",
    example="gradinfo.privacy.attacks.dropout_inversion:CONFORMANCE",
)
def dropout_inversion(
    model: nn.Module,
    update: SharedUpdate,
    *,
    input_shape: tuple[int, ...],
    iterations: int = 1000,
    restarts: int = 1,
    lr: float = 0.1,
    tv: float = 1e-5,
    mask_reg: float = 1e-4,
    patience: int = 800,
    box: tuple[float, float] = (0.0, 1.0),
    labels: Tensor | None = None,
    seed: int = 0,
) -> Reconstruction:
    """Reconstruct the inputs of a client that trained with dropout (DIA, "Dropout is NOT All You Need to
    Prevent Gradient Leakage", 2023).

    Minimises ``1 - cos(grad_theta CE(f(x; m), y), g*) + tv TV(x) + mask_reg sum_l |(1 - mean m_l) - p_l|``
    over the input x (signed Adam, boxed) and one mask m_l per dropout layer (Adam, clipped to [0, 1]).

    Args:
        model: the round-start model with its ``nn.Dropout`` modules (their ``p`` is public).
        update: the shared batch-mean gradient (``kind == "gradient"``), computed in train mode.
        input_shape: one example's shape, e.g. ``(3, 32, 32)``.
        iterations: Adam steps, >= 1 (the paper: up to 20,000).
        restarts: random initialisations (inputs and masks) run together, >= 1 (the paper: 1).
        lr: Adam's step size, > 0.
        tv: weight of the total-variation prior, >= 0.
        mask_reg: weight of the mask-rate regulariser, >= 0.
        patience: steps without improvement before a restart's step size is cut x0.1, >= 1.
        box: the data range ``(low, high)``.
        labels: the batch's labels ``[B]`` if known; None recovers them with :func:`label_recovery`.
        seed: seeds the initialisations.

    Returns:
        A ``Reconstruction`` with ``inputs`` ``[B, *input_shape]``, ``labels`` ``[B]``, the objective per
        iteration, and ``extras``: ``masks`` ``{dropout module name: [B, ...]}`` (the recovered masks, in
        [0, 1]), ``restart_losses`` ``[R]``, ``best_restart``.

    Raises:
        TypeError, ValueError: a bad argument or an update that does not fit the model, before any work.
    """
    batch, input_shape = check_attack_args(
        model, update, input_shape=input_shape, iterations=iterations, restarts=restarts
    )
    search = InputsAndDropoutMasks(input_shape, box, mask_reg=mask_reg)
    optimizer = Adam(lr, signed=True, schedule=Plateau(patience))
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
    return result.reconstruction(labels, masks=result.masks)


CONFORMANCE = Conformance(
    call=lambda seed: (
        dropout_inversion(
            example_model(seed, dropout=0.5),
            example_update(seed, dropout=0.5),
            input_shape=(3, 8, 8),
            iterations=3,
            seed=seed,
        ).inputs
    ),
    bad_calls=(
        lambda: dropout_inversion(example_model(0), example_update(0), input_shape=(3, 8, 8), iterations=0),
        lambda: dropout_inversion(example_model(0), example_update(0), input_shape=(3, 8, 8), mask_reg=-1.0),
        lambda: dropout_inversion(example_model(0), example_update(0), input_shape=(3, 8, 8), patience=0),
        lambda: dropout_inversion(example_model(0), example_update(0), input_shape=(8, 8)),
        lambda: dropout_inversion(
            example_model(0), example_update(0), input_shape=(3, 8, 8), labels=torch.tensor([0, 1])
        ),
    ),
)
