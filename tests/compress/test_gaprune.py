"""GAPrune against a float64 computation of the paper's DAI formula from single-example autograd loops."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from gradinfo.compress.gaprune import (
    SentenceEncoder,
    _tiny_batches,
    _tiny_encoder,
    contrastive_batches,
    dai,
    gaprune,
    gradient_alignment,
    info_nce,
    prunable_weights,
)
from gradinfo.models import tiny_llama

TOL = {"rtol": 1e-9, "atol": 1e-12}
MLP = [
    f"encoder.encoder.layer.{i}.{m}.weight" for i in (0, 1) for m in ("intermediate.dense", "output.dense")
]


def _model64() -> SentenceEncoder:
    return _tiny_encoder(0).double()


def _loop_stats(model: nn.Module, batches, names: list[str]) -> tuple[dict, dict]:
    """Mean gradient and mean squared gradient of each example's own loss, one backward per example."""
    params = dict(model.named_parameters())
    first = {n: torch.zeros_like(params[n]) for n in names}
    second = {n: torch.zeros_like(params[n]) for n in names}
    count = 0
    for x, y in batches:
        for i in range(len(x)):
            grads = torch.autograd.grad(
                info_nce(model(x[i : i + 1]), y[i : i + 1]), [params[n] for n in names]
            )
            for n, g in zip(names, grads, strict=True):
                first[n] += g
                second[n] += g.square()
            count += 1
    return {n: v / count for n, v in first.items()}, {n: v / count for n, v in second.items()}


def _window_mean(a: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over the k x k neighbourhood of each element, zeros outside (a plain double loop)."""
    out = torch.zeros_like(a)
    rows, cols, r = a.shape[0], a.shape[1], k // 2
    for i in range(rows):
        for j in range(cols):
            total = 0.0
            for di in range(-r, r + 1):
                for dj in range(-r, r + 1):
                    if 0 <= i + di < rows and 0 <= j + dj < cols:
                        total += float(a[i + di, j + dj])
            out[i, j] = total / (k * k)
    return out


def test_dai_scores_equal_a_direct_float64_computation_of_the_formula() -> None:
    model = _model64()
    domain, general = _tiny_batches(0), _tiny_batches(1)
    _, report = gaprune(model, domain, general, 0.5, beta=0.7, compression_weight=0.3)
    g_dom, f_dom = _loop_stats(model, domain, MLP)
    g_gen, f_gen = _loop_stats(model, general, MLP)
    params = dict(model.named_parameters())
    for n in MLP:
        w = params[n].detach()
        unit = (g_gen[n] / (g_gen[n].norm() + 1e-8)) * (g_dom[n] / (g_dom[n].norm() + 1e-8))
        a = _window_mean(unit, 3)
        raw = (f_dom[n] * w.abs() - 0.7 * f_gen[n] * w.abs()) * torch.clamp(1 + 0.2 * a, 0.8, 1.2)
        score = torch.log1p(torch.exp(raw + 0.3 * torch.sqrt(w.abs() + 1e-8)))
        z = (score - score.mean()) / (score.std(unbiased=True) + 1e-8)
        torch.testing.assert_close(report.fisher_domain[n], f_dom[n], **TOL)
        torch.testing.assert_close(report.fisher_general[n], f_gen[n], **TOL)
        torch.testing.assert_close(report.alignment[n], a, **TOL)
        torch.testing.assert_close(report.scores[n], 1 / (1 + torch.exp(-z)), **TOL)


def test_global_budget_zeroes_the_lowest_scores_of_the_mlp_weights_only() -> None:
    model = _tiny_encoder(0)
    before = copy.deepcopy(model.state_dict())
    pruned, report = gaprune(model, _tiny_batches(0), _tiny_batches(1), 0.3)
    total = sum(model.get_parameter(n).numel() for n in MLP)
    assert report.total == total and report.pruned == int(0.3 * total)
    after = dict(pruned.named_parameters())
    dropped = torch.cat([(after[n] == 0).reshape(-1) for n in MLP])
    scores = torch.cat([report.scores[n].reshape(-1) for n in MLP])
    assert int(dropped.sum()) == report.pruned  # random init: no weight was 0 before
    assert scores[dropped].max() <= scores[~dropped].min()
    for n, p in pruned.state_dict().items():
        if n in MLP:
            kept = after[n] != 0
            torch.testing.assert_close(p[kept], before[n][kept], rtol=0, atol=0)
            assert report.per_param[n] == pytest.approx(float((p == 0).float().mean()))
        else:
            torch.testing.assert_close(p, before[n], rtol=0, atol=0)
    for n, p in model.state_dict().items():  # inplace=False leaves the input alone
        torch.testing.assert_close(p, before[n], rtol=0, atol=0)


def test_layer_budget_prunes_each_block_at_the_ratio_and_inplace_edits_the_model() -> None:
    model = _tiny_encoder(0)
    pruned, report = gaprune(model, _tiny_batches(0), _tiny_batches(1), 0.5, budget="layer", inplace=True)
    assert pruned is model and report.budget == "layer"
    for i in (0, 1):
        block = [n for n in MLP if f"layer.{i}." in n]
        zeros = sum(int((model.get_parameter(n) == 0).sum()) for n in block)
        assert zeros == int(0.5 * sum(model.get_parameter(n).numel() for n in block))


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("mlp", MLP),
        (
            "attention",
            [
                f"encoder.encoder.layer.{i}.attention.{m}.weight"
                for i in (0, 1)
                for m in ("self.query", "self.key", "self.value", "output.dense")
            ],
        ),
    ],
)
def test_scope_selects_the_bert_linear_weights(scope: str, expected: list[str]) -> None:
    assert prunable_weights(_tiny_encoder(0), scope) == expected
    assert len(prunable_weights(_tiny_encoder(0), "linear")) == 12


def test_scope_finds_llama_projections() -> None:
    names = prunable_weights(tiny_llama(), "mlp")
    assert names[:3] == [f"model.layers.0.mlp.{p}_proj.weight" for p in ("gate", "up", "down")]
    assert all("self_attn" in n for n in prunable_weights(tiny_llama(), "attention"))


def test_info_nce_with_carried_negatives_equals_in_batch_info_nce() -> None:
    gen = torch.Generator().manual_seed(3)
    q = F.normalize(torch.randn(4, 6, generator=gen, dtype=torch.float64), dim=-1)  # [4, 6]
    p = F.normalize(torch.randn(4, 6, generator=gen, dtype=torch.float64), dim=-1)  # [4, 6]
    rows = torch.stack([torch.stack([q[i], p[i], *[p[j] for j in range(4) if j != i]]) for i in range(4)])
    in_batch = F.cross_entropy(20.0 * q @ p.T, torch.arange(4))
    torch.testing.assert_close(info_nce(rows, torch.zeros(4, dtype=torch.long)), in_batch, **TOL)


class _Tokenizer:
    """Word ids by first appearance, padded with 0 (enough to check the layout of the batches)."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}

    def __call__(self, texts, **_: object) -> dict[str, torch.Tensor]:
        ids = [[self.vocab.setdefault(w, len(self.vocab) + 1) for w in t.split()] for t in texts]
        width = max(map(len, ids))
        return {"input_ids": torch.tensor([row + [0] * (width - len(row)) for row in ids])}


def test_contrastive_batches_carry_the_other_passages_of_the_group() -> None:
    tok = _Tokenizer()
    pairs = [(f"q{i}", f"p{i}") for i in range(7)]
    batches = contrastive_batches(tok, pairs, group=3, batch_size=4)
    ids = torch.cat([x for x, _ in batches])  # [6, 4, 1]
    assert [len(x) for x, _ in batches] == [4, 2] and ids.shape == (6, 4, 1)
    word = {v: k for k, v in tok.vocab.items()}
    assert [word[int(t)] for t in ids[4, :, 0]] == ["q4", "p4", "p3", "p5"]
    assert all(int(y.abs().sum()) == 0 for _, y in batches)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([1, 3, 5]))
