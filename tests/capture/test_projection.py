"""project_per_example: an exact linear map, recovered column by column, and the JL properties."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from gradinfo.capture import projection
from gradinfo.capture.per_example import per_example_grads
from gradinfo.capture.projection import project_per_example


class Probe(nn.Module):
    """``out_b = <w1, x_b[:5]> + <w2, x_b[5:]>``: example b's gradient is exactly x_b."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(5, dtype=torch.float64))
        self.w2 = nn.Parameter(torch.randn(2, 3, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :5] @ self.w1 + (x[:, 5:].view(-1, 2, 3) * self.w2).sum((1, 2))


def _sum(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return o.sum() + 0 * t.sum()


def _matrix(kind: str, dim: int, seed: int) -> torch.Tensor:
    """``R`` as ``[dim, P]``: the sketches of the basis vectors e_1..e_P."""
    eye = torch.eye(11, dtype=torch.float64)
    return project_per_example(
        Probe(), _sum, eye, torch.zeros(11), dim, kind=kind, seed=seed, dtype=torch.float64
    ).T


def _mlp_grads() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (6,))
    grads = per_example_grads(model, nn.functional.cross_entropy, x, y)
    flat = torch.cat([g.flatten(1) for g in grads.values()], 1)  # [B, P]
    return model, x, y, flat


@pytest.mark.parametrize("kind", projection.KINDS)
def test_is_a_fixed_linear_map_with_the_right_entries(kind: str) -> None:
    dim = 64
    r = _matrix(kind, dim, seed=3)  # [dim, P]
    x = torch.randn(9, 11, dtype=torch.float64)
    got = project_per_example(Probe(), _sum, x, torch.zeros(9), dim, kind=kind, seed=3, dtype=torch.float64)
    torch.testing.assert_close(got, x @ r.T, rtol=1e-10, atol=1e-12)
    if kind == "rademacher":
        assert torch.all(r.abs() == dim**-0.5)
    elif kind == "countsketch":
        assert torch.all((r != 0).sum(0) == 1) and torch.all(r.abs().sum(0) == 1)  # one +-1 per column
    else:
        assert abs(r.mean()) < 5 * dim**-0.5 / (r.numel() ** 0.5)
        torch.testing.assert_close(
            r.var(), torch.tensor(1 / dim, dtype=torch.float64), rtol=0.2, atol=0
        )  # ~4 sd


@settings(max_examples=6, deadline=None)
@given(kind=st.sampled_from(projection.KINDS), seed=st.integers(0, 10_000), dim=st.integers(2, 32))
def test_norm_preserved_in_expectation(kind: str, seed: int, dim: int) -> None:
    _, _, _, g = _mlp_grads()
    g = g[:1, :11]  # one gradient, cut to the probe's P = 11
    runs = 200
    ratios = torch.stack(
        [(g @ _matrix(kind, dim, seed * runs + s).T).square().sum() / g.square().sum() for s in range(runs)]
    )  # [N]
    assert abs(ratios.mean() - 1) <= 5 * ratios.std() / runs**0.5


@pytest.mark.parametrize("kind", projection.KINDS)
def test_inner_products_within_jl_bound(kind: str) -> None:
    model, x, y, g = _mlp_grads()
    dim = 4096
    s = project_per_example(
        model, nn.functional.cross_entropy, x, y, dim, kind=kind, seed=1, dtype=torch.float64
    )
    exact = g @ g.T  # [B, B]
    scale = g.norm(dim=1)[:, None] * g.norm(dim=1)[None, :]
    # each entry has std <= sqrt(2 / dim) * ||g_i|| ||g_j||; allow 6 standard deviations
    assert torch.all((s @ s.T - exact).abs() <= 6 * (2 / dim) ** 0.5 * scale)


def test_chunks_cache_and_blocks_do_not_change_the_sketch(monkeypatch: pytest.MonkeyPatch) -> None:
    model, x, y, _ = _mlp_grads()
    ce = nn.functional.cross_entropy
    for kind in projection.KINDS:
        whole = project_per_example(model, ce, x, y, 16, kind=kind, seed=5, dtype=torch.float64)
        for chunk in (1, 4):
            chunked = project_per_example(
                model, ce, x, y, 16, kind=kind, seed=5, chunk_size=chunk, dtype=torch.float64
            )
            torch.testing.assert_close(chunked, whole, rtol=1e-12, atol=1e-14)
        monkeypatch.setattr(projection, "_CACHE_BYTES", 0)  # regenerate the blocks for every chunk
        regenerated = project_per_example(
            model, ce, x, y, 16, kind=kind, seed=5, chunk_size=2, dtype=torch.float64
        )
        torch.testing.assert_close(regenerated, whole, rtol=1e-12, atol=1e-14)
        monkeypatch.undo()
    # blocks narrower than a parameter: still one projection, and chunk-invariant
    monkeypatch.setattr(projection, "_BLOCK_ELEMENTS", 16 * 5)  # 5 columns per block
    monkeypatch.setattr(projection, "_CACHE_BYTES", 0)
    r = _matrix("gaussian", 16, seed=2)
    probe_x = torch.randn(4, 11, dtype=torch.float64)
    got = project_per_example(
        Probe(), _sum, probe_x, torch.zeros(4), 16, seed=2, chunk_size=3, dtype=torch.float64
    )
    torch.testing.assert_close(got, probe_x @ r.T, rtol=1e-10, atol=1e-12)


def test_default_chunk_follows_memory_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    model, x, y, _ = _mlp_grads()
    row_bytes = sum(p.numel() * 8 for p in model.parameters())  # float64 gradients of one example
    monkeypatch.setattr(projection, "_CHUNK_BYTES", 2 * row_bytes + 1)
    seen = []

    def recording(model, loss_fn, inputs, targets):
        seen.append(inputs.shape[0])
        return per_example_grads(model, loss_fn, inputs, targets)

    monkeypatch.setattr(projection, "per_example_grads", recording)
    project_per_example(model, nn.functional.cross_entropy, x, y, 8)
    assert seen == [2, 2, 2]


def test_seeds_kinds_dtype() -> None:
    model, x, y, _ = _mlp_grads()
    ce = nn.functional.cross_entropy
    one = project_per_example(model, ce, x, y, 8, seed=1)
    assert one.shape == (6, 8) and one.dtype == torch.float32
    assert torch.equal(one, project_per_example(model, ce, x, y, 8, seed=1))
    assert not torch.allclose(one, project_per_example(model, ce, x, y, 8, seed=2))
    sketches = [project_per_example(model, ce, x, y, 8, kind=k, seed=1) for k in projection.KINDS]
    assert not torch.allclose(sketches[0], sketches[1]) and not torch.allclose(sketches[1], sketches[2])
    exact64 = project_per_example(model, ce, x, y, 8, seed=1, dtype=torch.float64)
    torch.testing.assert_close(one, exact64.float(), rtol=1e-5, atol=1e-6)


def test_bad_input() -> None:
    model, x, y, _ = _mlp_grads()
    ce = nn.functional.cross_entropy
    with pytest.raises(ValueError, match="dim"):
        project_per_example(model, ce, x, y, 0)
    with pytest.raises(TypeError, match="dim"):
        project_per_example(model, ce, x, y, 8.0)
    with pytest.raises(ValueError, match="kind"):
        project_per_example(model, ce, x, y, 8, kind="sparse")
    with pytest.raises(TypeError, match="seed"):
        project_per_example(model, ce, x, y, 8, seed="a")
    with pytest.raises(ValueError, match="chunk_size"):
        project_per_example(model, ce, x, y, 8, chunk_size=0)
    with pytest.raises(TypeError, match="dtype"):
        project_per_example(model, ce, x, y, 8, dtype=torch.int64)
    with pytest.raises(ValueError, match="batch size"):
        project_per_example(model, ce, x, y[:3], 8)
