"""batch_grads against a float64 loop over single examples (mean loss = mean of per-example gradients)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradinfo.capture import batch_grads


class _Net(nn.Module):
    """A tanh MLP with one layer the loss never reaches."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
        self.unused = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # [B, 3]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return _Net().double()


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out - y).square().mean()


def test_matches_mean_of_single_example_gradients():
    model = _model()
    model.body[0].bias.requires_grad_(False)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(6, 4, generator=gen).double(), torch.randn(6, 3, generator=gen).double()
    got = batch_grads(model, _mse, x, y)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert list(got.grads) == list(params)
    want = {n: torch.zeros_like(p) for n, p in params.items()}
    for i in range(6):
        loss = _mse(model(x[i : i + 1]), y[i : i + 1])
        for n, g in zip(
            params, torch.autograd.grad(loss, list(params.values()), allow_unused=True), strict=True
        ):
            if g is not None:
                want[n] += g / 6
    for n in params:
        torch.testing.assert_close(got.grads[n], want[n], rtol=1e-12, atol=1e-14)
    assert torch.equal(got.grads["unused.weight"], torch.zeros(2, 2, dtype=torch.float64))
    torch.testing.assert_close(got.loss, _mse(model(x), y).detach(), rtol=0, atol=0)
    assert not got.loss.requires_grad and all(p.grad is None for p in model.parameters())


def test_works_under_no_grad():
    model = _model()
    x, y = torch.randn(3, 4).double(), torch.randn(3, 3).double()
    with torch.no_grad():
        got = batch_grads(model, _mse, x, y)
    assert got.grads["body.0.weight"].abs().sum() > 0


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda m, x, y: batch_grads("model", _mse, x, y), TypeError),
        (lambda m, x, y: batch_grads(m, "mse", x, y), TypeError),
        (lambda m, x, y: batch_grads(m, _mse, x[:2], y), ValueError),
        (lambda m, x, y: batch_grads(m, lambda o, t: (o - t).square(), x, y), ValueError),
        (lambda m, x, y: batch_grads(m, lambda o, t: 1.0, x, y), TypeError),
        (lambda m, x, y: batch_grads(m.requires_grad_(False), _mse, x, y), ValueError),
    ],
)
def test_bad_input_raises(call, error):
    with pytest.raises(error):
        call(_model(), torch.randn(3, 4).double(), torch.randn(3, 3).double())
