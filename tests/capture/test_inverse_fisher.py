"""InverseFisher (static M-FAC) against the dense float64 inverse of lambda I + (1/m) G^T G."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradinfo.capture import InverseFisher


def dense_inverse(grads: torch.Tensor, damping: float, block: int | None = None) -> torch.Tensor:
    m, d = grads.shape
    fisher = damping * torch.eye(d, dtype=grads.dtype) + grads.T @ grads / m  # [d, d]
    block = block or d
    inv = torch.zeros_like(fisher)
    for s in range(0, d, block):
        inv[s : s + block, s : s + block] = torch.linalg.inv(fisher[s : s + block, s : s + block])
    return inv


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("block", [None, 64, 50, 7])
def test_ihvp_and_diag_match_dense_inverse(block: int | None) -> None:
    gen = torch.Generator().manual_seed(0)
    grads = torch.randn(32, 300, generator=gen, dtype=torch.float64)
    v = torch.randn(300, generator=gen, dtype=torch.float64)
    inv = dense_inverse(grads, 1e-3, block)
    fisher = InverseFisher(grads, 1e-3, block_size=block)
    assert rel(fisher.ihvp(v), inv @ v) <= 1e-8
    assert rel(fisher.diag(), inv.diag()) <= 1e-8


def test_batched_vectors_and_gradients_left_untouched() -> None:
    gen = torch.Generator().manual_seed(1)
    grads = torch.randn(5, 20, generator=gen, dtype=torch.float64)
    copy = grads.clone()
    fisher = InverseFisher(grads, 0.1)
    vs = torch.randn(4, 20, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(fisher.ihvp(vs), vs @ dense_inverse(grads, 0.1).T, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fisher.ihvp(vs)[2], fisher.ihvp(vs[2]), rtol=0, atol=1e-14)
    torch.testing.assert_close(grads, copy, rtol=0, atol=0)


@settings(max_examples=15, deadline=None)
@given(m=st.integers(1, 6), d=st.integers(1, 12), damping=st.floats(1e-2, 10.0), seed=st.integers(0, 99))
def test_ihvp_inverts_the_fisher(m: int, d: int, damping: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    grads = torch.randn(m, d, generator=gen, dtype=torch.float64)
    v = torch.randn(d, generator=gen, dtype=torch.float64)
    fisher = damping * torch.eye(d, dtype=torch.float64) + grads.T @ grads / m
    torch.testing.assert_close(fisher @ InverseFisher(grads, damping).ihvp(v), v, rtol=1e-8, atol=1e-8)


def test_float32_is_close_to_float64() -> None:
    grads = torch.randn(16, 100, generator=torch.Generator().manual_seed(2))
    v = torch.ones(100)
    ref = InverseFisher(grads.double(), 1e-2).ihvp(v.double())
    out = InverseFisher(grads, 1e-2).ihvp(v)
    assert out.dtype == torch.float32
    assert rel(out.double(), ref) < 1e-4


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "fragment"),
    [
        ((torch.zeros(3, 4, dtype=torch.int64), 1.0), {}, TypeError, "floating point"),
        ((torch.zeros(4), 1.0), {}, ValueError, r"\[m, d\]"),
        ((torch.zeros(0, 4), 1.0), {}, ValueError, r"\[m, d\]"),
        ((torch.zeros(2, 4), 0.0), {}, ValueError, "damping"),
        ((torch.zeros(2, 4), 1.0), {"block_size": 0}, ValueError, "block_size"),
        ((torch.full((2, 4), float("nan")), 1.0), {}, ValueError, "non-finite"),
    ],
)
def test_bad_input(args: tuple, kwargs: dict, error: type, fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        InverseFisher(*args, **kwargs)


def test_bad_vector() -> None:
    fisher = InverseFisher(torch.ones(2, 4), 1.0)
    with pytest.raises(ValueError, match=r"\[4\]"):
        fisher.ihvp(torch.ones(5))
    with pytest.raises(TypeError, match="floating point"):
        fisher.ihvp(torch.ones(4, dtype=torch.int64))
