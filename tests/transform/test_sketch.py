"""Sketch / desketch: R g and R^T s against the dense matrix, E[R^T R g] = g, rounds shared explicitly."""

import importlib
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from gradinfo.transform import chain, desketch, sketch, sketch_matrix

sketch_module = importlib.import_module("gradinfo.transform.sketch")  # the package exports sketch()
KINDS = ["gaussian", "rademacher", "countsketch"]
Z = stats.norm.ppf(1 - 1e-6 / 2)


def random_grads(seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(3, 2, generator=gen, dtype=torch.float64),
        "b": torch.randn(4, generator=gen, dtype=torch.float64),
        "a": torch.randn(1, 1, 2, generator=gen, dtype=torch.float64),
    }


def flatten_sorted(g) -> torch.Tensor:
    return torch.cat([g[n].reshape(-1) for n in sorted(g)])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("block", [1 << 22, 3])  # one block, and many blocks of R's columns
def test_sketch_and_desketch_match_dense_matrix(kind: str, block: int, monkeypatch) -> None:
    monkeypatch.setattr(sketch_module, "_BLOCK_ELEMENTS", block)
    g, dim = random_grads(0), 5
    t_s, t_d = sketch(dim, 11, kind, fresh=True), desketch(dim, 11, kind, fresh=True)
    s_state, d_state = t_s.init(g), t_d.init(g)
    for round_ in range(3):
        R = sketch_matrix(12, dim, 11, kind, round=round_, dtype=torch.float64)  # [dim, P]
        s, s_state = t_s.update(g, s_state, None)
        torch.testing.assert_close(s["sketch"], R @ flatten_sorted(g), rtol=1e-12, atol=1e-12)
        back, d_state = t_d.update(s, d_state, None)
        assert list(back) == list(g)
        assert all(back[n].shape == g[n].shape for n in g)
        torch.testing.assert_close(flatten_sorted(back), R.T @ s["sketch"], rtol=1e-12, atol=1e-12)
        assert s_state["round"] == d_state["round"] == round_ + 1


def test_matrix_entries_by_kind() -> None:
    dim = 4
    gauss = sketch_matrix(5000, dim, 0, "gaussian", dtype=torch.float64)
    q = float(gauss.square().sum()) * dim  # chi2(n) for N(0, 1/dim) entries
    n = gauss.numel()
    assert stats.chi2.ppf(1e-6, n) <= q <= stats.chi2.ppf(1 - 1e-6, n)
    rad = sketch_matrix(100, dim, 0, "rademacher", dtype=torch.float64)
    assert torch.equal(rad.abs(), torch.full_like(rad, 1 / math.sqrt(dim)))
    count = sketch_matrix(100, dim, 0, "countsketch", dtype=torch.float64)
    assert torch.equal((count != 0).sum(0), torch.ones(100, dtype=torch.long))  # one +-1 per column
    assert torch.equal(count.abs().sum(0), torch.ones(100, dtype=torch.float64))


@pytest.mark.parametrize("kind", KINDS)
def test_expected_gram_is_identity(kind: str) -> None:
    dim, coords, rounds = 3, 6, 3000
    gram = sum(
        (
            R.T @ R
            for R in (
                sketch_matrix(coords, dim, 2, kind, round=r, dtype=torch.float64) for r in range(rounds)
            )
        ),
        torch.zeros(coords, coords, dtype=torch.float64),
    )
    # each entry of R^T R has variance <= 2 / dim (Gaussian diagonal: 2/dim; others: <= 1/dim)
    tol = Z * math.sqrt(2 / dim / rounds)
    torch.testing.assert_close(gram / rounds, torch.eye(coords, dtype=torch.float64), rtol=0, atol=tol)


@settings(max_examples=6, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    dim=st.integers(1, 8),
    seed=st.integers(0, 2**31),
    data_seed=st.integers(0, 99),
)
def test_desketch_of_sketch_is_unbiased_over_fresh_rounds(
    kind: str, dim: int, seed: int, data_seed: int
) -> None:
    g = random_grads(data_seed)
    t = chain(sketch(dim, seed, kind, fresh=True), desketch(dim, seed, kind, fresh=True))
    rounds = 1500
    state = t.init(g)
    total = {n: torch.zeros_like(v) for n, v in g.items()}
    for _ in range(rounds):
        out, state = t.update(g, state, None)
        for n in g:
            total[n] += out[n]
    # Var[(R^T R g)_j] <= (||g||^2 + g_j^2) / dim for all three kinds
    sq = float(flatten_sorted(g).square().sum())
    for n, v in g.items():
        tol = Z * torch.sqrt((sq + v.square()) / dim / rounds)
        assert bool(((total[n] / rounds - v).abs() <= tol).all())


