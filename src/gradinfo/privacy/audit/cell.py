"""What one cell of an audit does: the client's shared update, the server's view, the attack or the run.

The threat model is :func:`gradinfo.privacy.share`'s:

- attack cell (defense, B, attack): B training examples (seeded, the same for every defense) are one
  client's batch; the client shares one gradient of the round-start model (train mode: dropout active)
  under the defense; the attack sees that update and the round-start model only. On sketched updates the
  server also knows the sketch seed (it must, to de-sketch): ``sketched_inversion`` inverts through the
  sketch, the other attacks run on the de-sketched estimate R^T s. Under HyperFL the attacker holds the
  hypernetwork and guesses the client's private embedding and head (it uses the initial ones while the
  client drew its own), and is given the true labels, which it cannot recover (the head is private).
  Reconstructions are matched to the victims by the assignment maximising total PSNR (batch order is
  not recoverable), then scored by PSNR, SSIM and, where labels were recovered, label accuracy. The
  victims and matched reconstructions are saved as ``cells/<key>.npz``.
- utility cell (defense): :func:`~gradinfo.privacy.fedavg` over the non-IID clients (or, with
  ``engine="flower"``, :func:`~gradinfo.privacy.federated.flower_fedavg`, the same run through Flower's
  simulation engine), every client sharing what the attack cell's client shares (the delta of
  ``local_steps`` SGD steps on minibatches of 32, the defense); the server de-sketches sketched deltas
  (one fresh sketch per round) and averages. HyperFL trains with :func:`hyperfl_train` (the official
  schedule: a head epoch, then a hypernetwork/embedding epoch, minibatches of 50), in-process under
  either engine. Accuracy is on the whole test split with the global model; under HyperFL each client's
  model (its private embedding and head) is scored on its own test examples, classes it has seen only.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from gradinfo.privacy.attacks import (
    dlg,
    dropout_inversion,
    inverting_gradients,
    label_recovery,
    sketched_inversion,
)
from gradinfo.privacy.audit.config import DEFENSES
from gradinfo.privacy.audit.grid import SKETCHED, Cell
from gradinfo.privacy.audit.setup import CLIP, DELTA, LOCAL_BATCH, Setup, hyperfl_parts
from gradinfo.privacy.defenses import hyperfl_model, hyperfl_share, hyperfl_train
from gradinfo.privacy.fedavg import fedavg
from gradinfo.privacy.metrics import label_accuracy, psnr, ssim
from gradinfo.privacy.threat import DPSGD, Defense, SharedUpdate, describe_defense, share
from gradinfo.transform import GradTransform, chain, desketch, sketch, stochastic_quantize, topk_sparsify
from gradinfo.transform.sketch import SKETCH_KEY

CELLS = "cells"
"""The sub-folder of ``out`` holding each attack cell's ``<key>.npz``."""
LR = 0.1
TV = 0.1
"""The attacks' total-variation weight. The attacks' own defaults (1e-2 and below) are sized for 1,000 or
more iterations; at an audit's few hundred, signed Adam's +-lr steps and the uniform-noise start leave
pixel noise in the directions the gradient does not constrain, and 0.1 removes it (default CNN, B = 1,
200 iterations: about 22 dB instead of 16-18 dB)."""
SKETCH_KIND = "countsketch"
HYPER_EMBED, HYPER_HIDDEN = 16, 8
"""HyperFL hypernetwork sizes: its output layer holds HYPER_HIDDEN x (extractor parameters) weights, 2.2M
for the default CNN, so the hidden width sets the cost of the HyperFL attack cells."""
SMOOTH = 3
"""A utility cell's accuracy is the mean test accuracy over its last SMOOTH rounds: non-IID FedAvg
oscillates from round to round, and one round's value would rank defenses by that noise."""


# ---------------------------------------------------------------- what a client shares, what a server sees


def _hyperfl_global(setup: Setup) -> nn.Module:
    extractor, head = hyperfl_parts(setup.model_fn())
    return hyperfl_model(
        extractor, head, embed_dim=HYPER_EMBED, hidden_dim=HYPER_HIDDEN, seed=setup.config.seed
    ).train()


