"""input_grads against a float64 loop over examples, one backward each."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradinfo.capture.inputs import InputGrads, input_grads


def _ce(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(o.flatten(0, -2), t.flatten())


class TokenModel(nn.Module):
    """Embedding + LayerNorm + self-attention + head over a sequence."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 8)
        self.rest = nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8), nn.GELU())
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 11)

    def body(self, e: torch.Tensor) -> torch.Tensor:
        h = self.rest(e)
        return self.head(h + self.attn(h, h, h, need_weights=False)[0])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.body(self.embed(tokens))


def test_float_inputs_match_loop() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 25, 4)
    ).double()
    x = torch.randn(5, 2, 5, 5, dtype=torch.float64)
    y = torch.randint(0, 4, (5,))
    result = input_grads(model, _ce, x, y)
    torch.testing.assert_close(result.values, x, rtol=0, atol=0)
    got = result.grads
    assert got.shape == x.shape
    for i in range(5):
        xi = x[i : i + 1].clone().requires_grad_(True)
        (want,) = torch.autograd.grad(_ce(model(xi), y[i : i + 1]), xi)
        torch.testing.assert_close(got[i : i + 1], want, rtol=1e-10, atol=1e-13)
    assert all(p.grad is None for p in model.parameters())


def test_batch_reduce_is_gradient_of_batch_loss() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x = torch.randn(7, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (7,))
    leaf = x.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(_ce(model(leaf), y), leaf)
    batch = input_grads(model, _ce, x, y, reduce="batch").grads
    torch.testing.assert_close(batch, want, rtol=1e-10, atol=1e-13)
    # mean reduction: the batch gradient is the per-example gradient over B
    torch.testing.assert_close(input_grads(model, _ce, x, y).grads / 7, want, rtol=1e-10, atol=1e-13)


def test_tokens_match_loop_and_return_embedding_values() -> None:
    torch.manual_seed(0)
    model = TokenModel().double().eval()
    tokens = torch.randint(0, 11, (4, 6))
    targets = torch.randint(0, 11, (4, 6))
    got = input_grads(model, _ce, tokens, targets, embedding="embed")
    assert isinstance(got, InputGrads)
    assert got.grads.shape == (4, 6, 8)
    torch.testing.assert_close(got.values, model.embed(tokens).detach(), rtol=0, atol=0)
    for i in range(4):
        e = model.embed(tokens[i : i + 1]).detach().requires_grad_(True)
        (want,) = torch.autograd.grad(_ce(model.body(e), targets[i : i + 1]), e)
        torch.testing.assert_close(got.grads[i : i + 1], want, rtol=1e-10, atol=1e-13)
    by_module = input_grads(model, _ce, tokens, targets, embedding=model.embed)
    torch.testing.assert_close(by_module.grads, got.grads, rtol=0, atol=0)


def test_unreached_input_gives_zeros() -> None:
    model = nn.Linear(3, 2).double()
    x = torch.randn(2, 3, dtype=torch.float64)
    got = input_grads(model, lambda o, t: model.weight.sum() + 0 * t.sum(), x, torch.zeros(2)).grads
    assert torch.count_nonzero(got) == 0 and got.shape == x.shape


def test_bad_input() -> None:
    model = TokenModel()
    tokens = torch.randint(0, 11, (2, 6))
    with pytest.raises(TypeError, match="embedding="):
        input_grads(model, _ce, tokens, tokens)
    with pytest.raises(ValueError, match="embed"):
        input_grads(model, _ce, tokens, tokens, embedding="missing")
    with pytest.raises(TypeError, match=r"nn\.Embedding"):
        input_grads(model, _ce, tokens, tokens, embedding="head")
    with pytest.raises(ValueError, match="not a submodule"):
        input_grads(model, _ce, tokens, tokens, embedding=nn.Embedding(11, 8))
    with pytest.raises(ValueError, match="batch size"):
        input_grads(model, _ce, tokens, tokens[:1], embedding="embed")
    with pytest.raises(ValueError, match="reduce"):
        input_grads(model, _ce, tokens, tokens, embedding="embed", reduce="mean")
    twice = nn.Sequential()
    twice.embed = model.embed
    twice.forward = lambda t: twice.embed(t) + twice.embed(t)
    with pytest.raises(ValueError, match="2 times"):
        input_grads(twice, lambda o, t: o.sum(), tokens, tokens, embedding="embed")
    bn = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    with pytest.raises(ValueError, match="BatchNorm"):
        input_grads(bn, lambda o, t: o.sum(), torch.randn(4, 3), torch.zeros(4))
