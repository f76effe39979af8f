"""SNELLA: the kernelised merge, the masks and budgets, the sensitivity EMAs, frozen base weights."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from gradinfo.compress.snella import allocate_budgets, kernel_merge, lora, snella, topk_mask


def _model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(7, 6), nn.Tanh(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def test_kernel_merge_matches_float64_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2, 5, 3, generator=gen, dtype=torch.float64)  # [H, in, k]
    b = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64)  # [H, out, k]
    coeffs = torch.tensor([0.1, -0.1], dtype=torch.float64)
    expected = torch.zeros(4, 5, dtype=torch.float64)
    for j, i, h in itertools.product(range(4), range(5), range(2)):
        expected[j, i] += coeffs[h] * torch.sqrt(((a[h, i] - b[h, j]) ** 2).sum())
    torch.testing.assert_close(kernel_merge(a, b, coeffs), expected, rtol=1e-12, atol=1e-12)


def test_kernel_merge_is_high_rank_where_a_product_is_not() -> None:
    gen = torch.Generator().manual_seed(1)
    r = 4
    a = torch.randn(2, 32, r // 2, generator=gen, dtype=torch.float64)
    b = torch.randn(2, 32, r // 2, generator=gen, dtype=torch.float64)
    kappa = kernel_merge(a, b, torch.tensor([0.1, -0.1], dtype=torch.float64))
    lora_like = (
        torch.randn(32, r, generator=gen, dtype=torch.float64) @ torch.randn(r, 32, generator=gen).double()
    )
    assert int(torch.linalg.matrix_rank(kappa)) > 2 * r
    assert int(torch.linalg.matrix_rank(lora_like)) == r


def test_layer_update_is_masked_kernel_times_its_magnitude() -> None:
    model, _ = snella(_model(), total_steps=5, r=4, seed=3)
    layer = model[2]
    layer.keep = 11
    kappa = kernel_merge(layer.a.double(), layer.b.double(), layer.coeffs.double())  # [5, 6]
    threshold = kappa.abs().flatten().sort(descending=True).values[10]
    expected = torch.where(kappa.abs() >= threshold, kappa * kappa.abs(), 0.0)
    torch.testing.assert_close(layer.update().double(), expected, rtol=1e-5, atol=1e-7)
    x = torch.randn(4, 6)
    torch.testing.assert_close(layer(x), layer.base(x) + x @ layer.update().T, rtol=1e-5, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**16), st.integers(0, 30))
def test_topk_mask_keeps_the_largest_magnitudes(seed: int, keep: int) -> None:
    values = torch.randn(5, 6, generator=torch.Generator().manual_seed(seed))
    mask = topk_mask(values, keep)
    assert int(mask.sum()) == keep
    if 0 < keep < values.numel():
        assert values.abs()[mask].min() >= values.abs()[~mask].max()


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


def test_controller_ema_matches_manual_recursion_and_budgets() -> None:
    torch.manual_seed(0)
    model, controller = snella(_model(), total_steps=4, r=4, beta1=0.85, beta2=0.7, seed=0)
    x, y = torch.randn(16, 7), torch.randint(0, 3, (16,))
    layer = model[0]
    ema = torch.zeros_like(layer.a, dtype=torch.float64)
    unc = torch.zeros_like(ema)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    capacity = 7 * 6 + 6 * 5 + 5 * 3
    for step in range(4):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        s = (layer.a.double() * layer.a.grad.double()).abs()
        ema = 0.85 * ema + 0.15 * s
        unc = 0.7 * unc + 0.3 * (s - ema).abs()
        controller.step()
        opt.step()
        torch.testing.assert_close(controller.sensitivity["0.a"].double(), ema, rtol=1e-5, atol=1e-9)
        torch.testing.assert_close(controller.uncertainty["0.a"].double(), unc, rtol=1e-5, atol=1e-9)
        budgets = controller.budgets()
        assert sum(budgets.values()) == controller.volume(step)[0]
        for name, m in controller.layers.items():
            assert int((m.update() != 0).sum()) == budgets[name]
    assert controller.volume(3)[0] == int(int(0.7 * capacity) + (capacity - int(0.7 * capacity)) * 0.25**3)


def test_budgets_follow_the_layer_sensitivity_ranking() -> None:
    base = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8))
    _, controller = snella(base, total_steps=2, r=4, target_ratio=0.5, seed=0)
    for step in range(2):  # step 0 keeps the dense start, step 1 reallocates
        for scale, layer in zip((1.0, 3.0, 2.0), controller.layers.values(), strict=True):
            factor = scale * (1 + step)  # |theta * grad| = factor for every entry
            layer.a.grad = factor / layer.a.detach()
            layer.b.grad = factor / layer.b.detach()
        controller.step()
    budgets = controller.budgets()
    assert controller.scores is not None and controller.scores.argsort().tolist() == [0, 2, 1]
    assert budgets["1"] > budgets["2"] > budgets["0"]


def test_base_weights_stay_frozen_and_parameter_count_matches_lora() -> None:
    model = _model()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    lora_model = lora(copy.deepcopy(model), r=4)
    wrapped, controller = snella(model, total_steps=5, r=4, seed=1)
    trainable = [p for p in wrapped.parameters() if p.requires_grad]
    assert sum(p.numel() for p in trainable) == 4 * (7 + 6 + 6 + 5 + 5 + 3)
    assert sum(p.numel() for p in trainable) == sum(
        p.numel() for p in lora_model.parameters() if p.requires_grad
    )
    opt = torch.optim.AdamW(trainable, lr=0.1, weight_decay=0.5)
    x, y = torch.randn(16, 7), torch.randint(0, 3, (16,))
    before = wrapped(x).detach()
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(wrapped(x), y).backward()
        controller.step()
        opt.step()
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
