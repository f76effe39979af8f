"""Importance scores against float64 loops over single examples."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import gradinfo.compress
from gradinfo.compress import aggregate, fisher_diag, group_taylor, importance, mean_grad
from gradinfo.models import tiny_llama

TOL = {"rtol": 1e-9, "atol": 1e-12}


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out - y).square().mean()


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [
        (torch.randn(b, 5, generator=gen, dtype=torch.float64), torch.randn(b, 3, generator=gen).double())
        for b in (4, 3, 6)
    ]


def _loop_moments(model, batches, loss_fn):
    """Mean gradient and mean squared gradient over single examples, by a plain autograd loop."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad]
    first = {n: torch.zeros_like(p) for n, p in zip(names, params, strict=True)}
    second = {n: torch.zeros_like(p) for n, p in zip(names, params, strict=True)}
    count = 0
    for x, y in batches:
        for i in range(x.shape[0]):
            grads = torch.autograd.grad(loss_fn(model(x[i : i + 1]), y[i : i + 1]), params)
            for n, g in zip(names, grads, strict=True):
                first[n] += g
                second[n] += g * g
            count += 1
    return {n: v / count for n, v in first.items()}, {n: v / count for n, v in second.items()}


@pytest.mark.parametrize("chunk_size", [None, 1, 2])
def test_fisher_and_mean_grad_match_single_example_loop(chunk_size):
    model, batches = _mlp(), _batches()
    g_ref, f_ref = _loop_moments(model, batches, _mse)
    f = fisher_diag(model, batches, _mse, chunk_size=chunk_size)
    g = mean_grad(model, batches, _mse)
    assert f.keys() == f_ref.keys() == g.keys()
    for n in f:
        torch.testing.assert_close(f[n], f_ref[n], **TOL)
        torch.testing.assert_close(g[n], g_ref[n], **TOL)
    # the true per-example Fisher is not the squared mean gradient
    assert not torch.allclose(f["0.weight"], g["0.weight"].square())


def test_scores_match_formulas_on_tiny_llama():
    model = tiny_llama(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1, vocab_size=11).double()
    gen = torch.Generator().manual_seed(2)
    tokens = torch.randint(11, (5, 7), generator=gen)  # [B, T]
    batches = [(tokens[:3, :-1], tokens[:3, 1:]), (tokens[3:, :-1], tokens[3:, 1:])]

    def lm_loss(out, y):
        return nn.functional.cross_entropy(out.logits.flatten(0, 1), y.flatten())

    g_ref, f_ref = _loop_moments(model, batches, lm_loss)
    names = ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.down_proj.weight"]
    w = dict(model.named_parameters())
    expected = {
        "taylor": lambda n: (w[n] * g_ref[n]).abs(),
        "fisher": lambda n: 0.5 * w[n] ** 2 * f_ref[n],
        "param_mix": lambda n: (w[n] * g_ref[n] - 0.5 * w[n] ** 2 * f_ref[n]).abs(),
        "l2": lambda n: w[n] ** 2,
    }
    for kind, formula in expected.items():
        scores = importance(model, batches, lm_loss, kind=kind, params=names, chunk_size=2)
        assert list(scores) == names
        for n in names:
            # a batched Llama forward differs from single-example ones at ~1e-8 relative (HF computes the
            # rotary tables in float32), hence the looser tolerance than for the MLP
            torch.testing.assert_close(scores[n], formula(n).detach(), rtol=1e-5, atol=1e-9)
    assert all(p.requires_grad for p in model.parameters())  # restored after the restricted pass


def test_params_restriction_equals_full_pass_and_restores_requires_grad():
    model, batches = _mlp(), _batches()
    full = fisher_diag(model, batches, _mse)
    part = fisher_diag(model, batches, _mse, params=["2.weight"])
    assert list(part) == ["2.weight"]
    torch.testing.assert_close(part["2.weight"], full["2.weight"], **TOL)
    assert all(p.requires_grad for p in model.parameters())


