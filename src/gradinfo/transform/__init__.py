"""Gradient transforms: ``(init, update)`` pairs composed with ``chain``; every defense is a transform."""

from gradinfo.transform.base import GradTransform, chain, check_keys, identity, scale
from gradinfo.transform.clip import clip_by_global_norm, clip_per_example, global_norm
from gradinfo.transform.noise import add_gaussian_noise
from gradinfo.transform.optimizer import TransformOptimizer, as_optimizer
from gradinfo.transform.quantize import stochastic_quantize
from gradinfo.transform.sketch import desketch, sketch, sketch_matrix
from gradinfo.transform.sparsify import topk_sparsify

__all__ = [
    "GradTransform",
    "TransformOptimizer",
    "add_gaussian_noise",
    "as_optimizer",
    "chain",
    "check_keys",
    "clip_by_global_norm",
    "clip_per_example",
    "desketch",
    "global_norm",
    "identity",
    "scale",
    "sketch",
    "sketch_matrix",
    "stochastic_quantize",
    "topk_sparsify",
]
