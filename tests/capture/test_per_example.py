"""per_example_grads against a float64 microbatch loop, Opacus, and on bad input."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from capture_helpers import CNN, MLP, TokenModel, assert_grads_close, loop_grads, token_loss
from torch import nn

import gradinfo.capture.norms as norms_module
import gradinfo.capture.per_example as pe
from gradinfo.capture import per_example_grads


def _no_fallback(*args, **kwargs):
    raise AssertionError("the torch.func fallback was used where the fast path should apply")


def _cases():
    return {
        "mlp": (MLP, lambda: torch.randn(5, 6), lambda: torch.randint(0, 3, (5,)), F.cross_entropy),
        "cnn": (CNN, lambda: torch.randn(4, 2, 8, 8), lambda: torch.randint(0, 3, (4,)), F.cross_entropy),
        "tokens": (
            TokenModel,
            lambda: torch.randint(0, 11, (3, 5)),
            lambda: torch.randint(0, 11, (3, 5)),
            token_loss,
        ),
        "tied": (
            lambda: TokenModel(tie=True),
            lambda: torch.randint(0, 11, (3, 5)),
            lambda: torch.randint(0, 11, (3, 5)),
            token_loss,
        ),
    }


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", list(_cases()))
def test_fast_path_matches_loop(case, dtype, monkeypatch):
    make, make_x, make_y, loss_fn = _cases()[case]
    model = make().to(dtype)
    x, y = make_x(), make_y()
    x = x.to(dtype) if x.is_floating_point() else x
    want = loop_grads(model, loss_fn, x, y)
    monkeypatch.setattr(pe, "functorch_grads", _no_fallback)
    assert_grads_close(per_example_grads(model, loss_fn, x, y), want, dtype)


@pytest.mark.parametrize("case", [*_cases(), "layer_norm_2d"])
def test_results_are_dense_and_own_their_storage(case):
    """Results adopted from the layer rules (no copy) must not alias each other, the inputs or autograd."""
    if case == "layer_norm_2d":  # LayerNorm on [B, D]: the bias gradient equals the output gradient
        model = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 3)).double()
        x, y, loss_fn = torch.randn(5, 6, dtype=torch.float64), torch.randint(0, 3, (5,)), F.cross_entropy
    else:
        make, make_x, make_y, loss_fn = _cases()[case]
        model, x, y = make().double(), make_x(), make_y()
        x = x.double() if x.is_floating_point() else x
    want = loop_grads(model, loss_fn, x, y)
    got = per_example_grads(model, loss_fn, x, y)
    storages = [g.untyped_storage().data_ptr() for g in got.values()]
    assert len(set(storages)) == len(storages)
    assert x.untyped_storage().data_ptr() not in storages
    for k, g in got.items():
        assert g.is_contiguous() and g.storage_offset() == 0, k
        assert g.untyped_storage().nbytes() == g.numel() * g.element_size(), k
    assert_grads_close(got, want, torch.float64)
    for g in got.values():  # writing into one result leaves the others exact
        g.zero_()
        break
    assert_grads_close(dict(list(got.items())[1:]), dict(list(want.items())[1:]), torch.float64)


def test_tied_weight_key_and_sum():
    model = TokenModel(tie=True).double()
    names = [n for n, _ in model.named_parameters()]
    assert "emb.weight" in names and "head.weight" not in names
    x, y = torch.randint(1, 11, (2, 5)), torch.randint(0, 11, (2, 5))
    got = per_example_grads(model, token_loss, x, y)
    untied = copy.deepcopy(model)
    untied.head.weight = nn.Parameter(model.emb.weight.detach().clone())
    parts = loop_grads(untied, token_loss, x, y)
    torch.testing.assert_close(
        got["emb.weight"], parts["emb.weight"] + parts["head.weight"], rtol=1e-10, atol=1e-12
    )


def test_frozen_parameters_left_out():
    model = MLP().double()
    model.net[0].weight.requires_grad_(False)
    model.net[2].bias.requires_grad_(False)
    x, y = torch.randn(4, 6, dtype=torch.float64), torch.randint(0, 3, (4,))
    got = per_example_grads(model, F.cross_entropy, x, y)
    assert "net.0.weight" not in got and "net.2.bias" not in got
    assert_grads_close(got, loop_grads(model, F.cross_entropy, x, y), torch.float64)


def test_group_norm_conv():
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.GroupNorm(2, 4), nn.ReLU(), nn.Flatten(), nn.Linear(16, 2)
    ).double()
    x, y = torch.randn(4, 2, 4, 4, dtype=torch.float64), torch.randint(0, 2, (4,))
    assert_grads_close(
        per_example_grads(model, F.cross_entropy, x, y),
        loop_grads(model, F.cross_entropy, x, y),
        torch.float64,
    )


def test_transformer_encoder_not_batch_first():
    """Sequence-first layers put T on axis 0 of their Linears: fast path declines, fallback exact."""

    class SequenceFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            return self.head(self.layer(x.transpose(0, 1)).mean(0))

    m = SequenceFirst().double()
    x, y = torch.randn(4, 3, 8, dtype=torch.float64), torch.randint(0, 2, (4,))
    assert_grads_close(
        per_example_grads(m, F.cross_entropy, x, y), loop_grads(m, F.cross_entropy, x, y), torch.float64
    )


def test_chunked_equals_unchunked():
    model = CNN().double()
    x, y = torch.randn(7, 2, 8, 8, dtype=torch.float64), torch.randint(0, 3, (7,))
    whole = per_example_grads(model, F.cross_entropy, x, y)
    for chunk in (1, 3):
        parts = per_example_grads(model, F.cross_entropy, x, y, chunk_size=chunk)
        for k in whole:
            torch.testing.assert_close(parts[k], whole[k], rtol=1e-12, atol=1e-14)


class _Custom(nn.Module):
    """A parameter outside any supported layer and a buffer: needs the torch.func fallback."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.scale = nn.Parameter(torch.randn(3))
        self.register_buffer("shift", torch.randn(3))

    def forward(self, x):
        return self.lin(x) * self.scale + self.shift


