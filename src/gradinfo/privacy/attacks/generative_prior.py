"""GEN-GIA: gradient inversion through a decoder fitted on public data (a generative image prior).

Guo et al., "Exploring the Vulnerabilities of Federated Learning: A Deep Dive into Gradient Inversion
Attacks" (2025; paper 4) group attacks that search the latent space of a generator ``G`` trained on data
like the victim's (GGL, GIAS) as GEN-GIA:

    z* = argmin_z  1 - cos(grad_theta CE(f(G(z)), y), g*),      x* = G(z*).

The attacker fits ``G`` beforehand on public data disjoint from the victim's (:func:`fit_decoder`): a small
MLP autoencoder ``x -> h -> z -> h -> sigmoid(.)`` trained by Adam on the mean squared reconstruction error.
Its latent codes on the public data are then standardised and the affine map folded into the decoder, so
``z ~ N(0, I)``, the engine's initialisation, lands on typical codes. The search uses the shared engine
(:func:`match_gradients` over :class:`~gradinfo.privacy.attacks.search.DecoderLatents`): signed Adam on
``z``, batched restarts; labels from :func:`label_recovery`.

A latent search alone can never beat the decoder's own reconstruction error on the victim's images (the
prior's ceiling: about 24.6 dB on held-out 8x8 digits with a 16-dimensional latent, measured). The survey's
GEN-GIA family therefore also optimises the generator's weights: with ``decoder_iterations > 0`` a second
stage follows GIAS (Jeon et al., "Gradient Inversion with Generative Image Prior", 2021): every example gets
its own copy ``w_b`` of the decoder's weights, initialised from the fitted ones, and

    (z*, w*) = argmin_{z, w}  1 - cos(grad_theta CE(f(G_{w_b}(z_b))_b, y), g*)

is descended by Adam from the first stage's ``z*``; the lowest-objective iterate is kept.
"""

from __future__ import annotations

import copy
import math
import time
from collections import OrderedDict
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state

from gradinfo.core.registry import Conformance, register
from gradinfo.core.validate import positive, positive_int
from gradinfo.models._seed import seeded
from gradinfo.privacy.attacks._common import check_attack_args, example_model, example_update
from gradinfo.privacy.attacks.label_recovery import label_recovery
from gradinfo.privacy.attacks.matching import match_gradients
from gradinfo.privacy.attacks.objective import cosine_distance, loss_gradient
from gradinfo.privacy.attacks.optimizers import Adam, MultiStep
from gradinfo.privacy.attacks.search import DecoderLatents
from gradinfo.privacy.threat import Reconstruction, SharedUpdate


