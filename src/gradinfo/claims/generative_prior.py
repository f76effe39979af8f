"""Claim: where plain optimisation fails, a generative prior beats it at equal iterations.

Guo et al., "Exploring the Vulnerabilities of Federated Learning: A Deep Dive into Gradient Inversion
Attacks" (2025): GEN-GIA reconstructs better than OP-GIA when its generator was fitted on data like the
victim's (and depends on that prior); the paper's digest sets the margin at >= 2 dB (proof (c)). Setting
(seeded, fixed before running): an MLP 64-32-10 on 8x8 digits; the attacker fits :func:`fit_decoder`
(latent 16, 600 Adam steps) on the digits *test* split, the victims are two batches of B = 32 from the
*train* split (disjoint). An earlier version used B = 4, where plain Inverting Gradients on this MLP is
already near-exact (33.9 dB) and no prior can help; at B = 32, the hidden width, the first layer's
gradient (rank <= 32) no longer pins each example down, the regime the survey's claim is about. Equal
iterations: Inverting Gradients runs 200; the generative prior 100 latent steps then 100 GIAS steps on
per-example decoder weights (the latent search alone is capped by the decoder's own error, about 24.6 dB
here). 1 restart each; PSNR is the batch mean under the best one-to-one matching.

Pass (every seed): mean PSNR(generative prior) - mean PSNR(Inverting Gradients) >= 2 dB.

Result: fails at every recorded seed (0, 1, 2): the prior's PSNR is 11.6, 12.4, 12.9 dB against Inverting
Gradients' 12.9, 13.7, 13.1 dB (gaps -1.3, -1.3, -0.1 dB). At B = 32 both attacks fail, and the prior does
not lift the reconstruction above plain optimisation within 200 iterations, so ``generative_prior`` stays
``implemented``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gradinfo.claims import ClaimResult
from gradinfo.claims.local_steps_inversion import matched_psnr
from gradinfo.datasets import load
from gradinfo.models import mlp
from gradinfo.privacy import share
from gradinfo.privacy.attacks.generative_prior import fit_decoder, generative_prior
from gradinfo.privacy.attacks.inverting_gradients import inverting_gradients

SLOW = True  # fitting the decoder and four attacks: minutes on a loaded CPU
PAPER_EFFECT = "GEN-GIA beats OP-GIA given a matching prior (survey, 2025); digest proof (c): >= 2 dB"
CLAIM = "PSNR(generative prior) - PSNR(Inverting Gradients) >= 2 dB at B=32, equal iterations"
LATENT = 16
FIT_STEPS = 600
BATCH = 32
VICTIM_BATCHES = 2
ITERATIONS = 200


def check(seed: int = 0) -> ClaimResult:
    train, public = load("digits", seed=seed), load("digits", split="test", seed=seed)
    decoder = fit_decoder(public.x, LATENT, steps=FIT_STEPS, seed=seed)
    model = mlp(64, 10, hidden=(32,), seed=seed)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    gen_psnr, ig_psnr = [], []
    for v in range(VICTIM_BATCHES):
        idx = order[v * BATCH : (v + 1) * BATCH]
        x, y = train.x[idx], train.y[idx]  # [32, 1, 8, 8], [32]
        update = share(model, F.cross_entropy, x, y, seed=seed)
        common = {"input_shape": (1, 8, 8), "restarts": 1, "seed": seed}
        half = ITERATIONS // 2
        rec = generative_prior(
            model,
            update,
            decoder=decoder,
            latent_dim=LATENT,
            iterations=half,
            decoder_iterations=half,
            **common,
        )
        gen_psnr.append(matched_psnr(rec.inputs, x))
        ig = inverting_gradients(model, update, iterations=ITERATIONS, **common)
        ig_psnr.append(matched_psnr(ig.inputs, x))
    gen, ig = sum(gen_psnr) / VICTIM_BATCHES, sum(ig_psnr) / VICTIM_BATCHES
    return ClaimResult(
        method="generative_prior",
        claim=CLAIM,
        passed=bool(gen - ig >= 2),
        figures={"psnr_generative_db": gen, "psnr_inverting_gradients_db": ig, "gap_db": gen - ig},
        seed=seed,
    )
