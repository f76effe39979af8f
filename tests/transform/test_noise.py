"""Gaussian noise: std from a chi-square bound, zero mean, seeded, resumable, order-independent."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from gradinfo.transform import add_gaussian_noise

ALPHA = 1e-6  # false-alarm rate of each statistical bound


@settings(max_examples=10, deadline=None)
@given(std=st.floats(1e-3, 1e3), seed=st.integers(0, 2**40), count=st.integers(0, 1000))
def test_noise_std_and_mean(std: float, seed: int, count: int) -> None:
    g = {"a": torch.zeros(100, 50, dtype=torch.float64), "b": torch.zeros(10_000, dtype=torch.float64)}
    out, _ = add_gaussian_noise(std, seed).update(g, {"count": count}, None)
    x = torch.cat([t.reshape(-1) for t in out.values()])  # [n]
    n = x.numel()
    # sum(x^2) / std^2 ~ chi2(n) when x ~ N(0, std^2) i.i.d.
    q = float(x.square().sum()) / std**2
    assert stats.chi2.ppf(ALPHA / 2, n) <= q <= stats.chi2.ppf(1 - ALPHA / 2, n)
    z = stats.norm.ppf(1 - ALPHA / 2)
    assert abs(float(x.mean())) <= z * std / math.sqrt(n)


def test_noise_is_added_to_the_gradient() -> None:
    g = {"w": torch.arange(6.0).reshape(2, 3)}
    noisy, _ = add_gaussian_noise(0.5, 3).update(g, {"count": 0}, None)
    pure, _ = add_gaussian_noise(0.5, 3).update({"w": torch.zeros(2, 3)}, {"count": 0}, None)
    torch.testing.assert_close(noisy["w"], g["w"] + pure["w"], rtol=0, atol=1e-6)


def test_noise_seeded_resumable_and_dict_order_free() -> None:
    g = {"a": torch.zeros(4), "b": torch.zeros(2, 2)}
    t = add_gaussian_noise(1.0, seed=7)
    state = t.init(g)
    first, state1 = t.update(g, state, None)
    second, state2 = t.update(g, state1, None)
    assert state == {"count": 0} and state1 == {"count": 1} and state2 == {"count": 2}
    again, _ = add_gaussian_noise(1.0, seed=7).update(g, {"count": 1}, None)
    assert torch.equal(second["a"], again["a"]) and torch.equal(second["b"], again["b"])
    assert not torch.equal(first["a"], second["a"])
    other_seed, _ = add_gaussian_noise(1.0, seed=8).update(g, state, None)
    assert not torch.equal(first["a"], other_seed["a"])
    reordered, _ = t.update({"b": g["b"], "a": g["a"]}, state, None)
    assert list(reordered) == ["b", "a"]
    assert torch.equal(reordered["a"], first["a"]) and torch.equal(reordered["b"], first["b"])


def test_zero_std_is_identity_and_dtype_kept() -> None:
    g = {"w": torch.randn(3, dtype=torch.float16)}
    out, _ = add_gaussian_noise(0.0, 0).update(g, {"count": 0}, None)
    assert out["w"].dtype == torch.float16
    assert torch.equal(out["w"], g["w"])


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"std": -1.0}, ValueError, "std"),
        ({"std": float("inf")}, ValueError, "std"),
        ({"std": "1"}, TypeError, "std"),
        ({"std": 1.0, "seed": -1}, ValueError, "seed"),
        ({"std": 1.0, "seed": 1.5}, TypeError, "seed"),
    ],
)
def test_bad_arguments(kwargs, error, name) -> None:
    with pytest.raises(error, match=name):
        add_gaussian_noise(**kwargs)
