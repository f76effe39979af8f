"""SNELLA: the mixed-kernel merge, the quantile masks and budgets, the schedule, the sensitivity EMAs, init.

References are written independently of the module: float64 loops for the kernels, ``numpy.quantile`` for the
mask threshold, the official allocator's schedule written out from ``sparse_allocator.py``'s formula.
"""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from gradinfo.compress.snella import (
    allocate_budgets,
    kernel_merge,
    lora,
    mixed_kernel,
    quantile_mask,
    snella,
)


def _model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(7, 6), nn.Tanh(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def _mixed_reference(a: np.ndarray, b: np.ndarray, alpha: float, gamma: float, beta: float) -> np.ndarray:
    """Float64 loop: kappa[j, i] = sum_h 0.1 (-1)^h ||a_hi - b_hj||, softmax over outputs j per input i."""
    heads, n_in, _ = a.shape
    n_out = b.shape[1]
    kappa = np.zeros((n_out, n_in))
    for j, i, h in itertools.product(range(n_out), range(n_in), range(heads)):
        kappa[j, i] += (
            0.1 * (-1) ** h * math.sqrt(sum((a[h, i, k] - b[h, j, k]) ** 2 for k in range(a.shape[2])))
        )
    merged = np.zeros_like(kappa)
    for i in range(n_in):
        exps = [math.exp(kappa[j, i] / gamma) for j in range(n_out)]
        for j in range(n_out):
            merged[j, i] = kappa[j, i] + alpha * exps[j] / sum(exps) + beta
    return merged


def test_kernel_merge_matches_float64_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2, 5, 3, generator=gen, dtype=torch.float64)  # [H, in, k]
    b = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64)  # [H, out, k]
    coeffs = torch.tensor([0.1, -0.1], dtype=torch.float64)
    expected = torch.zeros(4, 5, dtype=torch.float64)
    for j, i, h in itertools.product(range(4), range(5), range(2)):
        expected[j, i] += coeffs[h] * torch.sqrt(((a[h, i] - b[h, j]) ** 2).sum())
    torch.testing.assert_close(kernel_merge(a, b, coeffs), expected, rtol=1e-12, atol=1e-12)


def test_mixed_kernel_matches_float64_loop() -> None:
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(2, 5, 3, generator=gen, dtype=torch.float64)  # [H, in, k]
    b = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64)  # [H, out, k]
    coeffs = torch.tensor([0.1, -0.1], dtype=torch.float64)
    scalars = [torch.tensor([v], dtype=torch.float64) for v in (1.7, 0.3, -0.4)]  # alpha, gamma, beta
    expected = _mixed_reference(a.numpy(), b.numpy(), 1.7, 0.3, -0.4)
    got = mixed_kernel(a, b, coeffs, *scalars)
    torch.testing.assert_close(got, torch.from_numpy(expected), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="alpha"):
        mixed_kernel(a, b, coeffs, torch.ones(2, dtype=torch.float64), scalars[1], scalars[2])


def test_kernel_merges_are_high_rank_where_a_product_is_not() -> None:
    gen = torch.Generator().manual_seed(1)
    r = 4
    a = torch.randn(2, 32, r // 2, generator=gen, dtype=torch.float64)
    b = torch.randn(2, 32, r // 2, generator=gen, dtype=torch.float64)
    coeffs = torch.tensor([0.1, -0.1], dtype=torch.float64)
    one = torch.ones(1, dtype=torch.float64)
    merged = mixed_kernel(a, b, coeffs, one, one, torch.zeros(1, dtype=torch.float64))
    lora_like = (
        torch.randn(32, r, generator=gen, dtype=torch.float64) @ torch.randn(r, 32, generator=gen).double()
    )
    assert int(torch.linalg.matrix_rank(kernel_merge(a, b, coeffs))) > 2 * r
    assert int(torch.linalg.matrix_rank(merged)) > 2 * r
    assert int(torch.linalg.matrix_rank(lora_like)) == r


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**16), st.floats(0.0, 1.0), st.integers(1, 40))
def test_quantile_mask_matches_numpy_quantile(seed: int, sparsity: float, n: int) -> None:
    values = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    threshold = np.quantile(np.abs(values.numpy()), sparsity)  # linear interpolation, numpy's default
    expected = np.abs(values.numpy()) > threshold
    assert quantile_mask(values, sparsity).numpy().tolist() == expected.tolist()


