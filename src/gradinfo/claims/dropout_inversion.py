"""Claim check for the Dropout Inversion Attack (paper 2): DIA beats Inverting Gradients under dropout.

"Dropout is NOT All You Need to Prevent Gradient Leakage" (2023): a client training with dropout defeats
Inverting Gradients (IG), because the attacker does not know the masks; DIA, which optimises the masks
too, still reconstructs. Set-up (CPU-sized): the default audited model, a small CNN on ``photos`` 32x32
with dropout p before its last layer, untrained; 3 victims, batch 1, each sharing its gradient in train
mode; both attacks with the official configuration (``example_configs/attacks/{IG,DIA}.yaml``: signed Adam
lr 0.1, TV 1e-5, ReduceLROnPlateau patience 800, 1 restart; labels by ``label_recovery``, exact at B = 1
as the paper's known labels), ``ITERATIONS`` steps each; IG
is the same optimisation without masks.

Pass: mean PSNR(DIA) - mean PSNR(IG) >= 3 dB at p = 0.25, and mean PSNR(DIA) >= mean PSNR(IG) - 3 dB at
p = 0 (no dropout: DIA has nothing to gain, and must not lose).
"""

from __future__ import annotations

from torch import nn

from gradinfo.claims import ClaimResult
from gradinfo.claims._inversion import INPUT_SHAPE, mean_psnr, victim_model, victims
from gradinfo.privacy import Reconstruction, SharedUpdate
from gradinfo.privacy.attacks import dropout_inversion, inverting_gradients

SLOW = True
ITERATIONS = 500
VICTIMS = 3
P_DROPOUT = 0.25
TV = 1e-5  # the official IG.yaml / DIA.yaml value


def check(seed: int = 0) -> ClaimResult:
    """Measure mean PSNR of DIA and IG at dropout 0.25 and 0; see the module docstring."""
    images, labels = victims(VICTIMS, seed)

    def ig(model: nn.Module, update: SharedUpdate, s: int) -> Reconstruction:
        return inverting_gradients(
            model,
            update,
            input_shape=INPUT_SHAPE,
            iterations=ITERATIONS,
            restarts=1,
            tv=TV,
            schedule="plateau",
            seed=s,
        )

    def dia(model: nn.Module, update: SharedUpdate, s: int) -> Reconstruction:
        return dropout_inversion(
            model,
            update,
            input_shape=INPUT_SHAPE,
            iterations=ITERATIONS,
            seed=s,
        )

    figures = {}
    for p, tag in ((P_DROPOUT, "p025"), (0.0, "p0")):
        model = victim_model(p, seed)
        figures[f"psnr_ig_{tag}"] = mean_psnr(model, ig, images, labels, seed)
        figures[f"psnr_dia_{tag}"] = mean_psnr(model, dia, images, labels, seed)
    gap = figures["psnr_dia_p025"] - figures["psnr_ig_p025"]
    gap0 = figures["psnr_dia_p0"] - figures["psnr_ig_p0"]
    figures["gap_db_p025"] = gap
    figures["gap_db_p0"] = gap0
    return ClaimResult(
        method="dropout_inversion",
        claim="PSNR(DIA) - PSNR(IG) >= 3 dB at dropout 0.25, and >= -3 dB at dropout 0",
        passed=bool(gap >= 3.0 and gap0 >= -3.0),
        figures=figures,
        seed=seed,
    )
