"""Claim: sketching alone still leaks; sketching plus DP noise stops the attack at a small accuracy cost.

Song et al., "Sketching for First Order Method: Efficient Algorithm for Low-Bandwidth Channel and
Vulnerability" (2023). Setting (seeded, fixed before running):

- Model: an MLP 64-32-10 on 8x8 digits, ``d = 2410`` parameters; Gaussian sketch of ``s = d // 4 = 602``.
- Leakage: 3 victims, one example each (B = 1); :func:`sketched_inversion` with the sketch seed known,
  200 iterations, 2 restarts. Sketch alone: the client sends ``R g``. Sketch + DP: the client clips its
  per-example gradient to C = 1 and sends ``R clip(g) + N(0, (sigma C)^2 I_s)``, sigma = 1 (DP-SGD's
  Gaussian mechanism applied in sketch space, after the paper's remedy).
- Utility: 5 epochs of sketched SGD (batch 64, lr 1.0, a fresh ``R_t`` every step, the server
  de-sketches ``R_t^T s``) versus the same with Poisson-sampled batches (rate 64 / n), per-example clipping
  C = 1 and noise ``N(0, (sigma C / B)^2 I_s)`` on the sketch of the clipped sum / B (B = 64, the expected
  batch); test accuracy on the held-out digits. The figures include the training's (epsilon, delta =
  1e-5) from the RDP accountant at that rate.

Pass: mean PSNR(sketch) >= 20 dB, PSNR(sketch) - PSNR(sketch + DP) >= 8 dB, and accuracy(sketch) -
accuracy(sketch + DP) <= 5 points.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradinfo.capture import clipped_grad_sum
from gradinfo.claims import ClaimResult
from gradinfo.datasets import load
from gradinfo.models import mlp
from gradinfo.privacy import DPSGD, epsilon, psnr, share
from gradinfo.privacy.attacks.sketched_inversion import sketched_inversion
from gradinfo.transform import add_gaussian_noise, desketch, sketch

SLOW = True  # about a minute of CPU
CLAIM = "PSNR(sketch d/4) >= 20 dB; sketch+DP lowers it by >= 8 dB at <= 5 points of accuracy"
VICTIMS = 3
ITERATIONS = 200
RESTARTS = 2
CLIP = 1.0
SIGMA = 1.0
EPOCHS = 5
BATCH = 64
LR = 1.0
DELTA = 1e-5


def _batches(n: int, gen: torch.Generator, dp: bool) -> list[Tensor]:
    """One epoch of minibatch indices: shuffled chunks of BATCH, or with DP ceil(n / BATCH) Poisson draws at
    rate BATCH / n (each example independently), the sampling the RDP accountant's epsilon assumes."""
    if not dp:
        return list(torch.randperm(n, generator=gen).split(BATCH))
    return [torch.nonzero(torch.rand(n, generator=gen) < BATCH / n).flatten() for _ in range(-(-n // BATCH))]


def _train(model: nn.Module, x: Tensor, y: Tensor, dim: int, dp: bool, seed: int) -> nn.Module:
    params = {n: p for n, p in model.named_parameters()}
    compress, expand = sketch(dim, seed, fresh=True), desketch(dim, seed, fresh=True)
    noise = add_gaussian_noise(SIGMA * CLIP / BATCH, seed)
    start = {n: p.detach() for n, p in params.items()}
    states = compress.init(start), expand.init(start), noise.init({"sketch": torch.zeros(dim)})
    gen = torch.Generator().manual_seed(seed)
    for _ in range(EPOCHS):
        for idx in _batches(len(x), gen, dp):
            if dp and len(idx) == 0:
                grads = {n: torch.zeros_like(p) for n, p in params.items()}
            elif dp:  # the clipped sum over the expected batch size, as the accountant assumes
                grads = {
                    n: g / BATCH
                    for n, g in clipped_grad_sum(model, F.cross_entropy, x[idx], y[idx], CLIP).items()
                }
            else:
                loss = F.cross_entropy(model(x[idx]), y[idx])
                grads = dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))
            s, sketch_state = compress.update(grads, states[0])
            if dp:
                s, noise_state = noise.update(s, states[2])
            else:
                noise_state = states[2]
            step, expand_state = expand.update(s, states[1])
            states = sketch_state, expand_state, noise_state
            with torch.no_grad():
                for n, p in params.items():
                    p.sub_(LR * step[n])
    return model


def _accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def check(seed: int = 0) -> ClaimResult:
    train, test = load("digits", seed=seed), load("digits", split="test", seed=seed)
    model = mlp(64, 10, hidden=(32,), seed=seed)
    d = sum(p.numel() for p in model.parameters())
    dim = d // 4
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:VICTIMS]

    leak: dict[str, list[float]] = {"sketch": [], "sketch_dp": []}
    for i in pick.tolist():
        x, y = train.x[i : i + 1], train.y[i : i + 1]  # [1, 1, 8, 8], [1]
        remedy = (
            DPSGD(CLIP, 0.0),
            sketch(dim, seed),
            add_gaussian_noise(SIGMA * CLIP, seed),
        )  # clip, sketch, noise
        for name, update in (
            ("sketch", share(model, F.cross_entropy, x, y, defense=sketch(dim, seed), seed=seed)),
            ("sketch_dp", share(model, F.cross_entropy, x, y, defense=remedy, seed=seed)),
        ):
            rec = sketched_inversion(
                model,
                update,
                input_shape=(1, 8, 8),
                sketch_seed=seed,
                iterations=ITERATIONS,
                restarts=RESTARTS,
                seed=seed,
            )
            leak[name].append(float(psnr(rec.inputs, x)))
    psnr_sketch = sum(leak["sketch"]) / VICTIMS
    psnr_dp = sum(leak["sketch_dp"]) / VICTIMS

    acc = {}
    for dp in (False, True):
        trained = _train(mlp(64, 10, hidden=(32,), seed=seed), train.x, train.y, dim, dp, seed)
        acc[dp] = _accuracy(trained, test.x, test.y)
    steps = EPOCHS * -(-len(train) // BATCH)
    eps = epsilon(SIGMA, BATCH / len(train), steps, DELTA)
    drop_db = psnr_sketch - psnr_dp
    cost = 100 * (acc[False] - acc[True])
    passed = psnr_sketch >= 20 and drop_db >= 8 and cost <= 5
    return ClaimResult(
        method="sketched_inversion",
        claim=CLAIM,
        passed=bool(passed),
        figures={
            "params_d": d,
            "sketch_dim": dim,
            "psnr_sketch_db": psnr_sketch,
            "psnr_sketch_dp_db": psnr_dp,
            "psnr_drop_db": drop_db,
            "accuracy_sketch": acc[False],
            "accuracy_sketch_dp": acc[True],
            "accuracy_cost_points": cost,
            "training_epsilon": eps,
        },
        seed=seed,
    )