def test_quantile_mask_keeps_the_budget_and_drops_the_minimum_when_dense() -> None:
    values = torch.randn(12, 10, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for keep in range(1, 120):
        mask = quantile_mask(values, 1 - keep / 120)
        assert abs(int(mask.sum()) - keep) <= 1
        assert values.abs()[mask].min() > values.abs()[~mask].max()
    dense = quantile_mask(values, 0.0)
    assert int(dense.sum()) == 119 and not bool(dense.flatten()[values.abs().argmin()])
    with pytest.raises(ValueError, match="sparsity"):
        quantile_mask(values, 1.5)


def test_layer_update_is_quantile_masked_merge_times_its_detached_magnitude() -> None:
    model, _ = snella(_model(), total_steps=5, r=4, seed=3)
    layer = model[2]
    with torch.no_grad():  # move away from the init so that every part of the merge matters
        layer.alpha.fill_(0.8)
        layer.gamma.fill_(0.05)
        layer.beta.fill_(0.02)
        layer.a.mul_(20)
    layer.sparsity = 0.4
    merged = _mixed_reference(
        layer.a.detach().double().numpy(), layer.b.detach().double().numpy(), 0.8, 0.05, 0.02
    )
    mask = np.abs(merged) > np.quantile(np.abs(merged), 0.4)
    expected = torch.from_numpy(np.where(mask, merged * np.abs(merged), 0.0))  # [5, 6]
    torch.testing.assert_close(layer.update().double(), expected, rtol=1e-5, atol=1e-7)
    x = torch.randn(4, 6)
    torch.testing.assert_close(layer(x), layer.base(x) + x @ layer.update().T, rtol=1e-5, atol=1e-6)
    # stop-gradient on the magnitude: d sum(delta) / d beta = sum over kept entries of |M|, not 2|M|
    layer.update().sum().backward()
    torch.testing.assert_close(
        layer.beta.grad.double(), torch.tensor([np.abs(merged)[mask].sum()]), rtol=1e-4, atol=1e-7
    )


def test_initialisation_matches_the_official_module() -> None:
    base = nn.Linear(64, 48)
    model, _ = snella(nn.Sequential(base), total_steps=5, r=8, seed=0)
    layer = model[0]
    for factor, n in ((layer.a.detach(), 64), (layer.b.detach(), 48)):
        bound = 1 / math.sqrt(n * 4)  # kaiming_uniform_(a=sqrt(5)): gain sqrt(1/3) * sqrt(3 / fan_in)
        assert factor.shape == (2, n, 4)
        assert float(factor.abs().max()) <= bound
        assert float(factor.abs().max()) > 0.95 * bound
        assert abs(float(factor.std()) - bound / math.sqrt(3)) < 0.1 * bound
    assert [float(p.detach()) for p in (layer.alpha, layer.gamma, layer.beta)] == [1.0, 1.0, 0.0]
    assert all(p.requires_grad for p in (layer.a, layer.b, layer.alpha, layer.gamma, layer.beta))
    assert layer.sparsity == 0.0


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(0.0, 10.0), min_size=1, max_size=6),
    st.lists(st.integers(0, 40), min_size=6, max_size=6),
    st.integers(0, 300),
)
def test_allocate_budgets_respects_total_and_capacity(
    scores: list[float], caps: list[int], total: int
) -> None:
    capacity = torch.tensor(caps[: len(scores)])
    budgets = allocate_budgets(torch.tensor(scores, dtype=torch.float64), total, capacity)
    assert int(budgets.sum()) == min(total, int(capacity.sum()))
    assert bool((budgets >= 0).all()) and bool((budgets <= capacity).all())


def test_allocate_budgets_proportional_then_water_filled() -> None:
    capacity = torch.tensor([100, 100, 100, 100])
    budgets = allocate_budgets(torch.tensor([1.0, 2.0, 3.0, 4.0]), 100, capacity)
    assert budgets.tolist() == [10, 20, 30, 40]
    # layer 3 wants 80 > 50: capped, its excess shared 1:2:3 among the others (+5, +10, +15)
    budgets = allocate_budgets(torch.tensor([1.0, 2.0, 3.0, 4.0]), 200, torch.tensor([100, 100, 100, 50]))
    assert budgets.tolist() == [25, 50, 75, 50]


def _official_volume(step: int, init: float, target: float, total: int, t_i: int, t_f: int) -> float:
    """``Allocator.schedule_threshold`` written out: the volume at ``step`` (official code, per epoch)."""
    if step <= t_i:
        return init
    if step > total - t_f:
        return target
    return int(target + (init - target) * (1 - (step - t_i) / (total - t_f - t_i)) ** 3)