def defense_for(setup: Setup, defense: str, seed: int, *, federated: bool = False) -> Defense | None:
    """The defense ``defense`` as :func:`~gradinfo.privacy.share` and ``fedavg`` take it.

    Sketches use the count sketch of seed ``seed``. For one shared update (``federated=False``) the client
    sends the sketch itself; in a federated run (``federated=True``) the server's de-sketching is folded
    into the defense, ``chain(sketch, desketch)`` with ``fresh=True``: one R_t per round, shared by the
    clients (Song et al. 2023). Not for ``"hyperfl"`` (its own training path).
    """
    dp = DPSGD(CLIP, setup.sigmas[defense]) if defense in setup.sigmas else None
    transform: GradTransform | None = None
    if defense == "topk-90":
        transform = topk_sparsify(0.1)
    elif defense == "quant-4bit":
        transform = stochastic_quantize(4, seed=seed)
    elif defense in SKETCHED:
        compress = sketch(setup.sketch_dim, seed=seed, kind=SKETCH_KIND, fresh=federated)
        expand = desketch(setup.sketch_dim, seed=seed, kind=SKETCH_KIND, fresh=federated)
        transform = chain(compress, expand) if federated else compress
    parts = tuple(d for d in (dp, transform) if d is not None)
    return None if not parts else parts[0] if len(parts) == 1 else parts


def client_update(
    setup: Setup, defense: str, model: nn.Module, x: Tensor, y: Tensor, *, local_steps: int, seed: int
) -> SharedUpdate:
    """What a client holding ``(x [B, ...], y [B])`` shares for ``model`` under ``defense``.

    Sketched updates use the count sketch of seed ``seed`` (fresh per client and round; the server knows
    it).
    """
    common = {"local_steps": local_steps, "lr": LR, "seed": seed}
    if defense == "hyperfl":
        return hyperfl_share(
            model, F.cross_entropy, x, y, defense_name="HyperFL (hypernetwork only)", **common
        )
    protect = defense_for(setup, defense, seed)
    name = f"{describe_defense(protect)} ({DEFENSES[defense]})" if protect is not None else None
    return share(model, F.cross_entropy, x, y, defense=protect, defense_name=name, **common)


def server_view(setup: Setup, model: nn.Module, update: SharedUpdate, seed: int) -> SharedUpdate:
    """The update as parameter-shaped tensors: de-sketched (R^T s, unbiased) when sketched, else as is."""
    if SKETCH_KEY not in update.grads:
        return update
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    expand = desketch(setup.sketch_dim, seed=seed, kind=SKETCH_KIND)
    grads, _ = expand.update(update.grads, expand.init(params))
    return dataclasses.replace(update, grads=grads)


# ---------------------------------------------------------------- cells


def victims(setup: Setup, batch: int) -> tuple[Tensor, Tensor]:
    """B training examples ``([B, C, H, W], [B])``, seeded by (seed, B), the same for every defense."""
    x, y = setup.train
    pick = torch.randperm(len(y), generator=torch.Generator().manual_seed(setup.config.seed * 1000 + batch))
    return x[pick[:batch]], y[pick[:batch]]