def test_unbiased_over_seeds_without_fresh() -> None:
    g, dim, seeds = random_grads(3), 4, 1500
    total = {n: torch.zeros_like(v) for n, v in g.items()}
    for seed in range(seeds):
        t = chain(sketch(dim, seed, "rademacher"), desketch(dim, seed, "rademacher"))
        out, _ = t.update(g, t.init(g), None)
        for n in g:
            total[n] += out[n]
    sq = float(flatten_sorted(g).square().sum())
    for n, v in g.items():
        assert bool(((total[n] / seeds - v).abs() <= Z * torch.sqrt((sq + v.square()) / dim / seeds)).all())


def test_fresh_changes_matrix_each_round_and_fixed_does_not() -> None:
    g = random_grads(1)
    for fresh in (True, False):
        t = sketch(4, 0, "gaussian", fresh=fresh)
        s0, state = t.update(g, t.init(g), None)
        s1, state = t.update(g, state, None)
        assert state["round"] == 2
        assert torch.equal(s0["sketch"], s1["sketch"]) is (not fresh)


def test_desketch_round_is_explicit_in_state() -> None:
    """A server that joins at round 5 sets desketch's round to 5 and decodes the client's round-5 sketch."""
    g, kind = random_grads(2), "countsketch"
    t_s = sketch(6, 9, kind, fresh=True)
    state = t_s.init(g)
    for _ in range(5):
        _, state = t_s.update(g, state, None)
    s5, _ = t_s.update(g, state, None)
    t_d = desketch(6, 9, kind, fresh=True)
    back, d_state = t_d.update(s5, {**t_d.init(g), "round": 5}, None)
    R5 = sketch_matrix(12, 6, 9, kind, round=5, dtype=torch.float64)
    torch.testing.assert_close(flatten_sorted(back), R5.T @ R5 @ flatten_sorted(g), rtol=1e-12, atol=1e-12)
    assert d_state["round"] == 6


def test_sketch_float32_and_full_dimension_countsketch_is_exact_permutation_with_signs() -> None:
    g = {k: v.float() for k, v in random_grads(4).items()}
    t = chain(sketch(12, 0, "countsketch"), desketch(12, 0, "countsketch"))
    out, _ = t.update(g, t.init(g), None)
    R = sketch_matrix(12, 12, 0, "countsketch", dtype=torch.float32)
    expected = R.T @ R @ flatten_sorted(g)
    torch.testing.assert_close(flatten_sorted(out), expected, rtol=1e-6, atol=1e-6)
    assert out["w"].dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"dim": 0}, ValueError, "dim"),
        ({"dim": 2.0}, TypeError, "dim"),
        ({"dim": 2, "kind": "srht"}, ValueError, "kind"),
        ({"dim": 2, "seed": -1}, ValueError, "seed"),
        ({"dim": 2, "fresh": 1}, TypeError, "fresh"),
    ],
)
@pytest.mark.parametrize("factory", [sketch, desketch])
def test_bad_arguments(factory, kwargs, error, name) -> None:
    with pytest.raises(error, match=name):
        factory(**kwargs)


def test_mismatched_keys_and_shapes_raise() -> None:
    g = random_grads(0)
    t = sketch(3)
    state = t.init(g)
    with pytest.raises(ValueError, match=r"missing \['w'\]"):
        t.update({"a": g["a"], "b": g["b"]}, state, None)
    with pytest.raises(ValueError, match="shapes differ"):
        t.update({**g, "w": torch.zeros(2, 3)}, state, None)
    d = desketch(3)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        d.update({"sketch": torch.zeros(4)}, d.init(g), None)
    with pytest.raises(ValueError, match="unexpected"):
        d.update(g, d.init(g), None)
