"""Gradient inversion attacks: each sees a ``SharedUpdate`` and the round-start model, nothing else.

Every attack is one module with ``attack_name(model, update, *, iterations, seed, ...) -> Reconstruction``;
importing this package registers them all. :func:`match_gradients` is the shared optimisation engine
(dummy inputs, optional soft labels and dropout masks, cosine or L2 gradient distance, TV prior, signed
Adam or L-BFGS, restarts batched with ``vmap``).
"""

from gradinfo.privacy.attacks.analytic_linear import analytic_linear
from gradinfo.privacy.attacks.dlg import dlg
from gradinfo.privacy.attacks.dropout_inversion import dropout_inversion
from gradinfo.privacy.attacks.generative_prior import fit_decoder, generative_prior
from gradinfo.privacy.attacks.imprint import ImprintDetection, detect_imprint, imprint_model
from gradinfo.privacy.attacks.inverting_gradients import inverting_gradients
from gradinfo.privacy.attacks.label_recovery import label_recovery
from gradinfo.privacy.attacks.local_steps_inversion import local_steps_inversion
from gradinfo.privacy.attacks.matching import (
    MatchResult,
    gradient_distance,
    loss_gradient,
    match_gradients,
    total_variation,
)
from gradinfo.privacy.attacks.sketched_inversion import sketched_inversion
from gradinfo.privacy.attacks.token_leak import token_leak

__all__ = [
    "ImprintDetection",
    "MatchResult",
    "analytic_linear",
    "detect_imprint",
    "dlg",
    "dropout_inversion",
    "fit_decoder",
    "generative_prior",
    "gradient_distance",
    "imprint_model",
    "inverting_gradients",
    "label_recovery",
    "local_steps_inversion",
    "loss_gradient",
    "match_gradients",
    "sketched_inversion",
    "token_leak",
    "total_variation",
]