def _match(rec: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """Reorder ``rec`` ``[B, ...]`` to the victims ``x`` by the assignment maximising total PSNR."""
    batch = x.shape[0]
    pairs = torch.stack([psnr(rec, x[j : j + 1].expand_as(rec)) for j in range(batch)], dim=1)  # [B, B]
    rows, cols = linear_sum_assignment(pairs.clamp(max=200).numpy(), maximize=True)
    order = torch.as_tensor(rows[np.argsort(cols)])  # rec index matched to each victim
    return rec[order], pairs[order, torch.arange(batch)]


def attack_cell(setup: Setup, cell: Cell, out: Path) -> dict[str, Any]:
    """Run one attack cell; write its npz; return its row."""
    config, defense, batch = setup.config, cell.defense, int(cell.batch_size or 1)
    x, y = victims(setup, batch)
    seed = config.seed * 1000 + batch  # the same update for every attack on (defense, B)
    if defense == "hyperfl":
        attacker = _hyperfl_global(setup)
        victim = copy.deepcopy(attacker)
        with torch.random.fork_rng(devices=[]):  # the client's private embedding and head
            torch.manual_seed(seed + 1)
            victim.embedding.data.normal_()
            victim.head.reset_parameters()
    else:
        attacker = victim = setup.model_fn()
    update = client_update(setup, defense, victim, x, y, local_steps=1, seed=seed)
    view = server_view(setup, attacker, update, seed)
    labels = y if defense == "hyperfl" else None
    opts = {"input_shape": setup.input_shape, "seed": seed}
    search = {"iterations": config.iterations, "restarts": config.restarts}
    prior = {**search, "tv": TV}
    if cell.attack == "label_recovery":
        rec = label_recovery(attacker, view, **opts)
    elif cell.attack == "sketched_inversion":
        rec = sketched_inversion(attacker, update, sketch_seed=seed, kind=SKETCH_KIND, **prior, **opts)
    elif cell.attack == "inverting_gradients":
        rec = inverting_gradients(attacker, view, labels=labels, **prior, **opts)
    elif cell.attack == "dropout_inversion":
        rec = dropout_inversion(attacker, view, labels=labels, **prior, **opts)
    else:
        rec = dlg(attacker, view, box=(0.0, 1.0), **search, **opts)
    row: dict[str, Any] = {
        "cell": cell.key, "kind": "attack", "defense": defense, "attack": cell.attack, "batch_size": batch,
        "shared": update.defense, "labels_given": labels is not None, "seconds": rec.seconds,
        "psnr": None, "psnr_per_image": None, "ssim": None, "label_accuracy": None,
    }  # fmt: skip
    if rec.labels is not None and labels is None and rec.labels.dim() == 1:
        row["label_accuracy"] = label_accuracy(rec.labels.long(), y)
    elif rec.labels is not None and labels is None:  # soft labels [B, K] (dlg)
        row["label_accuracy"] = label_accuracy(rec.labels.argmax(-1), y)
    if rec.inputs.numel() == x.numel():
        matched, scores = _match(rec.inputs.detach().float().clamp(0, 1).reshape(x.shape), x)
        row["psnr"] = float(scores.clamp(max=100).mean())
        row["psnr_per_image"] = [float(s) for s in scores.clamp(max=100)]
        row["ssim"] = float(ssim(matched, x).mean()) if min(x.shape[-2:]) > 5 else None
        path = out / CELLS / f"{cell.key}.npz"
        path.parent.mkdir(exist_ok=True)
        np.savez_compressed(path, original=x.numpy(), recovered=matched.numpy())
    return row


def utility_cell(setup: Setup, cell: Cell) -> dict[str, Any]:
    """Train one defense federatedly; return its row with the test-accuracy curve."""
    config, defense = setup.config, cell.defense
    start = time.perf_counter()
    if defense == "hyperfl":
        history = hyperfl_train(
            lambda: _hyperfl_global(setup), setup.clients, config.rounds, test=setup.tests,
            local_epochs=1, head_epochs=1, batch_size=50, seed=config.seed,
        )  # fmt: skip
        engine = "in-process (HyperFL's own schedule)"
    else:
        if config.engine == "flower":
            from gradinfo.privacy.federated import flower_fedavg as run  # Flower and Ray load only here
        else:
            run = fedavg
        history = run(
            setup.model_fn, setup.clients, config.rounds, config.local_steps, LR, test=setup.test,
            defense=defense_for(setup, defense, config.seed, federated=True), batch_size=LOCAL_BATCH,
            seed=config.seed,
        )  # fmt: skip
        engine = "flower simulation" if config.engine == "flower" else "in-process"
    return {
        "cell": cell.key, "kind": "utility", "defense": defense,
        "accuracy": float(np.mean(history.accuracy[1:][-SMOOTH:])), "accuracy_final": history.accuracy[-1],
        "accuracy_curve": history.accuracy, "engine": engine,
        "noise_multiplier": setup.sigmas.get(defense), "epsilon": setup.epsilons.get(defense),
        "delta": DELTA if defense in setup.sigmas else None, "seconds": time.perf_counter() - start,
    }  # fmt: skip


def run_cell(setup: Setup, cell: Cell, out: Path) -> dict[str, Any]:
    """One cell's row (attack or utility)."""
    return attack_cell(setup, cell, out) if cell.kind == "attack" else utility_cell(setup, cell)