def test_controller_follows_the_official_schedule_one_step_ahead() -> None:
    model, controller = snella(_model(), total_steps=9, r=4, target_ratio=0.6, init_warmup=2, final_warmup=2)
    capacity = 7 * 6 + 6 * 5 + 5 * 3
    init, target = capacity, int(0.4 * capacity)
    x, y = torch.randn(16, 7), torch.randint(0, 3, (16,))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.05)
    in_force = []
    for _ in range(12):  # the last three calls run past total_steps: budgets stay put
        in_force.append(sum(controller.budgets().values()))
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        controller.step()
    expected = [_official_volume(t, init, target, 9, 2, 2) for t in range(9)]
    assert in_force[:9] == expected
    assert in_force[9:] == [expected[-1]] * 3
    assert expected[-1] == target and expected[4] not in (init, target)
    for name, layer in controller.layers.items():
        kept = int((layer.update() != 0).sum())
        assert abs(kept - controller.budgets()[name]) <= 1


def test_controller_ema_matches_manual_recursion_after_the_optimiser_step() -> None:
    torch.manual_seed(0)
    model, controller = snella(_model(), total_steps=4, r=4, beta1=0.85, beta2=0.7, seed=0)
    x, y = torch.randn(16, 7), torch.randint(0, 3, (16,))
    layer = model[0]
    ema = torch.zeros_like(layer.a, dtype=torch.float64)
    unc = torch.zeros_like(ema)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(4):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        s = (layer.a.double() * layer.a.grad.double()).abs()  # updated parameter times this step's gradient
        ema = 0.85 * ema + 0.15 * s
        unc = 0.7 * unc + 0.3 * (s - ema).abs()
        controller.step()
        torch.testing.assert_close(controller.sensitivity["0.a"].double(), ema, rtol=1e-5, atol=1e-9)
        torch.testing.assert_close(controller.uncertainty["0.a"].double(), unc, rtol=1e-5, atol=1e-9)


def test_budgets_follow_the_layer_sensitivity_ranking() -> None:
    base = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8))
    _, controller = snella(base, total_steps=3, r=4, target_ratio=0.5, seed=0)
    for step in range(2):
        for scale, layer in zip((1.0, 3.0, 2.0), controller.layers.values(), strict=True):
            factor = scale * (1 + step)  # |theta * grad| = factor for every entry
            layer.a.grad = factor / layer.a.detach()
            layer.b.grad = factor / layer.b.detach()
        controller.step()
    budgets = controller.budgets()
    assert controller.scores is not None and controller.scores.argsort().tolist() == [0, 2, 1]
    assert budgets["1"] > budgets["2"] > budgets["0"]


def test_base_weights_stay_frozen_and_factor_count_matches_lora() -> None:
    model = _model()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    lora_model = lora(copy.deepcopy(model), r=4)
    wrapped, controller = snella(model, total_steps=5, r=4, seed=1)
    trainable = [p for p in wrapped.parameters() if p.requires_grad]
    factors = sum(m.a.numel() + m.b.numel() for m in controller.layers.values())
    assert factors == 4 * (7 + 6 + 6 + 5 + 5 + 3)
    assert factors == sum(p.numel() for p in lora_model.parameters() if p.requires_grad)
    assert sum(p.numel() for p in trainable) == factors + 3 * 3  # alpha, gamma, beta per layer
    opt = torch.optim.AdamW(trainable, lr=0.1, weight_decay=0.5)
    x, y = torch.randn(16, 7), torch.randint(0, 3, (16,))
    before = wrapped(x).detach()
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(wrapped(x), y).backward()
        opt.step()
        controller.step()
    assert not torch.allclose(wrapped(x), before)
    for name, p in wrapped.named_parameters():
        if ".base." in f".{name}":
            key = name.replace(".base.", ".")
            assert not p.requires_grad
            torch.testing.assert_close(p, frozen[key], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"r": 5}, ValueError),
        ({"r": 4.0}, TypeError),
        ({"target_ratio": 0.2, "init_ratio": 0.3}, ValueError),
        ({"beta2": 0.0}, ValueError),
        ({"total_steps": 3, "init_warmup": 2, "final_warmup": 1}, ValueError),
        ({"targets": "0"}, TypeError),
    ],
)
def test_bad_arguments_raise(kwargs: dict, error: type[Exception]) -> None:
    with pytest.raises(error):
        snella(_model(), **({"total_steps": 10} | kwargs))
