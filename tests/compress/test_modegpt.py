"""modegpt: each decomposition vs its closed form in numpy/scipy, the compressed model vs the original."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import DynamicCache

from gradinfo.compress.modegpt import (
    ModularAttention,
    allocate,
    cr_select,
    modegpt,
    nystrom,
    rebuild,
    svd_vo,
)
from gradinfo.models import tiny_llama


def _ids(seed: int = 0, batch: int = 8, length: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (batch, length), generator=torch.Generator().manual_seed(seed))  # [B, T]


def _psd(n: int, rank: int, seed: int) -> np.ndarray:
    z = np.random.default_rng(seed).standard_normal((rank, n)) * np.linspace(0.2, 3, n)
    return z.T @ z  # [n, n]


@pytest.mark.parametrize("allocation", ["global", "uniform"])
def test_ratio_zero_leaves_the_output_unchanged(allocation: str) -> None:
    model, ids = tiny_llama(seed=1), _ids()
    small, report = modegpt(model, ids, 0.0, allocation=allocation)
    torch.testing.assert_close(small(input_ids=ids).logits, model(input_ids=ids).logits, rtol=0, atol=1e-4)
    assert report.params_after == report.params_before and report.compression == 0


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 1000), st.integers(1, 11))
def test_nystrom_keeps_top_ridge_leverage_and_refits_by_least_squares(seed: int, keep: int) -> None:
    z = np.random.default_rng(seed).standard_normal((40, 12)) * np.linspace(0.1, 2, 12)  # [N, n]
    w_down = np.random.default_rng(seed + 1).standard_normal((5, 12))  # [D, n]
    cov = z.T @ z
    lam = 1e-2 * np.mean(np.diag(cov))
    leverage = np.diag(cov @ np.linalg.inv(cov + lam * np.eye(12)))
    expected = np.sort(np.argsort(-leverage, kind="stable")[:keep])
    index, refit = nystrom(torch.from_numpy(cov), keep, 1e-2)
    assert index.tolist() == expected.tolist()
    best = np.linalg.lstsq(z[:, expected], z @ w_down.T, rcond=None)[0]  # [k, D]
    np.testing.assert_allclose((torch.from_numpy(w_down) @ refit.T).numpy(), best.T, rtol=1e-6, atol=1e-8)


def test_cr_select_ranks_by_column_norms_of_the_covariance_roots() -> None:
    cq = [_psd(8, 20, s) for s in (0, 1)]  # two query heads share the key head
    ck = _psd(8, 20, 2)
    norm = [np.linalg.norm(np.real(scipy.linalg.sqrtm(c)), axis=0) for c in (*cq, ck)]  # [8] each
    q_power = torch.tensor(np.stack([np.diag(c) for c in cq]))  # [2, 8]
    k_power = torch.tensor(np.diag(ck))  # [8]
    plain = np.sum([(norm[h] * norm[2]) ** 2 for h in range(2)], axis=0)  # [8]
    got = cr_select(q_power, k_power, 3, rotary=False)
    assert got.tolist() == sorted(np.argsort(-plain)[:3].tolist())
    pairs = plain[:4] + plain[4:]  # [4]: dimension i rotates with i + 4
    first = sorted(np.argsort(-pairs)[:2].tolist())
    assert cr_select(q_power, k_power, 4).tolist() == first + [i + 4 for i in first]


@pytest.mark.parametrize("rank", [1, 3, 6])
def test_svd_vo_is_the_best_rank_r_reconstruction(rank: int) -> None:
    rng = np.random.default_rng(rank)
    cov = _psd(10, 30, 7)  # [D, D] full rank
    w_v, w_o = rng.standard_normal((6, 10)), rng.standard_normal((20, 6))  # [d, D], [g D, d]
    root = np.real(scipy.linalg.sqrtm(cov))
    u, s, vt = np.linalg.svd(w_o @ w_v @ root)
    best = (u[:, :rank] * s[:rank]) @ vt[:rank] @ np.linalg.inv(root)  # C^-1/2-weighted Eckart-Young
    new_v, new_o = svd_vo(*(torch.from_numpy(a) for a in (cov, w_v, w_o)), rank)
    assert new_v.shape == (rank, 10) and new_o.shape == (20, rank)
    np.testing.assert_allclose((new_o @ new_v).numpy(), best, rtol=1e-7, atol=1e-8)
    err = np.linalg.norm((w_o @ w_v - (new_o @ new_v).numpy()) @ root)
    assert err == pytest.approx(np.sqrt(np.sum(s[rank:] ** 2)), rel=1e-7, abs=1e-9)


def test_no_backward_pass_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("modegpt ran a backward pass")

    monkeypatch.setattr(torch.autograd, "backward", forbidden)
    monkeypatch.setattr(torch.autograd, "grad", forbidden)
    model = tiny_llama(seed=2)
    small, _ = modegpt(model, _ids(), 0.3)
    assert all(p.grad is None for p in (*model.parameters(), *small.parameters()))


def test_modular_attention_equals_original_attention_with_the_cut_dimensions_zeroed() -> None:
    model, ids = tiny_llama(seed=3), _ids(1)
    small, report = modegpt(model, ids, 0.4, allocation="uniform")
    reference = copy.deepcopy(model)
    attn, cut = reference.model.layers[0].self_attn, small.model.layers[0].self_attn
    assert isinstance(cut, ModularAttention)
    d, groups, dq, r = attn.head_dim, attn.num_key_value_groups, cut.qk_dim, cut.vo_dim
    with torch.no_grad():
        q_w = torch.zeros_like(attn.q_proj.weight).view(-1, d, 64)  # [H, d, D]
        k_w = torch.zeros_like(attn.k_proj.weight).view(-1, d, 64)  # [Hkv, d, D]
        for j, index in enumerate(cut.rope_index):
            k_w[j, index] = cut.k_proj.weight.view(-1, dq, 64)[j]
            for h in range(j * groups, (j + 1) * groups):
                q_w[h, index] = cut.q_proj.weight.view(-1, dq, 64)[h]
        v_w = torch.zeros_like(attn.v_proj.weight).view(-1, d, 64)  # [Hkv, d, D]
        v_w[:, :r] = cut.v_proj.weight.view(-1, r, 64)
        o_w = torch.zeros_like(attn.o_proj.weight).view(64, -1, d)  # [D, H, d]
        o_w[..., :r] = cut.o_proj.weight.view(64, -1, r)
        for lin, w in ((attn.q_proj, q_w), (attn.k_proj, k_w), (attn.v_proj, v_w), (attn.o_proj, o_w)):
            lin.weight.copy_(w.reshape(lin.weight.shape))
        reference.model.layers[0].mlp = small.model.layers[0].mlp
        reference.model.layers[1] = small.model.layers[1]
    torch.testing.assert_close(
        small(input_ids=ids).logits, reference(input_ids=ids).logits, rtol=0, atol=1e-5
    )
    assert report.qk_dim[0] == dq and report.vo_rank[0] == r


def test_compressed_model_decodes_with_a_kv_cache_and_trains() -> None:
    small, report = modegpt(tiny_llama(seed=4), _ids(2), 0.3)
    ids = _ids(3, batch=2, length=12)
    full = small(input_ids=ids).logits  # [B, T, V]
    cache = DynamicCache()
    steps = [small(input_ids=ids[:, :8], past_key_values=cache, use_cache=True).logits]
    for t in range(8, 12):
        steps.append(small(input_ids=ids[:, t : t + 1], past_key_values=cache, use_cache=True).logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=0, atol=1e-5)
    loss = torch.nn.functional.cross_entropy(full.flatten(0, 1), ids.flatten())
    loss.backward()
    assert all(p.grad is not None for p in small.model.layers.parameters())
    assert 0.25 < report.compression < 0.35
    assert report.params_after < report.params_before


def test_global_allocation_keeps_the_mean_and_cuts_unimportant_layers_more() -> None:
    phi = allocate(torch.tensor([0.1, 0.3, 0.2, 0.05]), 0.4, epsilon=0.1, max_layer_ratio=0.6)
    assert float(phi.mean()) == pytest.approx(0.4)
    assert float(phi.max()) <= 0.6 + 1e-12
    assert phi[3] >= phi[0] >= phi[2] >= phi[1]
    torch.testing.assert_close(allocate(torch.zeros(3), 0.3), torch.full((3,), 0.3, dtype=torch.float64))


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((1.0,), {}, ValueError),
        ((-0.1,), {}, ValueError),
        ((0.3,), {"allocation": "greedy"}, ValueError),
        ((0.3,), {"epsilon": 0.0}, ValueError),
        ((0.3,), {"max_layer_ratio": 1.0}, ValueError),
        ((0.3,), {"ridge": -1.0}, ValueError),
    ],
)
def test_bad_arguments(args: tuple, kwargs: dict, error: type) -> None:
    with pytest.raises(error):
        modegpt(tiny_llama(seed=0), _ids(), *args, **kwargs)


def test_bad_model_and_calibration() -> None:
    model = tiny_llama(seed=0)
    with pytest.raises(TypeError, match="calibration"):
        modegpt(model, _ids().float(), 0.3)
    with pytest.raises(TypeError, match="calibration"):
        modegpt(model, "text", 0.3)
    with pytest.raises(ValueError, match="token ids outside"):
        modegpt(model, _ids() + 300, 0.3)
    with pytest.raises(ValueError, match="empty"):
        modegpt(model, [], 0.3)
    with pytest.raises(ValueError, match="Llama-style"):
        modegpt(torch.nn.Linear(2, 2), _ids(), 0.3)
    small, _ = modegpt(model, _ids(), 0.3)
    with pytest.raises(ValueError, match="already compressed"):
        modegpt(small, _ids(), 0.3)


def test_rebuild_reshapes_a_dense_model_to_load_the_compressed_weights_exactly() -> None:
    model, ids = tiny_llama(num_layers=3, num_heads=4, num_kv_heads=2, intermediate_size=96, seed=2), _ids()
    small, report = modegpt(model, ids, 0.4)
    layers = [
        {"mlp_width": w, "qk_dim": q, "vo_rank": v}
        for w, q, v in zip(report.mlp_width, report.qk_dim, report.vo_rank, strict=True)
    ]
    skeleton = tiny_llama(num_layers=3, num_heads=4, num_kv_heads=2, intermediate_size=96, seed=5)
    rebuild(skeleton, layers)
    skeleton.load_state_dict(small.state_dict(), strict=True)
    assert all(isinstance(layer.self_attn, ModularAttention) for layer in skeleton.model.layers)
    assert skeleton.config.intermediate_size == small.config.intermediate_size
    with torch.no_grad():
        assert torch.equal(skeleton(input_ids=ids).logits, small(input_ids=ids).logits)
    with pytest.raises(ValueError, match="one entry per decoder layer"):
        rebuild(tiny_llama(num_layers=3), layers[:2])