def test_alignment_lies_in_unit_interval_and_window_one_is_the_plain_product(seed: int, window: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    g1, g2 = torch.randn(6, 5, generator=gen, dtype=torch.float64), torch.randn(6, 5, generator=gen).double()
    a = gradient_alignment(g1, g2, window=window)
    assert a.abs().max() <= 1 and a.sum().abs() <= 1 + 1e-12
    if window == 1:
        torch.testing.assert_close(a, (g1 / g1.norm()) * (g2 / g2.norm()), rtol=1e-6, atol=1e-12)


def test_dai_is_softplus_of_the_magnitude_prior_when_fisher_is_zero() -> None:
    w = torch.tensor([-0.04, 0.0, 0.25], dtype=torch.float64)
    zero = torch.zeros_like(w)
    torch.testing.assert_close(dai(w, zero, zero, zero), F.softplus(0.5 * (w.abs() + 1e-8).sqrt()), **TOL)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"sparsity": 0.0}, ValueError),
        ({"sparsity": 1.0}, ValueError),
        ({"scope": "embeddings"}, ValueError),
        ({"budget": "tensor"}, ValueError),
        ({"beta": -1.0}, ValueError),
        ({"window": 4}, ValueError),
        ({"params": "encoder.encoder.layer.0.output.dense.weight"}, TypeError),
        ({"params": ["missing.weight"]}, ValueError),
        ({"loss_fn": None}, TypeError),
        ({"inplace": 1}, TypeError),
    ],
)
def test_bad_arguments_raise_before_any_gradient(kwargs: dict, error: type) -> None:
    args = {"sparsity": 0.5} | kwargs
    with pytest.raises(error):
        gaprune(_tiny_encoder(0), _tiny_batches(0), _tiny_batches(1), **args)


def test_bad_data_raise() -> None:
    with pytest.raises(TypeError, match="domain"):
        gaprune(_tiny_encoder(0), iter(_tiny_batches(0)), _tiny_batches(1), 0.5)
    with pytest.raises(ValueError, match="general"):
        gaprune(_tiny_encoder(0), _tiny_batches(0), [], 0.5)
    with pytest.raises(ValueError, match="no trainable mlp"):
        prunable_weights(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="ids must be"):
        _tiny_encoder(0)(torch.ones(2, 3, dtype=torch.long))
