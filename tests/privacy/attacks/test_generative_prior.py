"""generative_prior: the decoder reproduces its data's span; a latent that decodes to the victim is found."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gradinfo.models import mlp
from gradinfo.privacy import share
from gradinfo.privacy.attacks.generative_prior import fit_decoder, generative_prior


def _public() -> torch.Tensor:
    """Images on a 2-D linear manifold: mixtures of two fixed 4x4 patterns."""
    gen = torch.Generator().manual_seed(0)
    basis = torch.rand(2, 16, generator=gen, dtype=torch.float64)  # [2, 16]
    mix = torch.rand(256, 2, generator=gen, dtype=torch.float64) * 0.5  # [256, 2]
    return (mix @ basis).view(256, 1, 4, 4)


@pytest.fixture(scope="module")
def decoder() -> torch.nn.Module:
    return fit_decoder(_public(), 2, steps=1500, seed=0, hidden=32, lr=3e-3)


def test_fit_decoder_reconstructs_and_standardises_the_latent(decoder: torch.nn.Module) -> None:
    public = _public()
    assert not any(p.requires_grad for p in decoder.parameters())
    with torch.no_grad():
        samples = decoder(torch.randn(512, 2, dtype=torch.float64))  # [512, 1, 4, 4]
    assert samples.shape == (512, 1, 4, 4)
    # samples of N(0, I) stay close to the public data's span (mean distance to the nearest public image)
    nearest = torch.cdist(samples.flatten(1), public.flatten(1)).min(1).values  # [512]
    spread = torch.cdist(public.flatten(1), public.flatten(1)).mean()
    assert nearest.mean() < 0.1 * spread


def test_attack_finds_a_latent_decoding_to_the_victim(decoder: torch.nn.Module) -> None:
    with torch.no_grad():
        x = decoder(torch.tensor([[0.3, -0.5]], dtype=torch.float64))  # [1, 1, 4, 4]  on the prior's range
    model = mlp(16, 3, hidden=(8,), seed=0).double()
    update = share(model, F.cross_entropy, x, torch.tensor([1]))
    rec = generative_prior(
        model, update, decoder=decoder, latent_dim=2, input_shape=(1, 4, 4), iterations=200, restarts=2
    )
    assert rec.labels.tolist() == [1]
    torch.testing.assert_close(rec.inputs, x, rtol=0, atol=0.02)


def _cosine_distance(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, target: dict) -> float:
    """1 - cos(grad, target) computed directly with autograd on the model, one example at a time summed."""
    loss = sum(F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]) for i in range(len(x))) / len(x)
    grads = torch.autograd.grad(loss, [p for _, p in model.named_parameters()])
    flat = torch.cat([g.flatten() for g in grads])
    ref = torch.cat([target[n].flatten() for n, _ in model.named_parameters()])
    return float(1 - flat @ ref / (flat.norm() * ref.norm()))


def test_gias_stage_leaves_the_prior_for_an_off_manifold_victim(decoder: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(2, 1, 4, 4, generator=gen, dtype=torch.float64)  # [2, 1, 4, 4] off the 2-D manifold
    y = torch.tensor([0, 2])
    model = mlp(16, 3, hidden=(8,), seed=0).double()
    update = share(model, F.cross_entropy, x, y)
    common = {"decoder": decoder, "latent_dim": 2, "input_shape": (1, 4, 4), "iterations": 100, "labels": y}
    latent_only = generative_prior(model, update, restarts=2, **common)
    gias = generative_prior(model, update, restarts=2, decoder_iterations=300, decoder_lr=1e-2, **common)
    assert len(gias.loss_trace) == 400
    # the kept inputs are the best GIAS iterate (the trace, or the evaluation after the last step)
    direct = _cosine_distance(model, gias.inputs, y, update.grads)
    assert direct <= min(gias.loss_trace[100:]) + 1e-12
    assert direct < min(gias.loss_trace[:100])
    assert direct < _cosine_distance(model, latent_only.inputs, y, update.grads)
    assert (gias.inputs - x).pow(2).mean() < (latent_only.inputs - x).pow(2).mean()


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="public_images"):
        fit_decoder(torch.rand(1, 1, 4, 4), 2)
    with pytest.raises(ValueError, match="latent_dim"):
        fit_decoder(torch.rand(8, 1, 4, 4), 0)
    decoder = fit_decoder(torch.rand(8, 1, 4, 4), 2, steps=1)
    model = mlp(16, 3, hidden=(8,), seed=0)
    update = share(model, F.cross_entropy, torch.rand(1, 1, 4, 4), torch.tensor([1]))
    with pytest.raises(ValueError, match="input_shape"):
        generative_prior(model, update, decoder=decoder, latent_dim=2, input_shape=(1, 2, 8))
    with pytest.raises(ValueError, match="decoder_iterations"):
        generative_prior(
            model, update, decoder=decoder, latent_dim=2, input_shape=(1, 4, 4), decoder_iterations=-1
        )
