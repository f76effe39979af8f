"""Claim check for label recovery: the iDLG sign rule is exact at B = 1; the count rule recovers batches.

Zhao et al., "iDLG: Improved Deep Leakage from Gradients" (2020): with cross-entropy, the last layer's
bias gradient p - y is negative only at the true class, whatever the weights. Set-up: the default audited
model (small CNN with dropout 0.25 on ``photos`` 32x32, untrained, shared in train mode) and, to exercise
the weight rule, the same CNN without biases on its last layer; ``CLIENTS`` single-image clients each, and
``CLIENTS`` clients with batches of 8 for the count rule (``label_accuracy``: the overlap of the recovered
and true label multisets).

Paper effect: iDLG's Table 1 reports 100% label accuracy at B = 1 on MNIST, CIFAR-100 and LFW (DLG's
joint optimisation: 89.9%, 83.3%, 79.1%); the rule is exact by construction, so the B = 1 margin is exact
recovery. For batches, no table number is at hand (the count rule follows Geng et al. 2021 and Wainakh et
al. 2022, who report near-complete recovery on untrained models); the margin is fixed before running at
accuracy >= 0.9 and >= 0.4 above chance, the multiset overlap of uniformly random labels (mean of
``DRAWS`` draws per client).

Pass: the B = 1 accuracy is exactly 1.0 for both rules; the batch-8 accuracy is >= 0.9 and exceeds the
random baseline by >= 0.4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gradinfo.claims import ClaimResult
from gradinfo.claims._inversion import INPUT_SHAPE, victim_model
from gradinfo.datasets import load
from gradinfo.privacy import label_accuracy, share
from gradinfo.privacy.attacks import label_recovery

PAPER_EFFECT = (
    "iDLG (Zhao et al. 2020) Table 1: 100% label accuracy at B = 1 on MNIST, CIFAR-100, LFW (DLG 89.9%, "
    "83.3%, 79.1%); batch count rule: no table at hand, margin >= 0.9 and >= chance + 0.4"
)
CLIENTS = 20
BATCH = 8
DRAWS = 5


def check(seed: int = 0) -> ClaimResult:
    """Recover labels of B = 1 and B = 8 clients; see the module docstring."""
    data = load("photos", split="test", seed=seed, size=32)
    gen = torch.Generator().manual_seed(seed)
    guess = torch.Generator().manual_seed(seed + 10_000)  # the random baseline's draws
    model = victim_model(0.25, seed)
    no_bias = victim_model(0.25, seed)
    no_bias.fc2.bias = None  # the weight-row rule
    hits = {"bias": 0, "weight": 0}
    batch_acc, chance = [], []
    for c in range(CLIENTS):
        i = int(torch.randint(0, data.x.shape[0], (1,), generator=gen))
        for rule, net in (("bias", model), ("weight", no_bias)):
            update = share(net, F.cross_entropy, data.x[i : i + 1], data.y[i : i + 1], seed=c)
            hits[rule] += int(label_recovery(net, update).labels.item() == data.y[i].item())
        idx = torch.randint(0, data.x.shape[0], (BATCH,), generator=gen)
        update = share(model, F.cross_entropy, data.x[idx], data.y[idx], seed=c)
        rec = label_recovery(model, update, input_shape=INPUT_SHAPE, seed=seed)
        batch_acc.append(label_accuracy(rec.labels, data.y[idx]))
        guesses = torch.randint(0, 10, (DRAWS, BATCH), generator=guess)  # [DRAWS, B]
        chance.append(sum(label_accuracy(g, data.y[idx]) for g in guesses) / DRAWS)
    figures = {
        "accuracy_b1_bias_rule": hits["bias"] / CLIENTS,
        "accuracy_b1_weight_rule": hits["weight"] / CLIENTS,
        f"accuracy_b{BATCH}_count_rule": sum(batch_acc) / CLIENTS,
        f"accuracy_b{BATCH}_random": sum(chance) / CLIENTS,
    }
    excess = figures[f"accuracy_b{BATCH}_count_rule"] - figures[f"accuracy_b{BATCH}_random"]
    passed = (
        hits["bias"] == CLIENTS
        and hits["weight"] == CLIENTS
        and figures[f"accuracy_b{BATCH}_count_rule"] >= 0.9
        and excess >= 0.4
    )
    return ClaimResult(
        method="label_recovery",
        claim=(
            f"B=1 labels exact (bias and weight rules) on {CLIENTS} clients; B={BATCH} accuracy >= 0.9 "
            "and >= random labels + 0.4"
        ),
        passed=bool(passed),
        figures=figures,
        seed=seed,
    )
