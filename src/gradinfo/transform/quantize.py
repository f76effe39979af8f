"""Unbiased stochastic quantisation, QSGD-style.

Alistarh et al., "QSGD: Communication-Efficient SGD via Gradient Quantization and Encoding", 2017
(arXiv:1610.02132) sends, per tensor ``v`` with ``s`` magnitude levels,

    Q(v_i) = M * sign(v_i) * xi_i / s,   xi_i = l + Bernoulli(|v_i| s / M - l),   l = floor(|v_i| s / M),

so ``E[Q(v)] = v``. QSGD takes ``M = ||v||_2``; here ``M = max_i |v_i|`` (the levels then span the tensor's
actual range, which lowers the variance ``<= M^2 / (4 s^2)`` per coordinate). With ``bits`` bits per
coordinate (one for the sign), ``s = 2^(bits-1) - 1``, so each tensor takes at most ``2s + 1 = 2^bits - 1``
distinct values ``{M k / s : k = -s..s}``, plus ``M`` itself (one float per tensor).
"""

from __future__ import annotations

import torch

from gradinfo.core.types import Grads, State
from gradinfo.core.validate import positive_int
from gradinfo.transform.base import GradTransform
from gradinfo.transform.rng import STREAM_QUANTIZE, check_seed, step_generator

MAX_BITS = 16


def quantization_levels(bits: int) -> int:
    """``s = 2^(bits-1) - 1``, the number of nonzero magnitude levels for ``bits`` bits per coordinate."""
    return 2 ** (bits - 1) - 1


def stochastic_quantize(bits: int, seed: int = 0) -> GradTransform:
    """Round every coordinate at random to one of ``2^bits - 1`` levels per tensor, unbiasedly.

    ``Q(v) = M * sign(v) * xi / s`` as in the module docstring, with ``M = max|v|`` per tensor and
    ``s = 2^(bits-1) - 1``; ``E[Q(v)] = v``. The state is ``{"count": t}``; update ``t`` draws from a
    generator seeded by ``(seed, t)``, walking tensors in sorted-name order.

    Args:
        bits: bits per coordinate including the sign, an int in ``[2, 16]``.
        seed: an int >= 0.

    Returns:
        A ``GradTransform``; its output has the input's keys, shapes and dtypes.

    Raises:
        TypeError: ``bits`` or ``seed`` is not an int.
        ValueError: ``bits`` outside ``[2, 16]`` or ``seed`` negative.
    """
    bits = positive_int("bits", bits, minimum=2)
    if bits > MAX_BITS:
        raise ValueError(f"bits must be <= {MAX_BITS} (beyond that, send the floats), got {bits!r}")
    seed = check_seed(seed)
    s = quantization_levels(bits)

    def init(params: Grads) -> State:
        return {"count": 0}

    def update(grads: Grads, state: State, params: Grads | None = None) -> tuple[Grads, State]:
        count = state["count"]
        gen = step_generator(seed, STREAM_QUANTIZE, count)
        out = {}
        for name in sorted(grads):
            v = grads[name]
            u = torch.rand(v.shape, generator=gen, dtype=v.dtype).to(v.device)  # [*shape]
            m = v.abs().amax() if v.numel() else v.new_zeros(())  # []
            x = (v.abs() / m.clamp_min(torch.finfo(v.dtype).tiny) * s).clamp(0, s)  # [*shape] in [0, s]
            low = x.floor()
            level = (low + (u < x - low).to(v.dtype)).clamp(max=s)  # [*shape] in {0..s}
            out[name] = v.sign() * level * (m / s)
        return {name: out[name] for name in grads}, {"count": count + 1}

    return GradTransform(init, update)
