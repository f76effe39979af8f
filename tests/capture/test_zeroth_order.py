"""zeroth_order_grad on quadratics, where the estimators' means are known in closed form."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradinfo.capture.zeroth_order import zeroth_order_grad


def _quadratic(dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    m = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    a = (m + m.T) / 2  # [d, d] symmetric, indefinite
    b = torch.randn(dim, generator=gen, dtype=torch.float64)
    x = torch.randn(dim, generator=gen, dtype=torch.float64)
    return a, b, x


def _f(a: torch.Tensor, b: torch.Tensor):
    return lambda z: 0.5 * z @ a @ z + b @ z


@settings(max_examples=12, deadline=None)
@given(dim=st.integers(1, 4), seed=st.integers(0, 10_000), mu=st.floats(0.01, 2.0))
def test_gaussian_unbiased_for_quadratics(dim: int, seed: int, mu: float) -> None:
    a, b, x = _quadratic(dim, seed)
    runs = 600
    draws = torch.stack(
        [zeroth_order_grad(_f(a, b), x, queries=1, mu=mu, seed=seed * runs + s) for s in range(runs)]
    )  # [N, d]
    bias = draws.mean(0) - (a @ x + b)
    tolerance = 5 * draws.std(0) / runs**0.5 + 1e-12  # 5 standard errors per coordinate
    assert torch.all(bias.abs() <= tolerance), (bias, tolerance)


def test_gaussian_queries_average_directions() -> None:
    a, b, x = _quadratic(3, 0)
    many = zeroth_order_grad(_f(a, b), x, queries=20_000, mu=0.1, seed=1)
    few = zeroth_order_grad(_f(a, b), x, queries=10, mu=0.1, seed=1)
    grad = a @ x + b
    # the error shrinks like 1/sqrt(q); one draw's per-coordinate std is about sqrt(||g||^2 + g_i^2)
    assert (many - grad).norm() < 0.15 * grad.norm()
    assert (many - grad).norm() < (few - grad).norm()


@settings(max_examples=15, deadline=None)
@given(dim=st.integers(1, 6), seed=st.integers(0, 10_000), mu=st.floats(1e-3, 3.0))
def test_coordinate_exact_for_quadratics(dim: int, seed: int, mu: float) -> None:
    a, b, x = _quadratic(dim, seed)
    got = zeroth_order_grad(_f(a, b), x, queries=dim + seed % 3, mu=mu, kind="coordinate")
    torch.testing.assert_close(got, a @ x + b, rtol=1e-10, atol=1e-10)


@settings(max_examples=10, deadline=None)
@given(dim=st.integers(2, 6), seed=st.integers(0, 10_000), data=st.data())
def test_coordinate_subset_scaled_and_unbiased(dim: int, seed: int, data: st.DataObject) -> None:
    queries = data.draw(st.integers(1, dim - 1))
    a, b, x = _quadratic(dim, seed)
    grad = a @ x + b
    runs = 400
    draws = torch.stack(
        [
            zeroth_order_grad(_f(a, b), x, queries=queries, mu=0.5, kind="coordinate", seed=s)
            for s in range(runs)
        ]
    )  # [N, d]
    for draw in draws:  # each draw: d/q times the exact gradient on q coordinates, zero elsewhere
        chosen = draw != 0
        assert chosen.sum() == queries  # the gradient has no exact zeros
        torch.testing.assert_close(draw[chosen], dim / queries * grad[chosen], rtol=1e-10, atol=1e-10)
    tolerance = 5 * draws.std(0) / runs**0.5 + 1e-12
    assert torch.all((draws.mean(0) - grad).abs() <= tolerance)


def test_seeded_local_generator_and_shapes() -> None:
    a, b, _ = _quadratic(6, 3)
    x = torch.randn(2, 3, dtype=torch.float64)

    def f(z: torch.Tensor) -> torch.Tensor:
        return _f(a, b)(z.flatten())

    state = torch.get_rng_state()
    one = zeroth_order_grad(f, x, queries=5, mu=0.1, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert one.shape == x.shape and one.dtype == x.dtype
    assert torch.equal(one, zeroth_order_grad(f, x, queries=5, mu=0.1, seed=7))
    assert not torch.equal(one, zeroth_order_grad(f, x, queries=5, mu=0.1, seed=8))
    sub = zeroth_order_grad(f, x, queries=2, mu=0.1, kind="coordinate", seed=7)
    assert torch.equal(sub, zeroth_order_grad(f, x, queries=2, mu=0.1, kind="coordinate", seed=7))
    as_float = zeroth_order_grad(lambda z: float(f(z)), x, queries=5, mu=0.1, seed=7)
    torch.testing.assert_close(as_float, one, rtol=1e-12, atol=1e-12)


def test_bad_input() -> None:
    x = torch.zeros(3)
    with pytest.raises(TypeError, match="callable"):
        zeroth_order_grad(1.0, x, queries=1, mu=0.1)
    with pytest.raises(TypeError, match="floating"):
        zeroth_order_grad(torch.sum, torch.zeros(3, dtype=torch.long), queries=1, mu=0.1)
    with pytest.raises(ValueError, match="queries"):
        zeroth_order_grad(torch.sum, x, queries=0, mu=0.1)
    with pytest.raises(ValueError, match="mu"):
        zeroth_order_grad(torch.sum, x, queries=1, mu=0.0)
    with pytest.raises(ValueError, match="kind"):
        zeroth_order_grad(torch.sum, x, queries=1, mu=0.1, kind="spsa")
    with pytest.raises(TypeError, match="seed"):
        zeroth_order_grad(torch.sum, x, queries=1, mu=0.1, seed=1.5)
    with pytest.raises(ValueError, match="scalar"):
        zeroth_order_grad(lambda z: z, x, queries=1, mu=0.1)
    with pytest.raises(ValueError, match="at least one"):
        zeroth_order_grad(torch.sum, torch.zeros(0), queries=1, mu=0.1)
