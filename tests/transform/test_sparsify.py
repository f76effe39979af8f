"""Global top-k: exact count, largest magnitudes kept; error feedback conserves gradient mass."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradinfo.transform import topk_sparsify
from gradinfo.transform.sparsify import topk_count

shapes = st.lists(st.lists(st.integers(1, 5), max_size=3).map(tuple), min_size=1, max_size=4)


def random_grads(shape_list, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        f"p{i}": torch.randn(shape, generator=gen, dtype=torch.float64) for i, shape in enumerate(shape_list)
    }


def flat(g) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in g.values()])


@settings(max_examples=30, deadline=None)
@given(shape_list=shapes, seed=st.integers(0, 10_000), fraction=st.floats(0.01, 1.0))
def test_keeps_exactly_k_largest_over_all_tensors(shape_list, seed, fraction) -> None:
    g = random_grads(shape_list, seed)
    out, _ = topk_sparsify(fraction).update(g, (), None)
    x, y = flat(g), flat(out)
    k = math.ceil(round(fraction * x.numel(), 9))
    kept = y != 0
    assert int(kept.sum()) == k  # randn draws are nonzero and distinct almost surely
    assert torch.equal(y[kept], x[kept])  # kept coordinates are untouched
    if k < x.numel():
        assert float(x[kept].abs().min()) >= float(x[~kept].abs().max())
    for name in g:
        assert out[name].shape == g[name].shape


@settings(max_examples=20, deadline=None)
@given(shape_list=shapes, seed=st.integers(0, 10_000), fraction=st.floats(0.01, 0.9), steps=st.integers(1, 8))
def test_error_feedback_conserves_mass(shape_list, seed, fraction, steps) -> None:
    t = topk_sparsify(fraction, error_feedback=True)
    params = random_grads(shape_list, 0)
    state = t.init(params)
    total_in = {n: torch.zeros_like(v) for n, v in params.items()}
    total_sent = {n: torch.zeros_like(v) for n, v in params.items()}
    for step in range(steps):
        g = random_grads(shape_list, seed + step)
        sent, state = t.update(g, state, None)
        k = math.ceil(round(fraction * flat(g).numel(), 9))
        assert int((flat(sent) != 0).sum()) == k
        for n in g:
            total_in[n] += g[n]
            total_sent[n] += sent[n]
    for n in params:
        torch.testing.assert_close(total_sent[n] + state["residual"][n], total_in[n], rtol=0, atol=1e-12)


def test_error_feedback_first_step_is_plain_topk_and_residual_is_the_rest() -> None:
    g = {"a": torch.tensor([3.0, -1.0, 0.5]), "b": torch.tensor([[-4.0, 0.1]])}
    plain, _ = topk_sparsify(0.4).update(g, (), None)
    t = topk_sparsify(0.4, error_feedback=True)
    sent, state = t.update(g, t.init(g), None)
    assert torch.equal(plain["a"], torch.tensor([3.0, 0.0, 0.0]))
    assert torch.equal(plain["b"], torch.tensor([[-4.0, 0.0]]))
    for n in g:
        assert torch.equal(sent[n], plain[n])
    assert torch.equal(state["residual"]["a"], torch.tensor([0.0, -1.0, 0.5]))
    # next step with zero gradient sends the largest remembered coordinates
    sent2, _ = t.update({"a": torch.zeros(3), "b": torch.zeros(1, 2)}, state, None)
    assert torch.equal(sent2["a"], torch.tensor([0.0, -1.0, 0.5]))


@pytest.mark.parametrize(
    ("coords", "fraction", "k"), [(10, 0.3, 3), (10, 0.1, 1), (10, 0.25, 3), (7, 1e-9, 1)]
)
def test_topk_count_is_ceil_without_float_error(coords: int, fraction: float, k: int) -> None:
    assert topk_count(coords, fraction) == k


def test_fraction_one_keeps_everything() -> None:
    g = {"w": torch.randn(4, 3)}
    out, _ = topk_sparsify(1.0).update(g, (), None)
    assert torch.equal(out["w"], g["w"])


def test_error_feedback_rejects_mismatched_keys() -> None:
    t = topk_sparsify(0.5, error_feedback=True)
    state = t.init({"a": torch.zeros(2), "b": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"topk_sparsify.*missing \['b'\]"):
        t.update({"a": torch.ones(2)}, state, None)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"fraction": 0.0}, ValueError, "fraction"),
        ({"fraction": 1.5}, ValueError, "fraction"),
        ({"fraction": "0.1"}, TypeError, "fraction"),
        ({"fraction": 0.1, "error_feedback": 1}, TypeError, "error_feedback"),
    ],
)
def test_bad_arguments(kwargs, error, name) -> None:
    with pytest.raises(error, match=name):
        topk_sparsify(**kwargs)
