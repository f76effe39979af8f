"""hvp, gnvp and empirical_fisher_diag against dense float64 references."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd.functional import hessian, jacobian
from torch.func import functional_call

from gradinfo.capture.curvature import empirical_fisher_diag, gnvp, hvp


def _ce(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(o, t)


class Net(nn.Module):
    """Small CNN + MLP head with a frozen layer and a parameter the loss never reaches."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, stride=2, padding=1)
        self.fc = nn.Linear(2 * 9, 4)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)
        self.out = nn.Linear(4, 3)
        self.unused = nn.Parameter(torch.randn(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv(x)).flatten(1)
        return self.out(torch.tanh(self.frozen(torch.tanh(self.fc(h)))))


def _setup() -> tuple[Net, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = Net().double()
    x = torch.randn(5, 1, 6, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (5,))
    v = {n: torch.randn_like(p) for n, p in model.named_parameters() if p.requires_grad}
    return model, x, y, v


def _flat_fn(model: nn.Module, fn):
    """``fn`` of the model's trainable parameters as one flat float64 vector."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def of_flat(flat: torch.Tensor):
        params, start = {}, 0
        for n, p in named:
            params[n] = flat[start : start + p.numel()].view_as(p)
            start += p.numel()
        return fn(lambda x: functional_call(model, params, (x,)))

    return torch.cat([p.detach().flatten() for _, p in named]), of_flat


def _flat(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.flatten() for g in grads.values()])


def test_hvp_matches_dense_hessian() -> None:
    model, x, y, v = _setup()
    theta, loss_of = _flat_fn(model, lambda f: _ce(f(x), y))
    dense = hessian(loss_of, theta)  # [P, P]
    got = hvp(model, _ce, x, y, v)
    assert list(got) == list(v)
    torch.testing.assert_close(_flat(got), dense @ _flat(v), rtol=1e-10, atol=1e-12)
    assert torch.count_nonzero(got["unused"]) == 0
    assert all(p.grad is None for p in model.parameters())


def test_gnvp_matches_dense_ggn() -> None:
    model, x, y, v = _setup()
    theta, out_of = _flat_fn(model, lambda f: f(x).flatten())
    jac = jacobian(out_of, theta)  # [O, P]
    z = model(x).detach()
    h_z = hessian(lambda flat: _ce(flat.view_as(z), y), z.flatten())  # [O, O]
    got = gnvp(model, _ce, x, y, v)
    torch.testing.assert_close(_flat(got), jac.T @ h_z @ jac @ _flat(v), rtol=1e-10, atol=1e-12)
    assert torch.count_nonzero(got["unused"]) == 0
    # cross-entropy is convex in the logits, so the GGN is PSD: v^T G v >= 0
    assert torch.dot(_flat(got), _flat(v)) >= 0


def test_linear_regression_ggn_equals_hessian_closed_form() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 1).double()
    x = torch.randn(9, 4, dtype=torch.float64)
    y = torch.randn(9, 1, dtype=torch.float64)
    v = {"weight": torch.randn(1, 4, dtype=torch.float64), "bias": torch.randn(1, dtype=torch.float64)}
    design = torch.cat([x, torch.ones(9, 1, dtype=torch.float64)], 1)  # [B, d + 1]
    closed = 2 / 9 * design.T @ design  # Hessian of mean squared error
    want = closed @ _flat(v)
    mse = nn.functional.mse_loss
    torch.testing.assert_close(_flat(hvp(model, mse, x, y, v)), want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(_flat(gnvp(model, mse, x, y, v)), want, rtol=1e-10, atol=1e-12)


def test_linear_loss_has_zero_curvature() -> None:
    model = nn.Linear(3, 2).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    v = {n: torch.ones_like(p) for n, p in model.named_parameters()}

    def linear(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (o * t).sum()

    for fn in (hvp, gnvp):
        got = fn(model, linear, x, torch.ones(4, 2, dtype=torch.float64), v)
        assert all(torch.count_nonzero(g) == 0 for g in got.values())


@pytest.mark.parametrize("chunk_size", [None, 1, 2, 5])
def test_fisher_diag_matches_loop(chunk_size: int | None) -> None:
    model, x, y, _ = _setup()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    want = {n: torch.zeros_like(p) for n, p in named}
    for i in range(5):
        grads = torch.autograd.grad(
            _ce(model(x[i : i + 1]), y[i : i + 1]), [p for _, p in named], allow_unused=True
        )
        for (n, _), g in zip(named, grads, strict=True):
            if g is not None:
                want[n] += g.square() / 5
    got = empirical_fisher_diag(model, _ce, x, y, chunk_size=chunk_size)
    assert list(got) == list(want)
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-10, atol=1e-14)
    batch = torch.autograd.grad(_ce(model(x), y), model.fc.weight)[0]
    assert not torch.allclose(got["fc.weight"], batch.square())  # not the squared batch gradient


def test_bad_input() -> None:
    model, x, y, v = _setup()
    with pytest.raises(ValueError, match="missing \\['unused'\\]"):
        hvp(model, _ce, x, y, {k: t for k, t in v.items() if k != "unused"})
    with pytest.raises(ValueError, match="unexpected \\['nope'\\]"):
        gnvp(model, _ce, x, y, {**v, "nope": torch.zeros(1)})
    with pytest.raises(ValueError, match="wrong shapes"):
        hvp(model, _ce, x, y, {**v, "unused": torch.zeros(3)})
    with pytest.raises(TypeError, match="dict"):
        hvp(model, _ce, x, y, list(v.values()))
    with pytest.raises(ValueError, match="batch size"):
        hvp(model, _ce, x, y[:2], v)
    with pytest.raises(ValueError, match="scalar"):
        hvp(model, lambda o, t: o, x, y, v)
    with pytest.raises(ValueError, match="chunk_size"):
        empirical_fisher_diag(model, _ce, x, y, chunk_size=0)
    with pytest.raises(ValueError, match="trainable"):
        empirical_fisher_diag(nn.Linear(2, 2).requires_grad_(False), _ce, x, y)
