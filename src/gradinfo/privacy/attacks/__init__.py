"""Gradient inversion attacks: each sees a ``SharedUpdate`` and the round-start model, nothing else.

Every attack is one module with ``attack_name(model, update, *, iterations, seed, ...) -> Reconstruction``;
importing this package registers them all. :func:`match_gradients` is the shared optimisation engine
(restarts batched with ``vmap``); an optimisation attack is a preset of its values: what is searched
(:class:`Inputs`, :class:`InputsAndDropoutMasks`, :class:`DecoderLatents`), the distance
(:func:`cosine_distance`, :func:`l2_distance`), the TV weight, the descent (:class:`Adam` with a
:class:`Constant`, :class:`MultiStep` or :class:`Plateau` schedule, or :class:`LBFGS`), and optionally the
client's update function and a known projection.
"""

from gradinfo.privacy.attacks.analytic_linear import analytic_linear
from gradinfo.privacy.attacks.dlg import dlg
from gradinfo.privacy.attacks.dropout_inversion import dropout_inversion
from gradinfo.privacy.attacks.generative_prior import fit_decoder, generative_prior
from gradinfo.privacy.attacks.imprint import ImprintDetection, detect_imprint, imprint_model
from gradinfo.privacy.attacks.inverting_gradients import inverting_gradients
from gradinfo.privacy.attacks.label_recovery import label_recovery
from gradinfo.privacy.attacks.local_steps_inversion import local_steps_inversion
from gradinfo.privacy.attacks.matching import MatchResult, match_gradients
from gradinfo.privacy.attacks.objective import cosine_distance, l2_distance, loss_gradient, total_variation
from gradinfo.privacy.attacks.optimizers import LBFGS, Adam, Constant, MultiStep, Plateau
from gradinfo.privacy.attacks.search import DecoderLatents, Inputs, InputsAndDropoutMasks
from gradinfo.privacy.attacks.sketched_inversion import sketched_inversion
from gradinfo.privacy.attacks.token_leak import token_leak

__all__ = [
    "LBFGS",
    "Adam",
    "Constant",
    "DecoderLatents",
    "ImprintDetection",
    "Inputs",
    "InputsAndDropoutMasks",
    "MatchResult",
    "MultiStep",
    "Plateau",
    "analytic_linear",
    "cosine_distance",
    "detect_imprint",
    "dlg",
    "dropout_inversion",
    "fit_decoder",
    "generative_prior",
    "imprint_model",
    "inverting_gradients",
    "l2_distance",
    "label_recovery",
    "local_steps_inversion",
    "loss_gradient",
    "match_gradients",
    "sketched_inversion",
    "token_leak",
    "total_variation",
]
