"""share() against hand-written clients: mean gradient, K SGD steps, naive DP-SGD; no side effects."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import Tensor, nn

from gradinfo.privacy.threat import DPSGD, Reconstruction, SharedUpdate, share
from gradinfo.transform import add_gaussian_noise, chain, scale, topk_sparsify

B = 6


def _model(dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(3)
    layers: list[nn.Module] = [nn.Linear(5, 16), nn.Tanh()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(16, 3))
    return nn.Sequential(*layers).double()


def _batch(b: int = B) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.randn(b, 5, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (b,), generator=g
    )  # [B, 5], [B]


LOSS = nn.CrossEntropyLoss()


def _example_grads(model: nn.Module, x: Tensor, y: Tensor) -> list[dict[str, Tensor]]:
    """Naive loop: one backward per example."""
    out = []
    for i in range(x.shape[0]):
        model.zero_grad()
        LOSS(model(x[i : i + 1]), y[i : i + 1]).backward()
        out.append({n: p.grad.clone() for n, p in model.named_parameters()})
    model.zero_grad()
    return out


def _mean(grads: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {n: torch.stack([g[n] for g in grads]).mean(0) for n in grads[0]}


def _assert_grads_close(a: dict[str, Tensor], b: dict[str, Tensor], **tol: float) -> None:
    assert a.keys() == b.keys()
    for n in a:
        torch.testing.assert_close(a[n], b[n], **tol)


def test_undefended_gradient_is_the_batch_mean_of_example_gradients() -> None:
    model, (x, y) = _model().eval(), _batch()
    update = share(model, LOSS, x, y)
    assert (update.kind, update.batch_size, update.local_steps, update.defense) == ("gradient", B, 1, "none")
    _assert_grads_close(
        update.grads, _mean(_example_grads(copy.deepcopy(model), x, y)), rtol=1e-12, atol=1e-12
    )


def test_linear_least_squares_closed_form() -> None:
    # loss = mean_i ||W x_i + b - y_i||^2 / D  ->  dW = 2 / (B D) R^T X, db = 2 / (B D) sum_i r_i
    torch.manual_seed(0)
    model = nn.Linear(4, 2).double()
    x, y = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)  # [B, 4], [B, 2]
    r = model(x).detach() - y  # [B, 2]
    update = share(model, nn.MSELoss(), x, y)
    torch.testing.assert_close(update.grads["weight"], 2 / 10 * r.T @ x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(update.grads["bias"], 2 / 10 * r.sum(0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("steps", [2, 5])
def test_local_steps_share_the_delta_of_k_sgd_steps(steps: int) -> None:
    model, (x, y) = _model().eval(), _batch()
    reference = copy.deepcopy(model)
    opt = torch.optim.SGD(reference.parameters(), lr=0.3)
    for _ in range(steps):
        opt.zero_grad()
        LOSS(reference(x), y).backward()
        opt.step()
    update = share(model, LOSS, x, y, local_steps=steps, lr=0.3)
    expected = {
        n: p0 - p1 for (n, p0), p1 in zip(model.named_parameters(), reference.parameters(), strict=True)
    }
    assert (update.kind, update.local_steps, update.lr) == ("delta", steps, 0.3)
    _assert_grads_close(
        {n: g for n, g in update.grads.items()},
        {n: e.detach() for n, e in expected.items()},
        rtol=1e-10,
        atol=1e-12,
    )


def test_caller_model_and_rng_are_untouched() -> None:
    model, (x, y) = _model(dropout=0.5).train(), _batch()
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    for defense in (None, DPSGD(1.0, 1.0)):
        share(model, LOSS, x, y, local_steps=3, defense=defense, seed=4)
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training
    for n, t in model.state_dict().items():
        assert torch.equal(t, before[n]), n
    assert all(p.grad is None for p in model.parameters())
    assert not model._forward_hooks and not model[0]._forward_hooks and not model[0]._backward_hooks


def test_dropout_masks_are_private_and_seeded() -> None:
    model, (x, y) = _model(dropout=0.5).train(), _batch()
    a, b, c = (share(model, LOSS, x, y, seed=s).grads for s in (1, 1, 2))
    _assert_grads_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a["0.weight"], c["0.weight"])
    # the attacker's view without the masks differs from what was shared
    assert not torch.allclose(a["0.weight"], share(model.eval(), LOSS, x, y).grads["0.weight"])
    # seed 1 reproduces a client that drew its masks from a generator seeded with 1
    client = copy.deepcopy(model).train()
    torch.manual_seed(1)
    loss = LOSS(client(x), y)
    _assert_grads_close(
        a,
        dict(zip(a, torch.autograd.grad(loss, list(client.parameters())), strict=True)),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.parametrize("steps", [1, 3])
def test_transform_defense_is_applied_once_to_the_update(steps: int) -> None:
    model, (x, y) = _model().eval(), _batch()
    clean = share(model, LOSS, x, y, local_steps=steps).grads
    doubled = share(model, LOSS, x, y, local_steps=steps, defense=scale(2.0))
    _assert_grads_close(doubled.grads, {n: 2 * g for n, g in clean.items()}, rtol=1e-12, atol=0)
    assert doubled.defense == "scale"

    defense = chain(topk_sparsify(0.25), add_gaussian_noise(0.01, seed=5))
    params = {n: p.detach() for n, p in model.named_parameters()}
    expected, _ = defense.update(clean, defense.init(params), params)
    shared = share(model, LOSS, x, y, local_steps=steps, defense=defense, defense_name="top-k 75% + noise")
    _assert_grads_close(shared.grads, expected, rtol=0, atol=0)
    assert shared.defense == "top-k 75% + noise"


def _naive_dpsgd_step(model: nn.Module, x: Tensor, y: Tensor, max_norm: float) -> dict[str, Tensor]:
    clipped = []
    for g in _example_grads(model, x, y):
        norm = torch.sqrt(sum(v.pow(2).sum() for v in g.values()))
        clipped.append({n: v * min(1.0, max_norm / norm.item()) for n, v in g.items()})
    return _mean(clipped)


def test_dpsgd_without_noise_is_the_clipped_mean() -> None:
    model, (x, y) = _model().eval(), _batch()
    norms = [torch.sqrt(sum(v.pow(2).sum() for v in g.values())) for g in _example_grads(model, x, y)]
    max_norm = float(torch.stack(norms).median())  # clips about half the examples
    update = share(model, LOSS, x, y, defense=DPSGD(max_norm, 0.0))
    assert update.defense == f"DP-SGD (clip {max_norm:g}, noise multiplier 0)"
    _assert_grads_close(
        update.grads, _naive_dpsgd_step(copy.deepcopy(model), x, y, max_norm), rtol=1e-10, atol=1e-12
    )


def test_dpsgd_local_steps_clip_at_every_step() -> None:
    model, (x, y) = _model().eval(), _batch()
    reference = copy.deepcopy(model)
    for _ in range(3):
        step = _naive_dpsgd_step(reference, x, y, 0.5)
        with torch.no_grad():
            for n, p in reference.named_parameters():
                p.sub_(0.2 * step[n])
    update = share(model, LOSS, x, y, defense=DPSGD(0.5, 0.0), local_steps=3, lr=0.2)
    expected = {
        n: p0.detach() - p1.detach()
        for (n, p0), p1 in zip(model.named_parameters(), reference.parameters(), strict=True)
    }
    _assert_grads_close(update.grads, expected, rtol=1e-10, atol=1e-12)


def test_dpsgd_noise_has_std_sigma_c_over_b_and_is_seeded() -> None:
    torch.manual_seed(0)
    model = nn.Linear(50, 40).double()  # 2040 coordinates
    x, y = torch.randn(B, 50, dtype=torch.float64), torch.randint(0, 40, (B,))  # [B, 50], [B]
    clean = share(model, LOSS, x, y, defense=DPSGD(0.1, 0.0)).grads
    noisy = share(model, LOSS, x, y, defense=DPSGD(0.1, 3.0), seed=9).grads
    again = share(model, LOSS, x, y, defense=DPSGD(0.1, 3.0), seed=9).grads
    _assert_grads_close(noisy, again, rtol=0, atol=0)
    noise = torch.cat([(noisy[n] - clean[n]).flatten() for n in clean])  # [P]
    assert noise.std().item() == pytest.approx(3.0 * 0.1 / B, rel=0.06)  # 2040 draws: ~1.6% std. error
    assert abs(noise.mean().item()) < 4 * 0.05 / 45


def test_shared_update_and_reconstruction_are_frozen() -> None:
    update = share(_model().eval(), LOSS, *_batch())
    assert isinstance(update, SharedUpdate)
    with pytest.raises(dataclasses.FrozenInstanceError):
        update.lr = 1.0  # type: ignore[misc]
    rec = Reconstruction(inputs=torch.zeros(2, 5), labels=None, loss_trace=[1.0, 0.5], seconds=0.1)
    assert rec.extras == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.seconds = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model": "net"}, TypeError, "model"),
        ({"loss_fn": 3}, TypeError, "loss_fn"),
        ({"inputs": [[0.0] * 5]}, TypeError, "inputs"),
        ({"targets": torch.zeros(2, dtype=torch.long)}, ValueError, "same batch size"),
        ({"inputs": torch.zeros(0, 5)}, ValueError, "non-empty"),
        ({"defense": "dp"}, TypeError, "defense"),
        ({"defense": scale}, TypeError, "defense"),
        ({"local_steps": 0}, ValueError, "local_steps"),
        ({"local_steps": 1.0}, TypeError, "local_steps"),
        ({"lr": 0.0}, ValueError, "lr"),
        ({"seed": -1}, ValueError, "seed"),
        ({"defense_name": 3}, TypeError, "defense_name"),
    ],
)
def test_share_rejects_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    x, y = _batch()
    args = {"model": _model(), "loss_fn": LOSS, "inputs": x, "targets": y, **kwargs}
    with pytest.raises(error, match=match):
        share(args.pop("model"), args.pop("loss_fn"), args.pop("inputs"), args.pop("targets"), **args)


def test_share_rejects_a_frozen_model_and_bad_dpsgd() -> None:
    model = _model()
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        share(model, LOSS, *_batch())
    with pytest.raises(ValueError, match="max_norm"):
        DPSGD(0.0, 1.0)
    with pytest.raises(ValueError, match="noise_multiplier"):
        DPSGD(1.0, -1.0)


@pytest.mark.parametrize("steps", [1, 3])
def test_dpsgd_then_transforms_composes_like_applying_them_in_turn(steps: int) -> None:
    model, (x, y) = _model().eval(), _batch()
    max_norm = 0.5
    dp = share(model, LOSS, x, y, local_steps=steps, defense=DPSGD(max_norm, 0.7), seed=4)
    sparse = topk_sparsify(0.25)
    params = {n: p.detach() for n, p in model.named_parameters()}
    expected, _ = sparse.update({n: 3 * g for n, g in dp.grads.items()}, sparse.init(params), params)
    both = share(
        model, LOSS, x, y, local_steps=steps, defense=(DPSGD(max_norm, 0.7), scale(3.0), sparse), seed=4
    )
    _assert_grads_close(both.grads, expected, rtol=1e-12, atol=1e-15)  # same noise: same seed, same RNG use
    assert both.defense == "DP-SGD (clip 0.5, noise multiplier 0.7) + scale + topk_sparsify"


def test_defense_tuples_are_checked() -> None:
    model, (x, y) = _model(), _batch()
    with pytest.raises(ValueError, match="DPSGD may only come first"):
        share(model, LOSS, x, y, defense=(scale(2.0), DPSGD(1.0, 1.0)))
    with pytest.raises(ValueError, match="empty tuple"):
        share(model, LOSS, x, y, defense=())
    with pytest.raises(TypeError, match="got str"):
        share(model, LOSS, x, y, defense=(DPSGD(1.0, 1.0), "sketch"))  # type: ignore[arg-type]