def test_random_and_l2_need_no_data_and_random_is_seeded():
    model = _mlp()
    a = importance(model, None, None, kind="random", seed=3)
    b = importance(model, None, None, kind="random", seed=3)
    c = importance(model, None, None, kind="random", seed=4)
    for n in a:
        assert torch.equal(a[n], b[n])
        assert ((a[n] >= 0) & (a[n] < 1)).all()
    assert not torch.equal(a["0.weight"], c["0.weight"])
    l2 = importance(model, None, None, kind="l2")
    torch.testing.assert_close(l2["2.bias"], model[2].bias.detach() ** 2, rtol=0, atol=0)


def test_package_exports_the_importance_function():
    from gradinfo.compress.scores import importance as function

    model = _mlp()
    assert gradinfo.compress.importance is function
    assert (
        gradinfo.compress.importance(model, None, None, kind="l2").keys()
        == dict(model.named_parameters()).keys()
    )


def test_group_taylor_against_loop():
    gen = torch.Generator().manual_seed(5)
    w, g = torch.randn(6, 4, generator=gen).double(), torch.randn(6, 4, generator=gen).double()
    rows = group_taylor(w, g, dim=0, group_size=2)
    cols = group_taylor(w, g, dim=1)
    ref_rows = torch.tensor(
        [abs(sum(float(w[i, j] * g[i, j]) for i in (2 * k, 2 * k + 1) for j in range(4))) for k in range(3)],
        dtype=torch.float64,
    )
    ref_cols = torch.tensor(
        [abs(sum(float(w[i, j] * g[i, j]) for i in range(6))) for j in range(4)], dtype=torch.float64
    )
    torch.testing.assert_close(rows, ref_rows, **TOL)
    torch.testing.assert_close(cols, ref_cols, **TOL)


@settings(max_examples=20, deadline=None)
@given(
    st.lists(st.lists(st.floats(0.0, 10.0, allow_nan=False), min_size=3, max_size=3), min_size=1, max_size=4),
    st.sampled_from(["sum", "mean", "max", "prod"]),
)
def test_aggregate_matches_python_reduction(members, how):
    scores = [torch.tensor(m, dtype=torch.float64) for m in members]
    out = aggregate(scores, how)
    for k in range(3):
        column = [m[k] for m in members]
        ref = {"sum": sum(column), "mean": sum(column) / len(column), "max": max(column)}.get(how)
        if how == "prod":
            ref = 1.0
            for v in column:
                ref *= v
        torch.testing.assert_close(out[k].item(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "call",
    [
        lambda m, b: importance(m, b, _mse, kind="nope"),
        lambda m, b: importance(m, None, _mse, kind="taylor"),
        lambda m, b: importance(m, iter(b), _mse, kind="taylor"),
        lambda m, b: importance(m, b, _mse, params=["missing.weight"]),
        lambda m, b: importance(m, b, _mse, params="0.weight"),
        lambda m, b: importance(m, None, None, kind="random", seed=-1),
        lambda m, b: fisher_diag(m, b, _mse, chunk_size=0),
        lambda m, b: fisher_diag(m, [], _mse),
        lambda m, b: fisher_diag(m, [torch.zeros(2, 5)], _mse),
        lambda m, b: mean_grad("model", b, _mse),
        lambda m, b: aggregate([], "sum"),
        lambda m, b: aggregate([torch.ones(2), torch.ones(3)]),
        lambda m, b: aggregate([torch.ones(2)], "median"),
        lambda m, b: group_taylor(torch.ones(4, 2), torch.ones(4, 2), group_size=3),
        lambda m, b: group_taylor(torch.ones(4, 2), torch.ones(2, 4)),
    ],
)
def test_bad_input_raises(call):
    with pytest.raises((ValueError, TypeError)):
        call(_mlp(), _batches())
