"""SinkGD: normalisation vs a float64 row/column loop, its fixed point, zero matrix state, AdamW part."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradinfo.models import tiny_llama
from gradinfo.optim import SinkGD, sinkgd_param_groups, sinkgd_transform, sinkhorn_normalize
from gradinfo.optim import sinkgd as sinkgd_module
from gradinfo.transform import as_optimizer


def _loop_reference(g: torch.Tensor, iterations: int) -> torch.Tensor:
    """Row by row, then column by column, in float64 Python loops."""
    a = [[float(v) for v in row] for row in g.tolist()]
    m, n = len(a), len(a[0])
    for _ in range(iterations):
        for i in range(m):
            norm = math.sqrt(sum(x * x for x in a[i]))
            a[i] = [x * math.sqrt(n) / norm for x in a[i]]
        for j in range(n):
            norm = math.sqrt(sum(a[i][j] ** 2 for i in range(m)))
            for i in range(m):
                a[i][j] *= math.sqrt(m) / norm
    return torch.tensor(a, dtype=torch.float64)


def test_matches_float64_loop() -> None:
    g = torch.randn(7, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for iterations in (1, 3):
        torch.testing.assert_close(
            sinkhorn_normalize(g, iterations), _loop_reference(g, iterations), rtol=1e-12, atol=1e-12
        )


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 10_000))
def test_norms_reach_their_targets_and_the_fixed_point_is_stable(m: int, n: int, seed: int) -> None:
    g = torch.randn(m, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    out = sinkhorn_normalize(g, 20)
    torch.testing.assert_close(
        out.norm(dim=1), torch.full((m,), math.sqrt(n), dtype=torch.float64), rtol=1e-3, atol=0
    )
    torch.testing.assert_close(
        out.norm(dim=0), torch.full((n,), math.sqrt(m), dtype=torch.float64), rtol=1e-3, atol=0
    )
    torch.testing.assert_close(sinkhorn_normalize(out, 20), out, rtol=1e-3, atol=1e-6)  # idempotent
    torch.testing.assert_close(sinkhorn_normalize(3.5 * g, 20), out, rtol=1e-9, atol=1e-12)  # scale-free


def test_matrices_hold_no_state_and_step_by_the_normalised_gradient() -> None:
    w = torch.nn.Parameter(torch.randn(4, 6, generator=torch.Generator().manual_seed(1)))
    opt = SinkGD([w], lr=0.1, iterations=5)
    g = torch.randn(4, 6, generator=torch.Generator().manual_seed(2))
    before = w.detach().clone()
    w.grad = g.clone()
    opt.step()
    torch.testing.assert_close(w.detach(), before - 0.1 * sinkhorn_normalize(g, 5), rtol=0, atol=1e-7)
    assert opt.state[w] == {} and opt.state_dict()["state"] in ({}, {0: {}})


def test_non_matrix_group_is_torch_adamw() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.nn.Parameter(torch.randn(4, 3, generator=gen))
    b = torch.nn.Parameter(a.detach().clone())
    ours = SinkGD([{"params": [a], "sinkhorn": False}], lr=0.01, weight_decay=0.1)
    ref = torch.optim.AdamW([b], lr=0.01, weight_decay=0.1)
    for _ in range(20):
        g = torch.randn(4, 3, generator=gen)
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=1e-6)


def test_chunked_same_shape_matrices_with_weight_decay_match_one_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gen = torch.Generator().manual_seed(3)
    ws = [torch.nn.Parameter(torch.randn(5, 4, generator=gen, dtype=torch.float64)) for _ in range(5)]
    ws.append(torch.nn.Parameter(torch.randn(4, 5, generator=gen, dtype=torch.float64)))
    monkeypatch.setattr(sinkgd_module, "_CHUNK_BYTES", 2 * 5 * 4 * 8)  # chunks of 2, 2, 1 for the [5, 4] ones
    opt = SinkGD(ws, lr=0.1, iterations=4, weight_decay=0.3)
    grads = [torch.randn(w.shape, generator=gen, dtype=torch.float64) for w in ws]
    expected = [
        w.detach() - 0.1 * (sinkhorn_normalize(g, 4) + 0.3 * w.detach())
        for w, g in zip(ws, grads, strict=True)
    ]
    for w, g in zip(ws, grads, strict=True):
        w.grad = g.clone()
    opt.step()
    for w, e in zip(ws, expected, strict=True):
        torch.testing.assert_close(w.detach(), e, rtol=1e-12, atol=1e-12)


def test_adamw_part_with_unequal_step_counts_is_torch_adamw() -> None:
    gen = torch.Generator().manual_seed(4)
    ours = [
        torch.nn.Parameter(torch.randn(3, generator=gen)),
        torch.nn.Parameter(torch.randn(2, 2, generator=gen)),
    ]
    refs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt = SinkGD([{"params": ours, "sinkhorn": False}], lr=0.01, betas=(0.8, 0.95), weight_decay=0.1)
    ref = torch.optim.AdamW(refs, lr=0.01, betas=(0.8, 0.95), weight_decay=0.1)
    for step in range(6):
        for i, (a, b) in enumerate(zip(ours, refs, strict=True)):
            g = torch.randn(a.shape, generator=gen) if step >= 2 * i else None  # the second starts late
            a.grad, b.grad = (None, None) if g is None else (g.clone(), g.clone())
        opt.step()
        ref.step()
    for a, b in zip(ours, refs, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=1e-6)
    assert [opt.state[p]["step"] for p in ours] == [6, 4]


def test_param_groups_keep_embeddings_and_head_on_adamw() -> None:
    model = tiny_llama(seed=0)
    groups = sinkgd_param_groups(model, lr=0.01, adam_lr=0.001)
    matrix_ids = {id(p) for p in groups[0]["params"]}
    assert id(model.get_output_embeddings().weight) not in matrix_ids
    assert id(model.get_input_embeddings().weight) not in matrix_ids
    assert all(p.ndim == 2 for p in groups[0]["params"])
    assert len(matrix_ids) + len(groups[1]["params"]) == len(list(model.parameters()))
    opt = SinkGD(groups)
    ids = torch.randint(256, (2, 8), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    assert all(opt.state[p] == {} for p in groups[0]["params"])
    assert all(opt.state[p]["step"] == 1 for p in groups[1]["params"])


def test_state_dict_round_trip() -> None:
    def run(split: bool) -> torch.Tensor:
        w, b = torch.nn.Parameter(torch.ones(3, 2)), torch.nn.Parameter(torch.zeros(2))
        opt = SinkGD([w, b], lr=0.05)
        for i in range(8):
            if split and i == 4:
                saved = copy.deepcopy(opt.state_dict())
                opt = SinkGD([w, b], lr=9.0)
                opt.load_state_dict(saved)
            w.grad = torch.cos(w.detach() * (i + 1))
            b.grad = torch.sin(b.detach() + i)
            opt.step()
        return torch.cat([w.detach().flatten(), b.detach()])

    torch.testing.assert_close(run(True), run(False), rtol=0, atol=0)


def test_missing_gradients_skip_alike_in_sinkgd_and_as_optimizer() -> None:
    gen = torch.Generator().manual_seed(6)
    ours = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in [(4, 3), (3,), (2, 5)]]
    pure = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt = SinkGD(ours, lr=0.05, weight_decay=0.1)
    ref = as_optimizer(sinkgd_transform(weight_decay=0.1), pure, lr=0.05)
    for step in range(7):
        for i, (a, b) in enumerate(zip(ours, pure, strict=True)):
            g = None if (step + i) % 3 == 0 else torch.randn(a.shape, generator=gen)
            a.grad, b.grad = (None, None) if g is None else (g.clone(), g.clone())
        opt.step()
        ref.step()
    for a, b in zip(ours, pure, strict=True):
        assert torch.equal(a, b)
    assert opt.state[ours[1]]["step"] == ref.state["transform_state"]["g0.p1"]["step"] == 5


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="2-D"):
        sinkhorn_normalize(torch.zeros(2, 2, 2))
    with pytest.raises(ValueError, match="sinkhorn=True"):
        SinkGD([{"params": [torch.nn.Parameter(torch.zeros(3))], "sinkhorn": True}])
    with pytest.raises(TypeError):
        sinkgd_transform(sinkhorn="yes")
    with pytest.raises(ValueError):
        SinkGD([torch.nn.Parameter(torch.zeros(2, 2))], iterations=0)
