"""diffGrad against pytorch-optimizer's DiffGrad, a float64 loop of the paper's equations and torch's Adam."""

from __future__ import annotations

import copy
import math

import pytest
import pytorch_optimizer
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradinfo.optim import DiffGrad, diffgrad_transform
from gradinfo.transform import as_optimizer


def _model(dtype: torch.dtype) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).to(dtype)


def _trajectory(make, dtype: torch.dtype, steps: int = 100) -> list[torch.Tensor]:
    model = _model(dtype)
    opt = make(model.parameters())
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 5, generator=gen, dtype=dtype), torch.randn(32, 1, generator=gen, dtype=dtype)
    out = []
    for _ in range(steps):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
        out.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_matches_pytorch_optimizer_over_100_steps(dtype: torch.dtype, weight_decay: float) -> None:
    ours = _trajectory(lambda p: DiffGrad(p, lr=1e-2, weight_decay=weight_decay), dtype)
    theirs = _trajectory(
        lambda p: pytorch_optimizer.DiffGrad(p, lr=1e-2, weight_decay=weight_decay, weight_decouple=False),
        dtype,
    )
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-6), (torch.float64, 1e-14)])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_in_place_optimizer_follows_the_pure_transform(
    dtype: torch.dtype, atol: float, weight_decay: float
) -> None:
    ours = _trajectory(lambda p: DiffGrad(p, lr=1e-2, betas=(0.8, 0.99), weight_decay=weight_decay), dtype)
    transform = diffgrad_transform(betas=(0.8, 0.99), weight_decay=weight_decay)
    pure = _trajectory(lambda p: as_optimizer(transform, p, lr=1e-2), dtype)
    for a, b in zip(ours, pure, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=atol)


def test_matches_float64_loop_of_the_equations() -> None:
    b1, b2, eps, lr, wd = 0.8, 0.99, 1e-8, 0.05, 0.01
    gen = torch.Generator().manual_seed(3)
    grads = [torch.randn(6, generator=gen, dtype=torch.float64) for _ in range(30)]
    w = torch.nn.Parameter(torch.randn(6, generator=gen, dtype=torch.float64))
    ref = w.detach().clone()
    opt = DiffGrad([w], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    m = [0.0] * 6
    v = [0.0] * 6
    prev = [0.0] * 6
    for t, g in enumerate(grads, start=1):
        w.grad = g.clone()
        opt.step()
        for i in range(6):
            gi = g[i].item() + wd * ref[i].item()
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            xi = 1 / (1 + math.exp(-abs(prev[i] - gi)))
            step = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
            ref[i] -= step * xi * m[i] / (math.sqrt(v[i]) + eps)
            prev[i] = gi
        torch.testing.assert_close(w.detach(), ref, rtol=0, atol=1e-12)


def test_constant_gradient_gives_half_of_adam_after_the_first_step() -> None:
    """With g_t = g_{t-1}, xi = sigmoid(0) = 1/2: each step is half of Adam's (eps = 0 to compare)."""
    g = torch.tensor([0.3, -2.0, 5.0], dtype=torch.float64)
    a = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    d = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    adam = torch.optim.Adam([a], lr=0.1, eps=0.0)
    diff = DiffGrad([d], lr=0.1, eps=0.0)
    for t in range(5):
        a_before, d_before = a.detach().clone(), d.detach().clone()
        a.grad, d.grad = g.clone(), g.clone()
        adam.step()
        diff.step()
        ratio = (d.detach() - d_before) / (a.detach() - a_before)
        expected = torch.sigmoid(g.abs()) if t == 0 else torch.full_like(g, 0.5)  # g_0 = 0 before step 1
        torch.testing.assert_close(ratio, expected, rtol=1e-12, atol=0)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 6))
