"""QSGD-style stochastic quantisation: unbiased, at most 2^bits - 1 values per tensor, on the grid."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from gradinfo.transform import stochastic_quantize


def random_grads(seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(4, 5, generator=gen, dtype=torch.float64),
        "b": torch.randn(7, generator=gen, dtype=torch.float64) * 10,
    }


@settings(max_examples=8, deadline=None)
@given(bits=st.integers(2, 5), seed=st.integers(0, 2**31), data_seed=st.integers(0, 1000))
def test_quantiser_is_unbiased(bits: int, seed: int, data_seed: int) -> None:
    g = random_grads(data_seed)
    t = stochastic_quantize(bits, seed)
    draws = 2000
    state = t.init(g)
    total = {n: torch.zeros_like(v) for n, v in g.items()}
    for _ in range(draws):
        q, state = t.update(g, state, None)
        for n in g:
            total[n] += q[n]
    s = 2 ** (bits - 1) - 1
    z = stats.norm.ppf(1 - 1e-6 / 2)
    for n, v in g.items():
        m = float(v.abs().max())
        # each draw is within one level M/s of v, so its std is <= M / (2 s)
        tol = z * m / (2 * s) / math.sqrt(draws)
        torch.testing.assert_close(total[n] / draws, v, rtol=0, atol=tol)


@settings(max_examples=20, deadline=None)
@given(bits=st.integers(2, 8), seed=st.integers(0, 2**31), data_seed=st.integers(0, 1000))
def test_output_takes_few_values_on_the_grid(bits: int, seed: int, data_seed: int) -> None:
    g = random_grads(data_seed)
    g["big"] = torch.randn(2000, dtype=torch.float64, generator=torch.Generator().manual_seed(data_seed))
    q, _ = stochastic_quantize(bits, seed).update(g, {"count": 0}, None)
    s = 2 ** (bits - 1) - 1
    for n, v in g.items():
        assert q[n].shape == v.shape and q[n].dtype == v.dtype
        assert q[n].unique().numel() <= 2**bits - 1
        m = float(v.abs().max())
        k = q[n] / m * s
        torch.testing.assert_close(k, k.round(), rtol=0, atol=1e-9)  # on the grid M k / s
        assert float(q[n].abs().max()) <= m * (1 + 1e-12)
        # a coordinate rounds to one of its two neighbouring levels, never flips sign
        assert bool(((q[n] - v).abs() <= m / s * (1 + 1e-9)).all())
        assert bool((q[n] * v >= 0).all())


def test_zero_tensor_and_seeded_draws() -> None:
    g = {"z": torch.zeros(3), "w": torch.tensor([0.3, -0.7, 0.0, 1.0])}
    t = stochastic_quantize(3, seed=5)
    q0, state = t.update(g, t.init(g), None)
    assert torch.equal(q0["z"], torch.zeros(3))
    assert q0["w"][2] == 0 and q0["w"][3] == 1.0
    again, _ = stochastic_quantize(3, seed=5).update(g, {"count": 0}, None)
    assert torch.equal(q0["w"], again["w"])
    assert state == {"count": 1}


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"bits": 1}, ValueError, "bits"),
        ({"bits": 17}, ValueError, "bits"),
        ({"bits": 2.0}, TypeError, "bits"),
        ({"bits": 4, "seed": -3}, ValueError, "seed"),
    ],
)
def test_bad_arguments(kwargs, error, name) -> None:
    with pytest.raises(error, match=name):
        stochastic_quantize(**kwargs)
