"""per_example_norms and clipped_grad_sum against materialised float64 per-example gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from capture_helpers import CNN, MLP, TokenModel, loop_grads, token_loss
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import gradinfo.capture.norms as norms_module
from gradinfo.capture import clipped_grad_sum, per_example_norms
from gradinfo.capture.layers import linear


def _reference_norms(grads):
    return torch.stack([v.flatten(1).pow(2).sum(1) for v in grads.values()]).sum(0).sqrt()


def _no_fallback(*args, **kwargs):
    raise AssertionError("the torch.func fallback was used")


def _cases():
    return {
        "mlp": (MLP(), torch.randn(5, 6), torch.randint(0, 3, (5,)), F.cross_entropy),
        "cnn": (CNN(), torch.randn(4, 2, 8, 8), torch.randint(0, 3, (4,)), F.cross_entropy),
        "tokens": (TokenModel(), torch.randint(0, 11, (3, 5)), torch.randint(0, 11, (3, 5)), token_loss),
        "tied": (
            TokenModel(tie=True),
            torch.randint(0, 11, (3, 5)),
            torch.randint(0, 11, (3, 5)),
            token_loss,
        ),
    }


@pytest.mark.parametrize("case", ["mlp", "cnn", "tokens", "tied"])
def test_norms_and_clipped_sum_match_materialised(case, monkeypatch):
    model, x, y, loss_fn = _cases()[case]
    model = model.double()
    x = x.double() if x.is_floating_point() else x
    want = loop_grads(model, loss_fn, x, y)
    norms = _reference_norms(want)
    monkeypatch.setattr(norms_module, "functorch_grads", _no_fallback)
    torch.testing.assert_close(per_example_norms(model, loss_fn, x, y), norms, rtol=1e-10, atol=0)
    bound = float(norms.median())
    coef = (bound / norms).clamp(max=1.0)
    got = clipped_grad_sum(model, loss_fn, x, y, bound)
    for k, v in want.items():
        torch.testing.assert_close(got[k], torch.einsum("b,b...->...", coef, v), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(("t", "d_in", "d_out", "gram"), [(3, 8, 8, True), (12, 2, 3, False)])
def test_sequence_linear_gram_and_materialised_paths(t, d_in, d_out, gram):
    assert linear.use_gram(t, d_in, d_out) is gram
    model = nn.Sequential(nn.Linear(d_in, d_out), nn.Tanh(), nn.Linear(d_out, 2)).double()
    x, y = torch.randn(4, t, d_in, dtype=torch.float64), torch.randn(4, t, 2, dtype=torch.float64)
    want = _reference_norms(loop_grads(model, F.mse_loss, x, y))
    torch.testing.assert_close(per_example_norms(model, F.mse_loss, x, y), want, rtol=1e-10, atol=0)


def test_norms_float32():
    model, x, y, loss_fn = _cases()["tokens"]
    want = _reference_norms(loop_grads(model, loss_fn, x, y))
    torch.testing.assert_close(per_example_norms(model, loss_fn, x, y), want, rtol=1e-5, atol=0)


def test_fallback_model_norms_and_clipping():
    model = nn.Sequential(nn.Linear(4, 4), nn.PReLU(), nn.Linear(4, 3)).double()  # PReLU: unsupported
    x, y = torch.randn(6, 4, dtype=torch.float64), torch.randint(0, 3, (6,))
    want = loop_grads(model, F.cross_entropy, x, y)
    norms = _reference_norms(want)
    torch.testing.assert_close(per_example_norms(model, F.cross_entropy, x, y), norms, rtol=1e-10, atol=0)
    got = clipped_grad_sum(model, F.cross_entropy, x, y, 0.1)
    coef = (0.1 / norms).clamp(max=1.0)
    for k, v in want.items():
        torch.testing.assert_close(got[k], torch.einsum("b,b...->...", coef, v), rtol=1e-10, atol=1e-13)


@settings(max_examples=8, deadline=None)
@given(bound=st.floats(1e-3, 10.0), seed=st.integers(0, 1000))
def test_clipped_contributions_bounded(bound, seed):
    torch.manual_seed(seed)
    model = MLP().double()
    x, y = torch.randn(1, 6, dtype=torch.float64), torch.randint(0, 3, (1,))
    # one example: the clipped sum is that example's clipped gradient, so its norm is <= bound
    total = clipped_grad_sum(model, F.cross_entropy, x, y, bound)
    norm = torch.sqrt(sum(v.pow(2).sum() for v in total.values()))
    raw = per_example_norms(model, F.cross_entropy, x, y)[0]
    assert norm <= bound * (1 + 1e-9)
    torch.testing.assert_close(
        norm, torch.minimum(raw, torch.tensor(bound, dtype=raw.dtype)), rtol=1e-9, atol=0
    )


@pytest.mark.parametrize(
    ("bound", "error"), [(0.0, ValueError), (-1.0, ValueError), (float("inf"), ValueError), ("1", TypeError)]
)
def test_bad_max_norm(bound, error):
    with pytest.raises(error, match="max_norm"):
        clipped_grad_sum(MLP(), F.cross_entropy, torch.randn(2, 6), torch.randint(0, 3, (2,)), bound)


def test_norms_bad_input():
    with pytest.raises(ValueError, match="same batch size"):
        per_example_norms(MLP(), F.cross_entropy, torch.randn(2, 6), torch.randint(0, 3, (3,)))
