"""Claim check for Inverting Gradients: the undefended default case leaks images at PSNR >= 25 dB.

Geiping et al., "Inverting Gradients - How easy is it to break privacy in federated learning?" (2020): with
cosine matching, a TV prior, signed Adam and box constraints, a single image is recovered from a FedSGD
gradient with high fidelity. Set-up: the default audited model without defense (small CNN on ``photos``
32x32, untrained, no dropout), ``VICTIMS`` single-image clients of different classes, and
``inverting_gradients`` with its defaults (1,000 steps, 4 batched restarts, TV 1e-2, labels by
``label_recovery``).

Pass: mean PSNR >= 25 dB.
"""

from __future__ import annotations

from torch import nn

from gradinfo.claims import ClaimResult
from gradinfo.claims._inversion import INPUT_SHAPE, mean_psnr, victim_model, victims
from gradinfo.privacy import Reconstruction, SharedUpdate
from gradinfo.privacy.attacks import inverting_gradients

SLOW = True
VICTIMS = 3


def check(seed: int = 0) -> ClaimResult:
    """Mean PSNR of Inverting Gradients with default settings on the undefended default case."""
    images, labels = victims(VICTIMS, seed)

    def attack(model: nn.Module, update: SharedUpdate, s: int) -> Reconstruction:
        return inverting_gradients(model, update, input_shape=INPUT_SHAPE, seed=s)

    value = mean_psnr(victim_model(0.0, seed), attack, images, labels, seed)
    return ClaimResult(
        method="inverting_gradients",
        claim="mean PSNR >= 25 dB on the undefended default case (small CNN, photos 32x32, B=1)",
        passed=bool(value >= 25.0),
        figures={"mean_psnr_db": value},
        seed=seed,
    )
