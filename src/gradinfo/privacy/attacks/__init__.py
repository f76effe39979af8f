"""Gradient inversion attacks: each sees a ``SharedUpdate`` and the round-start model, nothing else.

Every attack is one module with ``attack_name(model, update, *, iterations, seed, ...) -> Reconstruction``;
importing this package registers them all.
"""

from gradinfo.privacy.attacks.token_leak import token_leak

__all__ = ["token_leak"]
