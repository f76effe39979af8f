"""Seeded, counter-based randomness for transforms: a fresh ``torch.Generator`` per (seed, stream, step).

A transform keeps only an integer step counter in its state. At every update it derives a 63-bit seed from
``(seed, stream, step)`` with SplitMix64 (Steele, Lea and Flood, "Fast Splittable Pseudorandom Number
Generators", 2014) and seeds a new CPU generator with it. The draw at step ``t`` therefore depends on
nothing but the seed and ``t``: a state saved and loaded resumes the exact same stream, and two transforms
with the same seed but different streams (noise vs. quantisation) do not draw correlated numbers.
"""

from __future__ import annotations

import torch

from gradinfo.core.validate import positive_int

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15

STREAM_NOISE = 1
STREAM_QUANTIZE = 2
STREAM_SKETCH = 3


def _splitmix64(x: int) -> int:
    x = (x + _GOLDEN) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def derive_seed(seed: int, stream: int, step: int) -> int:
    """A 63-bit seed that is a deterministic, well-mixed function of ``(seed, stream, step)``."""
    h = seed & _MASK64
    for word in (stream, step):
        h = _splitmix64(h ^ _splitmix64(word & _MASK64))
    return h >> 1


def step_generator(seed: int, stream: int, step: int) -> torch.Generator:
    """A CPU generator seeded with ``derive_seed(seed, stream, step)``."""
    return torch.Generator().manual_seed(derive_seed(seed, stream, step))


def check_seed(seed: object) -> int:
    """Return ``seed`` after checking it is an int >= 0 (raises ``TypeError``/``ValueError`` naming it)."""
    return positive_int("seed", seed, minimum=0)
