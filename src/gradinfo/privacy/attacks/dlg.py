"""Deep Leakage from Gradients: L2 gradient matching over a dummy input and a soft label, by L-BFGS.

Zhu et al., "Deep Leakage from Gradients", 2019, as surveyed in Guo et al., "Exploring the Vulnerabilities
of Federated Learning: A Deep Dive into Gradient Inversion Attacks", 2025 (paper 4):

    (x*, l*) = argmin_{x, l}  sum_params || grad_theta CE(f(x), softmax(l)) - g* ||^2

with x and the label logits l drawn from N(0, 1) and optimised together by L-BFGS (learning rate 1). Each
iteration is one L-BFGS step with a strong-Wolfe line search (the original code runs plain L-BFGS steps,
which diverge more often). The recovered label is ``argmax softmax(l)``. DLG is unconstrained by default
(``box=None``); passing the data range starts x uniform in it and clips after every step.
"""

from __future__ import annotations

from torch import nn

from gradinfo.core.registry import Conformance, register
from gradinfo.privacy.attacks._common import check_attack_args, example_model, example_update
from gradinfo.privacy.attacks.matching import match_gradients
from gradinfo.privacy.attacks.objective import l2_distance
from gradinfo.privacy.attacks.optimizers import LBFGS
from gradinfo.privacy.attacks.search import Inputs
from gradinfo.privacy.threat import Reconstruction, SharedUpdate


@register(
    "dlg",
    family="privacy",
    paper=4,
    summary="Inversion by L-BFGS on a dummy input and soft label minimising the L2 distance to the gradient",
    example="gradinfo.privacy.attacks.dlg:CONFORMANCE",
    claim="gradinfo.claims.dlg:check",
)
def dlg(
    model: nn.Module,
    update: SharedUpdate,
    *,
    input_shape: tuple[int, ...],
    iterations: int = 300,
    restarts: int = 1,
    lr: float = 1.0,
    box: tuple[float, float] | None = None,
    seed: int = 0,
) -> Reconstruction:
    """Reconstruct inputs and labels by Deep Leakage from Gradients (Zhu et al., 2019).

    One of the optimisation attacks of "Exploring the Vulnerabilities of Federated Learning: A Deep Dive
    into Gradient Inversion Attacks" (2025): minimise ``sum ||grad_theta CE(f(x), softmax(l)) - g*||^2``
    over the dummy input x and label logits l by L-BFGS.

    Args:
        model: the round-start model (run in eval mode).
        update: the shared batch-mean gradient (``kind == "gradient"``).
        input_shape: one example's shape.
        iterations: L-BFGS steps, >= 1 (the original: 300).
        restarts: random initialisations, >= 1, optimised as one separable problem (shared line search).
        lr: L-BFGS learning rate, > 0.
        box: None (unconstrained, N(0, 1) start, as in the paper) or the data range ``(low, high)``.
        seed: seeds the initialisations.

    Returns:
        A ``Reconstruction`` with ``inputs`` ``[B, *input_shape]``, ``labels`` ``[B]`` (argmax of the soft
        labels), the objective per iteration, and ``extras``: ``soft_labels`` ``[B, K]``,
        ``restart_losses`` ``[R]``, ``best_restart``.

    Raises:
        TypeError, ValueError: a bad argument or an update that does not fit the model, before any work.
    """
    batch, input_shape = check_attack_args(
        model, update, input_shape=input_shape, iterations=iterations, restarts=restarts
    )
    search, optimizer = Inputs(input_shape, box), LBFGS(lr)
    result = match_gradients(
        model,
        update.grads,
        search,
        batch_size=batch,
        labels=None,  # soft labels, searched
        iterations=iterations,
        optimizer=optimizer,
        restarts=restarts,
        distance=l2_distance,
        seed=seed,
    )
    return result.reconstruction(result.labels.argmax(-1), soft_labels=result.labels)


CONFORMANCE = Conformance(
    call=lambda seed: (
        dlg(example_model(seed), example_update(seed), input_shape=(3, 8, 8), iterations=2, seed=seed).inputs
    ),
    bad_calls=(
        lambda: dlg(example_model(0), example_update(0), input_shape=(3, 8, 8), iterations=0),
        lambda: dlg(example_model(0), example_update(0), input_shape=(3, 8, 8), lr=0.0),
        lambda: dlg(example_model(0), example_update(0), input_shape=(3, 8, 8), box=(1.0, 0.0)),
        lambda: dlg(example_model(0), example_update(0), input_shape="3x8x8"),  # type: ignore[arg-type]
        lambda: dlg(nn.Linear(2, 2), example_update(0), input_shape=(3, 8, 8)),
    ),
)
