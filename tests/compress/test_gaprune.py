"""GAPrune against a float64 computation of the paper's DAI formula from single-example autograd loops."""

from __future__ import annotations

import copy
import math

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
    layer_counts,
    postprocess,
    prunable_weights,
    rescale_low_variance,
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


def _official_scores(model, domain, general, *, beta, c, postproc="none", temperature=1.0) -> dict:
    """The official pipeline in float64: Fisher (+1e-8), windowed alignment, DAI, flat rescue, postproc."""
    g_dom, f_dom = _loop_stats(model, domain, MLP)
    g_gen, f_gen = _loop_stats(model, general, MLP)
    params = dict(model.named_parameters())
    out = {}
    for n in MLP:
        w = params[n].detach()
        fd, fg = f_dom[n] + 1e-8, f_gen[n] + 1e-8
        unit = (g_gen[n] / (g_gen[n].norm() + 1e-8)) * (g_dom[n] / (g_dom[n].norm() + 1e-8))
        a = _window_mean(unit, 3)
        raw = (fd * w.abs() - beta * fg * w.abs()) * torch.clamp(1 + 0.2 * a, 0.8, 1.2)
        score = torch.log1p(torch.exp(raw + c * torch.sqrt(w.abs() + 1e-8)))
        if score.std(unbiased=True) < 1e-6:
            score = score * (0.5 + 0.5 * w.abs() / (w.abs().mean() + 1e-8))
        if postproc == "zscore_sigmoid":
            z = (score - score.mean()) / (score.std(unbiased=True) + 1e-8)
            score = 1 / (1 + torch.exp(-z / temperature))
        out[n] = {"fisher_domain": fd, "fisher_general": fg, "alignment": a, "scores": score}
    return out


@pytest.mark.parametrize(
    ("postproc", "temperature"), [("none", 1.0), ("zscore_sigmoid", 1.0), ("zscore_sigmoid", 0.5)]
)
def test_dai_scores_equal_a_direct_float64_computation_of_the_official_formula(
    postproc: str, temperature: float
) -> None:
    model = _model64()
    domain, general = _tiny_batches(0), _tiny_batches(1)
    _, report = gaprune(
        model,
        domain,
        general,
        0.5,
        beta=0.7,
        compression_weight=0.3,
        postproc=postproc,
        temperature=temperature,
    )
    expected = _official_scores(
        model, domain, general, beta=0.7, c=0.3, postproc=postproc, temperature=temperature
    )
    assert report.postproc == postproc
    for n in MLP:
        torch.testing.assert_close(report.fisher_domain[n], expected[n]["fisher_domain"], **TOL)
        torch.testing.assert_close(report.fisher_general[n], expected[n]["fisher_general"], **TOL)
        torch.testing.assert_close(report.alignment[n], expected[n]["alignment"], **TOL)
        torch.testing.assert_close(report.scores[n], expected[n]["scores"], **TOL)


def test_flat_dai_is_rescued_by_relative_magnitude_end_to_end() -> None:
    # domain == general and beta = 1: the Fisher terms cancel; c = 0 leaves DAI = softplus(0) everywhere
    model = _model64()
    data = _tiny_batches(0)
    pruned, report = gaprune(model, data, data, 0.5, compression_weight=0.0)
    expected = _official_scores(model, data, data, beta=1.0, c=0.0)
    params = dict(model.named_parameters())
    for n in MLP:
        w = params[n].detach().abs()
        torch.testing.assert_close(
            expected[n]["scores"], 0.6931471805599453 * (0.5 + 0.5 * w / (w.mean() + 1e-8)), **TOL
        )
        torch.testing.assert_close(report.scores[n], expected[n]["scores"], **TOL)
    flat = torch.cat([expected[n]["scores"].reshape(-1) for n in MLP])
    dropped = torch.cat([(dict(pruned.named_parameters())[n] == 0).reshape(-1) for n in MLP])
    assert torch.equal(dropped, flat <= flat.sort().values[int(0.5 * flat.numel()) - 1])


def _rank_loop(s: list[float]) -> list[float]:
    """Ascending rank 1..n / n, ties by position: a plain double loop."""
    n = len(s)
    return [(1 + sum(s[j] < s[i] or (s[j] == s[i] and j < i) for j in range(n))) / n for i in range(n)]


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([0.3, 1.0, 2.0]))
def test_postprocessing_matches_the_official_formulas(seed: int, temperature: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    s = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    s[0, 0] = s[2, 3]  # a tie
    vals = s.reshape(-1).tolist()
    mean = sum(vals) / len(vals)
    std = (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5
    lo, hi = min(vals), max(vals)
    expected = {
        "none": vals,
        "zscore_sigmoid": [1 / (1 + math.exp(-((v - mean) / (std + 1e-8)) / temperature)) for v in vals],
        "minmax": [(v - lo) / (hi - lo + 1e-8) for v in vals],
        "rank": _rank_loop(vals),
    }
    for how, ref in expected.items():
        got = postprocess(s, how, temperature=temperature)
        assert got.shape == s.shape
        torch.testing.assert_close(got.reshape(-1), torch.tensor(ref, dtype=torch.float64), **TOL)


def test_rescue_leaves_spread_scores_alone() -> None:
    w = torch.tensor([[0.1, -0.3], [0.2, 0.0]], dtype=torch.float64)
    spread = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    assert rescale_low_variance(spread, w) is spread
    flat = torch.full_like(w, 2.0) + torch.tensor([[0.0, 1e-7], [0.0, 0.0]], dtype=torch.float64)
    ref = flat * (0.5 + 0.5 * w.abs() / (0.15 + 1e-8))
    torch.testing.assert_close(rescale_low_variance(flat, w), ref, **TOL)


@pytest.mark.parametrize(
    ("sizes", "sparsity", "expected"),
    [
        ([10, 7, 7], 0.5, [6, 3, 3]),  # 12 = 5 + 3 + 3, the one left over to the largest block
        ([10, 7, 7], 0.99, [9, 6, 6]),  # 23 = 9 + 6 + 6 + 2 left over, then clamped to floor(0.95 n)
        ([100, 300], 0.01, [5, 15]),  # 4 = 1 + 3, clamped up to floor(0.05 n)
    ],
)
def test_layer_counts_follow_the_official_uniform_allocation(sizes, sparsity, expected) -> None:
    assert layer_counts(sizes, sparsity) == expected


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


@pytest.mark.parametrize(("sparsity", "per_block"), [(0.5, 128), (0.97, 243)])
def test_layer_budget_prunes_each_block_at_the_ratio_and_inplace_edits_the_model(
    sparsity: float, per_block: int
) -> None:
    # each block: 2 MLP matrices of 16 x 8 = 256 weights; 0.97 asks 248 each, clamped to floor(0.95 * 256)
    model = _tiny_encoder(0)
    pruned, report = gaprune(
        model, _tiny_batches(0), _tiny_batches(1), sparsity, budget="layer", inplace=True
    )
    assert pruned is model and report.budget == "layer"
    for i in (0, 1):
        block = [n for n in MLP if f"layer.{i}." in n]
        zeros = sum(int((model.get_parameter(n) == 0).sum()) for n in block)
        assert zeros == per_block
        kept = torch.cat([report.scores[n][model.get_parameter(n) != 0] for n in block])
        gone = torch.cat([report.scores[n][model.get_parameter(n) == 0] for n in block])
        assert gone.max() <= kept.min()


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
        ({"postproc": "softmax"}, ValueError),
        ({"temperature": 0.0}, ValueError),
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
