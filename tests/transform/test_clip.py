"""Clipping: joint norms <= C, unchanged below C, and per-example clipping vs a float64 loop."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradinfo.transform import clip_by_global_norm, clip_per_example, global_norm

shapes = st.lists(st.lists(st.integers(1, 4), max_size=3).map(tuple), min_size=1, max_size=4)


def random_grads(shape_list, seed: int, batch: tuple[int, ...] = (), scale: float = 1.0):
    gen = torch.Generator().manual_seed(seed)
    return {
        f"p{i}": scale * torch.randn((*batch, *shape), generator=gen, dtype=torch.float64)
        for i, shape in enumerate(shape_list)
    }


def flat_norm(grads) -> float:
    return math.sqrt(sum(float(t.double().square().sum()) for t in grads.values()))


@settings(max_examples=30, deadline=None)
@given(
    shape_list=shapes, seed=st.integers(0, 10_000), scale=st.floats(1e-3, 1e3), max_norm=st.floats(0.01, 10)
)
def test_global_clip_bounds_norm_and_keeps_direction(shape_list, seed, scale, max_norm) -> None:
    g = random_grads(shape_list, seed, scale=scale)
    out, _ = clip_by_global_norm(max_norm).update(g, (), None)
    norm = flat_norm(g)
    assert flat_norm(out) <= max_norm * (1 + 1e-12)
    factor = min(1.0, max_norm / norm)  # reference: g * min(1, C / ||g||)
    for name in g:
        if norm <= max_norm:
            assert torch.equal(out[name], g[name])
        torch.testing.assert_close(out[name], g[name] * factor, rtol=1e-12, atol=0)


def test_global_clip_float32_bound_and_global_norm() -> None:
    g = {"a": torch.full((10,), 3.0), "b": torch.full((2, 2), 4.0)}
    torch.testing.assert_close(global_norm(g), torch.tensor(math.sqrt(90 + 64)), rtol=1e-6, atol=0)
    out, _ = clip_by_global_norm(1.0).update(g, (), None)
    assert float(global_norm(out)) <= 1.0 + 1e-6


def reference_clip_sum(g, max_norm: float):
    """float64 loop over examples: clip each example's full gradient, then sum."""
    batch = next(iter(g.values())).shape[0]
    out = {name: torch.zeros_like(t[0]) for name, t in g.items()}
    for i in range(batch):
        norm = math.sqrt(sum(float(t[i].square().sum()) for t in g.values()))
        factor = min(1.0, max_norm / norm) if norm > 0 else 1.0
        for name, t in g.items():
            out[name] += factor * t[i]
    return out


@settings(max_examples=30, deadline=None)
@given(
    shape_list=shapes,
    batch=st.integers(1, 6),
    seed=st.integers(0, 10_000),
    scale=st.floats(1e-2, 1e2),
    max_norm=st.floats(0.1, 10),
)
def test_per_example_clip_matches_loop(shape_list, batch, seed, scale, max_norm) -> None:
    g = random_grads(shape_list, seed, batch=(batch,), scale=scale)
    out, _ = clip_per_example(max_norm).update(g, (), None)
    ref = reference_clip_sum(g, max_norm)
    assert out.keys() == g.keys()
    for name in g:
        assert out[name].shape == g[name].shape[1:]
        torch.testing.assert_close(out[name], ref[name], rtol=1e-12, atol=1e-12)
    # each clipped example has norm <= C, so their sum has norm <= B * C
    assert flat_norm(out) <= batch * max_norm * (1 + 1e-12)
    single, _ = clip_per_example(max_norm).update({n: t[:1] for n, t in g.items()}, (), None)
    assert flat_norm(single) <= max_norm * (1 + 1e-12)


@settings(max_examples=15, deadline=None)
@given(shape_list=shapes, batch=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_per_example_clip_below_bound_is_plain_sum(shape_list, batch, seed) -> None:
    g = random_grads(shape_list, seed, batch=(batch,))
    largest = max(flat_norm({n: t[i] for n, t in g.items()}) for i in range(batch))
    out, _ = clip_per_example(largest * 1.01).update(g, (), None)
    for name in g:
        assert torch.equal(out[name], g[name].sum(0))


def test_per_example_clip_zero_gradient_stays_zero() -> None:
    out, _ = clip_per_example(1.0).update({"w": torch.zeros(3, 2)}, (), None)
    assert torch.equal(out["w"], torch.zeros(2))


@pytest.mark.parametrize("factory", [clip_by_global_norm, clip_per_example])
@pytest.mark.parametrize(
    ("value", "error"), [(0, ValueError), (-1.0, ValueError), (float("nan"), ValueError), ("1", TypeError)]
)
def test_bad_max_norm(factory, value, error) -> None:
    with pytest.raises(error, match="max_norm"):
        factory(value)


def test_per_example_clip_rejects_inconsistent_batch() -> None:
    with pytest.raises(ValueError, match="one batch size"):
        clip_per_example(1.0).update({"a": torch.ones(3, 2), "b": torch.ones(4)}, (), None)
    with pytest.raises(ValueError, match="leading batch axis"):
        clip_per_example(1.0).update({"a": torch.ones(3, 2), "b": torch.tensor(1.0)}, (), None)