class _Reuse(nn.Module):
    """A Linear's weight also used outside the module call: the graph check must force the fallback."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return self.lin(x) @ self.lin.weight


@pytest.mark.parametrize("make", [_Custom, _Reuse])
def test_fallback_models_match_loop(make):
    model = make().double()
    x, y = torch.randn(5, 4, dtype=torch.float64), torch.randint(0, 3, (5,))
    assert_grads_close(
        per_example_grads(model, F.cross_entropy, x, y),
        loop_grads(model, F.cross_entropy, x, y),
        torch.float64,
    )


def test_eval_batchnorm_works_and_train_batchnorm_names_module():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 2)).double()
    x, y = torch.randn(3, 1, 4, 4, dtype=torch.float64), torch.randint(0, 2, (3,))
    with pytest.raises(ValueError, match=r"1.*model\.eval\(\).*GroupNorm"):
        per_example_grads(model, F.cross_entropy, x, y)
    model.eval()
    assert_grads_close(
        per_example_grads(model, F.cross_entropy, x, y),
        loop_grads(model, F.cross_entropy, x, y),
        torch.float64,
    )


def test_sum_reduction_loss_and_sequence_linear():
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    x, y = torch.randn(4, 6, 3, dtype=torch.float64), torch.randn(4, 6, 2, dtype=torch.float64)

    def loss_fn(out, t):
        return F.mse_loss(out, t, reduction="sum")

    assert_grads_close(
        per_example_grads(model, loss_fn, x, y), loop_grads(model, loss_fn, x, y), torch.float64
    )


def test_dropout_reproducible_and_per_example():
    model = nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.5), nn.Linear(16, 2))
    x, y = torch.randn(8, 6).repeat(2, 1), torch.randint(0, 2, (8,)).repeat(2)
    torch.manual_seed(3)
    a = per_example_grads(model, F.cross_entropy, x, y)
    torch.manual_seed(3)
    b = per_example_grads(model, F.cross_entropy, x, y)
    torch.testing.assert_close(a["0.weight"], b["0.weight"], rtol=0, atol=0)
    # duplicated examples draw different masks, so their gradients differ
    assert not torch.allclose(a["0.weight"][:8], a["0.weight"][8:])


def test_matches_opacus():
    opacus = pytest.importorskip("opacus")
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(12, 4), nn.LayerNorm(4)
    )
    x, y = torch.randn(6, 1, 5, 5), torch.randint(0, 4, (6,))
    reference = copy.deepcopy(model)
    gsm = opacus.GradSampleModule(reference, loss_reduction="sum")
    F.cross_entropy(gsm(x), y, reduction="sum").backward()
    got = per_example_grads(model, F.cross_entropy, x, y)
    for (name, _), p in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(got[name], p.grad_sample, rtol=1e-5, atol=1e-6)


def test_integer_tokens_fast_path_used(monkeypatch):
    monkeypatch.setattr(pe, "functorch_grads", _no_fallback)
    monkeypatch.setattr(norms_module, "functorch_grads", _no_fallback)
    model = TokenModel()
    got = per_example_grads(model, token_loss, torch.randint(0, 11, (2, 5)), torch.randint(0, 11, (2, 5)))
    assert got["emb.weight"].shape == (2, 11, 8)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"inputs": torch.randn(3, 6), "targets": torch.randint(0, 3, (4,))}, ValueError, "same batch size"),
        ({"inputs": [1.0], "targets": torch.randint(0, 3, (4,))}, TypeError, "inputs"),
        ({"chunk_size": 0}, ValueError, "chunk_size"),
        ({"chunk_size": 1.5}, TypeError, "chunk_size"),
        ({"model": "mlp"}, TypeError, "model"),
        ({"loss_fn": 3}, TypeError, "loss_fn"),
    ],
)
def test_bad_input_raises(kwargs, error, match):
    args = {
        "model": MLP(),
        "loss_fn": F.cross_entropy,
        "inputs": torch.randn(3, 6),
        "targets": torch.randint(0, 3, (3,)),
    }
    args.update(kwargs)
    chunk = args.pop("chunk_size", None)
    with pytest.raises(error, match=match):
        per_example_grads(args["model"], args["loss_fn"], args["inputs"], args["targets"], chunk_size=chunk)


def test_no_trainable_parameters_raises():
    model = MLP().requires_grad_(False)
    with pytest.raises(ValueError, match="requires_grad"):
        per_example_grads(model, F.cross_entropy, torch.randn(2, 6), torch.randint(0, 3, (2,)))