def test_friction_lies_in_half_to_one_of_adam(seed: int, steps: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    transform = diffgrad_transform(eps=0.0)
    params = {"w": torch.zeros(16, dtype=torch.float64)}
    state = transform.init(params)
    for _ in range(steps):
        g = torch.randn(16, generator=gen, dtype=torch.float64)
        out, new_state = transform.update({"w": g}, state, params)
        s = new_state["w"]
        t = s["step"]
        adam = math.sqrt(1 - 0.999**t) / (1 - 0.9**t) * s["exp_avg"] / s["exp_avg_sq"].sqrt()
        xi = out["w"] / adam
        assert bool(((xi >= 0.5) & (xi < 1)).all())
        assert state["w"]["step"] == t - 1  # the input state is left untouched
        state = new_state


def test_param_groups_use_their_own_settings() -> None:
    p1, p2 = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    q1, q2 = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    grouped = DiffGrad([{"params": [p1]}, {"params": [p2], "lr": 0.5, "betas": (0.5, 0.9)}], lr=0.1)
    single1 = DiffGrad([q1], lr=0.1)
    single2 = DiffGrad([q2], lr=0.5, betas=(0.5, 0.9))
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        g = torch.randn(3, generator=gen)
        p1.grad, p2.grad, q1.grad, q2.grad = g.clone(), g.clone(), g.clone(), g.clone()
        for opt in (grouped, single1, single2):
            opt.step()
    torch.testing.assert_close(p1.detach(), q1.detach(), rtol=0, atol=0)
    torch.testing.assert_close(p2.detach(), q2.detach(), rtol=0, atol=0)


def test_state_dict_round_trip_and_scheduler() -> None:
    def run(split: bool) -> torch.Tensor:
        w = torch.nn.Parameter(torch.linspace(-1, 1, 5))
        opt = DiffGrad([w], lr=0.1)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
        for i in range(10):
            if split and i == 5:
                saved = copy.deepcopy((opt.state_dict(), sched.state_dict()))
                w2 = torch.nn.Parameter(w.detach().clone())
                opt, w = DiffGrad([w2], lr=123.0), w2
                sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
                opt.load_state_dict(saved[0])
                sched.load_state_dict(saved[1])
            w.grad = torch.sin(3 * w.detach()) + i
            opt.step()
            sched.step()
        return w.detach()

    torch.testing.assert_close(run(True), run(False), rtol=0, atol=0)


def test_skips_parameters_without_gradients() -> None:
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = DiffGrad([a, b])
    a.grad = torch.ones(2)
    opt.step()
    assert torch.equal(b.detach(), torch.ones(2)) and len(opt.state[b]) == 0 and opt.state[a]["step"] == 1


def test_missing_gradients_skip_alike_in_place_and_through_as_optimizer() -> None:
    """The in-place step and the pure transform under as_optimizer follow one rule for .grad None."""
    gen = torch.Generator().manual_seed(5)
    ours = [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=torch.float64)) for s in [(3, 2), (4,)]]
    pure = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt = DiffGrad(ours, lr=0.05, weight_decay=0.1)
    ref = as_optimizer(diffgrad_transform(weight_decay=0.1), pure, lr=0.05)
    for step in range(9):
        for i, (a, b) in enumerate(zip(ours, pure, strict=True)):
            g = None if step % (2 + i) == 0 else torch.randn(a.shape, generator=gen, dtype=torch.float64)
            a.grad, b.grad = (None, None) if g is None else (g.clone(), g.clone())
        opt.step()
        ref.step()
    for i, (a, b) in enumerate(zip(ours, pure, strict=True)):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=1e-14)
        s, r = opt.state[a], ref.state["transform_state"][f"g0.p{i}"]
        assert s["step"] == r["step"] == [4, 6][i]
        torch.testing.assert_close(s["previous_grad"], r["previous_grad"], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"lr": -1.0}, ValueError),
        ({"betas": (0.9,)}, TypeError),
        ({"eps": -1.0}, ValueError),
        ({"weight_decay": "0"}, TypeError),
    ],
)
def test_bad_settings_raise(kwargs: dict, error: type) -> None:
    with pytest.raises(error):
        DiffGrad([torch.nn.Parameter(torch.zeros(2))], **kwargs)
