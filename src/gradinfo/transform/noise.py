"""Gaussian noise, seeded and resumable: the Gaussian mechanism of DP-SGD.

Abadi et al., "Deep Learning with Differential Privacy", 2016 (arXiv:1607.00133), Algorithm 1 adds

    g~ = g_bar + N(0, sigma^2 C^2 I)

to the sum of per-example gradients clipped to norm ``C``; here ``std = sigma * C``.
"""

from __future__ import annotations

import torch

from gradinfo.core.types import Grads, State
from gradinfo.core.validate import positive
from gradinfo.transform.base import GradTransform
from gradinfo.transform.rng import STREAM_NOISE, check_seed, step_generator


def add_gaussian_noise(std: float, seed: int = 0) -> GradTransform:
    """Add independent ``N(0, std^2)`` noise to every coordinate of every gradient.

    The state is ``{"count": t}``, the number of updates done. Update ``t`` draws from a generator
    seeded by ``(seed, t)`` and walks the tensors in sorted-name order, so results depend only on the
    seed, the step and the names (not on dict order), and a saved state resumes the same noise.
    Noise is drawn on the CPU in the gradient's dtype and moved to its device.

    Args:
        std: the noise standard deviation, ``>= 0`` (for DP-SGD, ``noise_multiplier * max_norm``).
        seed: an int >= 0.

    Returns:
        A ``GradTransform``; its output has the input's keys and shapes.

    Raises:
        TypeError: ``std`` is not a number or ``seed`` is not an int.
        ValueError: ``std`` is negative or not finite, or ``seed`` is negative.
    """
    std = positive("std", std, allow_zero=True)
    seed = check_seed(seed)

    def init(params: Grads) -> State:
        return {"count": 0}

    def update(grads: Grads, state: State, params: Grads | None = None) -> tuple[Grads, State]:
        count = state["count"]
        gen = step_generator(seed, STREAM_NOISE, count)
        out = {}
        for name in sorted(grads):
            g = grads[name]
            noise = torch.randn(g.shape, generator=gen, dtype=g.dtype)  # [*shape]
            out[name] = g + std * noise.to(g.device)
        return {name: out[name] for name in grads}, {"count": count + 1}

    return GradTransform(init, update)