def fit_decoder(
    public_images: Tensor,
    latent_dim: int,
    steps: int = 2000,
    seed: int = 0,
    *,
    hidden: int = 256,
    lr: float = 1e-3,
    batch_size: int = 128,
) -> nn.Sequential:
    """Fit an MLP autoencoder on public images and return its decoder ``[N, latent_dim] -> [N, *shape]``.

    Args:
        public_images: ``[N, *shape]`` floats in [0, 1], disjoint from the victim's data; N >= 2.
        latent_dim: the code size, >= 1.
        steps: Adam steps, >= 1.
        seed: seeds the initialisation and the minibatches (the global RNG is untouched).
        hidden: width of the hidden layer of encoder and decoder, >= 1.
        lr: Adam's learning rate, > 0.
        batch_size: minibatch size, >= 1.

    Returns:
        The decoder ``nn.Sequential(OrderedDict(latent=Linear, fc=Linear, act=ReLU, out=Linear,
        squash=Sigmoid, shape=Unflatten))`` in eval mode with frozen parameters; ``latent`` is the folded
        standardisation (``z -> mu + sigma * z`` of the public codes).

    Raises:
        TypeError / ValueError: a bad argument, before training.
    """
    if not isinstance(public_images, Tensor) or not public_images.is_floating_point():
        raise TypeError(
            f"public_images must be a floating-point tensor [N, *shape], got {type(public_images).__name__}"
        )
    if public_images.dim() < 2 or public_images.shape[0] < 2:
        raise ValueError(f"public_images must be [N >= 2, *shape], got shape {tuple(public_images.shape)}")
    latent_dim = positive_int("latent_dim", latent_dim)
    steps = positive_int("steps", steps)
    positive_int("seed", seed, minimum=0)
    hidden = positive_int("hidden", hidden)
    lr = positive("lr", lr)
    batch_size = positive_int("batch_size", batch_size)
    shape = tuple(public_images.shape[1:])
    d = math.prod(shape)
    flat = public_images.detach().flatten(1)  # [N, d]
    with seeded(seed):
        encoder = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, latent_dim))
        decoder = nn.Sequential(
            OrderedDict(
                latent=nn.Linear(latent_dim, latent_dim),
                fc=nn.Linear(latent_dim, hidden),
                act=nn.ReLU(),
                out=nn.Linear(hidden, d),
                squash=nn.Sigmoid(),
                shape=nn.Unflatten(1, shape),
            )
        )
    encoder, decoder = encoder.to(flat.dtype), decoder.to(flat.dtype)
    with torch.no_grad():
        decoder.latent.weight.copy_(torch.eye(latent_dim))
        decoder.latent.bias.zero_()
    decoder.latent.requires_grad_(False)
    opt = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, flat.shape[0], (min(batch_size, flat.shape[0]),), generator=gen)  # [b]
        recon = decoder(encoder(flat[idx])).flatten(1)  # [b, d]
        loss = F.mse_loss(recon, flat[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        codes = encoder(flat)  # [N, latent]
        decoder.latent.weight.copy_(torch.diag(codes.std(0)))
        decoder.latent.bias.copy_(codes.mean(0))
    return decoder.eval().requires_grad_(False)


@register(
    "generative_prior",
    family="privacy",
    paper=4,
    summary="Inversion through a generator fitted on public data: optimise z so G(z)'s gradients match",
    claim="gradinfo.claims.generative_prior:check",
    example="gradinfo.privacy.attacks.generative_prior:CONFORMANCE",
)
def generative_prior(
    model: nn.Module,
    update: SharedUpdate,
    *,
    decoder: nn.Module,
    latent_dim: int,
    input_shape: tuple[int, ...],
    iterations: int = 1000,
    restarts: int = 4,
    lr: float = 0.1,
    decoder_iterations: int = 0,
    decoder_lr: float = 1e-3,
    labels: Tensor | None = None,
    seed: int = 0,
) -> Reconstruction:
    """Reconstruct the client's inputs as ``G(z*)``, searching the latent of a decoder fitted on public data.

    GEN-GIA of "Exploring the Vulnerabilities of Federated Learning: A Deep Dive into Gradient Inversion
    Attacks" (2025): minimise ``1 - cos(grad_theta CE(f(G(z)), y), g*)`` over ``z`` by signed Adam (multi-step
    decay, batched restarts), ``G`` from :func:`fit_decoder`; then, if ``decoder_iterations > 0``, the GIAS
    stage: per-example copies of ``G``'s weights and ``z`` descend the same objective jointly (Adam).

    Args:
        model: the round-start model.
        update: the shared batch-mean gradient (``kind == "gradient"``).
        decoder: ``G``, mapping ``[N, latent_dim]`` to ``[N, *input_shape]`` (e.g. from :func:`fit_decoder`).
        latent_dim: the size of ``z``.
        input_shape: one example's shape.
        iterations: Adam steps, >= 1.
        restarts: random initialisations ``z ~ N(0, I)`` run together, >= 1.
        lr: Adam's initial step size on ``z``, > 0.
        decoder_iterations: Adam steps of the GIAS stage (per-example decoder weights and ``z``), >= 0;
            0 searches the latent only. The total is ``iterations + decoder_iterations``.
        decoder_lr: Adam's step size in the GIAS stage, > 0.
        labels: the batch's labels ``[B]`` if known; None recovers them with :func:`label_recovery`.
        seed: seeds the initialisations and the label probes.

    Returns:
        A ``Reconstruction`` with ``inputs`` ``G(z*)`` ``[B, *input_shape]``, ``labels`` ``[B]``, the chosen
        restart's objective per iteration (both stages), and ``extras``: ``restart_losses`` ``[R]``,
        ``best_restart``.

    Raises:
        TypeError, ValueError: a bad argument or an update that does not fit the model, before any work.
    """
    batch, input_shape = check_attack_args(
        model, update, input_shape=input_shape, iterations=iterations, restarts=restarts
    )
    if not isinstance(decoder, nn.Module):
        raise TypeError(f"decoder must be an nn.Module (e.g. from fit_decoder), got {type(decoder).__name__}")
    latent_dim = positive_int("latent_dim", latent_dim)
    decoder_iterations = positive_int("decoder_iterations", decoder_iterations, minimum=0)
    decoder_lr = positive("decoder_lr", decoder_lr)
    with torch.no_grad():
        probe = decoder(torch.zeros(1, latent_dim, dtype=next(model.parameters()).dtype))
    if tuple(probe.shape[1:]) != input_shape:
        raise ValueError(
            f"decoder maps a latent of size {latent_dim} to {tuple(probe.shape[1:])}, expected input_shape "
            f"{input_shape}"
        )
    search = DecoderLatents(decoder, (latent_dim,), input_shape)
    optimizer = Adam(lr, signed=True, schedule=MultiStep())
    if labels is None:
        labels = label_recovery(model, update, input_shape=input_shape, seed=seed).labels
    result = match_gradients(
        model,
        update.grads,
        search,
        batch_size=batch,
        labels=labels,
        iterations=iterations,
        optimizer=optimizer,
        restarts=restarts,
        seed=seed,
    )
    if decoder_iterations == 0:
        return result.reconstruction(labels)
    assert result.latents is not None  # a decoder was searched
    start = time.perf_counter()
    inputs, trace = _tune_decoder(
        model, update, decoder, result.latents, labels, decoder_iterations, decoder_lr
    )
    rec = result.reconstruction(labels)
    return replace(
        rec,
        inputs=inputs,
        loss_trace=[*rec.loss_trace, *trace],
        seconds=rec.seconds + time.perf_counter() - start,
    )


def _tune_decoder(
    model: nn.Module,
    update: SharedUpdate,
    decoder: nn.Module,
    latents: Tensor,
    labels: Tensor,
    iterations: int,
    lr: float,
) -> tuple[Tensor, list[float]]:
    """GIAS stage: Adam on per-example decoder weights and latents ``[B, latent]``; best inputs, trace."""
    batch = latents.shape[0]
    net = copy.deepcopy(model).eval()
    params = {n: p.detach() for n, p in net.named_parameters() if n in update.grads}
    fixed = {n: p.detach() for n, p in net.named_parameters() if n not in params}
    fixed.update(dict(net.named_buffers()))
    weights, buffers = stack_module_state([copy.deepcopy(decoder) for _ in range(batch)])  # [B, ...] each
    weights = {n: w.detach().requires_grad_(True) for n, w in weights.items()}
    z = latents.detach().clone().requires_grad_(True)  # [B, latent]
    template = copy.deepcopy(decoder).to("meta")

    def decode_one(w: dict[str, Tensor], b: dict[str, Tensor], zb: Tensor) -> Tensor:  # [latent] -> [*input]
        return functional_call(template, (w, b), (zb.unsqueeze(0),)).squeeze(0)

    def inputs_now() -> Tensor:
        return torch.vmap(decode_one)(weights, buffers, z)  # [B, *input]

    opt = torch.optim.Adam([z, *weights.values()], lr=lr)
    best, best_inputs, trace = math.inf, inputs_now().detach(), []
    for _ in range(iterations + 1):
        x = inputs_now()  # [B, *input]
        loss = cosine_distance(loss_gradient(net, params, fixed, x, labels), update.grads)
        trace.append(float(loss.detach()))
        if trace[-1] < best:
            best, best_inputs = trace[-1], x.detach()
        if len(trace) > iterations:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    return best_inputs, trace[:iterations]


def _example_decoder(seed: int) -> nn.Module:
    public = torch.rand(32, 3, 8, 8, generator=torch.Generator().manual_seed(seed + 1))  # [32, 3, 8, 8]
    return fit_decoder(public, 4, steps=3, seed=seed, hidden=16)


CONFORMANCE = Conformance(
    call=lambda seed: (
        generative_prior(
            example_model(seed),
            example_update(seed),
            decoder=_example_decoder(seed),
            latent_dim=4,
            input_shape=(3, 8, 8),
            iterations=3,
            restarts=2,
            seed=seed,
        ).inputs
    ),
    bad_calls=(
        lambda: fit_decoder(torch.rand(1, 3, 8, 8), 4),
        lambda: fit_decoder(torch.rand(8, 3, 8, 8), 0),
        lambda: generative_prior(
            example_model(0),
            example_update(0),
            decoder=_example_decoder(0),
            latent_dim=4,
            input_shape=(1, 8, 8),
        ),
        lambda: generative_prior(
            example_model(0),
            example_update(0),
            decoder="G",
            latent_dim=4,
            input_shape=(3, 8, 8),  # type: ignore[arg-type]
        ),
    ),
)
