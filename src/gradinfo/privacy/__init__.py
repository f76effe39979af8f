"""Gradient leakage: the threat model, attacks, defenses, privacy accounting and reconstruction metrics."""

from gradinfo.privacy.accounting import epsilon, noise_for_epsilon

__all__ = ["epsilon", "noise_for_epsilon"]
