"""The matching engine against a naive float64 loop: one restart at a time, autograd with create_graph."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradinfo.privacy.attacks.matching import match_gradients
from gradinfo.privacy.attacks.objective import l2_distance, loss_gradient, total_variation
from gradinfo.privacy.attacks.optimizers import LBFGS, Adam, MultiStep
from gradinfo.privacy.attacks.search import Inputs, InputsAndDropoutMasks, eval_copy

SHAPE = (2, 6, 6)
CLASSES = 3


def _model(dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [
        nn.Conv2d(2, 3, 3, padding=1),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(3 * 36, 8),
        nn.Tanh(),
    ]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(8, CLASSES))
    return nn.Sequential(*layers).double().train()


def _target(model: nn.Module, batch: int, mask: Tensor | None = None) -> tuple[dict[str, Tensor], Tensor]:
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(batch, *SHAPE, generator=gen, dtype=torch.float64)  # [B, 2, 6, 6]
    y = torch.randint(0, CLASSES, (batch,), generator=gen)  # [B]
    net = _with_mask(model, mask)
    loss = F.cross_entropy(net(x), y)
    grads = torch.autograd.grad(loss, list(net.parameters()))
    return {n: g.detach() for (n, _), g in zip(net.named_parameters(), grads, strict=True)}, y


def _with_mask(model: nn.Module, mask: Tensor | None) -> nn.Module:
    """An eval copy whose dropout outputs ``input * mask / (1 - p)`` (a hook, independent of the engine)."""
    net = copy.deepcopy(model).eval()
    for mod in net.modules():
        if isinstance(mod, nn.Dropout) and mask is not None:
            mod.register_forward_hook(lambda m, args, out, mask=mask: args[0] * mask / (1 - m.p))
    return net


def _tv(x: Tensor) -> Tensor:
    dx = sum((x[..., j + 1] - x[..., j]).abs().sum() for j in range(x.shape[-1] - 1))
    dy = sum((x[..., i + 1, :] - x[..., i, :]).abs().sum() for i in range(x.shape[-2] - 1))
    n_dx = x[..., 1:].numel()
    n_dy = x[..., 1:, :].numel()
    return dx / n_dx + dy / n_dy


def _reference(
    model: nn.Module,
    target: dict[str, Tensor],
    labels: Tensor,
    *,
    restarts: int,
    iterations: int,
    tv: float,
    lr: float,
    seed: int,
    p: float = 0.0,
    mask_reg: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Signed Adam, one restart after the other, with the classic closure (autograd, create_graph=True)."""
    batch = labels.shape[0]
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.rand(restarts, batch, *SHAPE, generator=gen, dtype=torch.float64)  # [R, B, 2, 6, 6]
    m0 = (
        torch.bernoulli(torch.full((restarts, batch, 8), 1 - p, dtype=torch.float64), generator=gen)
        if p
        else None
    )
    names = list(target)
    outs, losses = [], []
    for r in range(restarts):
        x = x0[r].clone().requires_grad_(True)
        m = m0[r].clone().requires_grad_(True) if m0 is not None else None
        variables = [x] + ([m] if m is not None else [])
        opt = torch.optim.Adam(variables, lr=lr, betas=(0.9, 0.999), eps=1e-8)
        sched = torch.optim.lr_scheduler.MultiStepLR(
            opt, [int(iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)], gamma=0.1
        )
        best, best_x = float("inf"), x.detach().clone()
        for _ in range(iterations + 1):
            opt.zero_grad()
            net = _with_mask(model, m)
            params = dict(net.named_parameters())
            grads = torch.autograd.grad(
                F.cross_entropy(net(x), labels), [params[n] for n in names], create_graph=True
            )
            dot = sum((g * target[n]).sum() for g, n in zip(grads, names, strict=True))
            norm = (
                sum(g.pow(2).sum() for g in grads).sqrt()
                * sum(t.pow(2).sum() for t in target.values()).sqrt()
            )
            loss = 1 - dot / (norm + 1e-8) + tv * _tv(x)
            if m is not None:
                loss = loss + mask_reg * ((1 - m.mean()) - p).abs()
            if loss.item() < best:
                best, best_x = loss.item(), x.detach().clone()
            loss.backward()
            x.grad.sign_()
            opt.step()
            sched.step()
            with torch.no_grad():
                x.clamp_(0, 1)
                if m is not None:
                    m.clamp_(0, 1)
        outs.append(best_x)
        losses.append(best)
    return torch.stack(outs), torch.tensor(losses, dtype=torch.float64)


def test_tv_equals_the_naive_loop() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 5, 4, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(total_variation(x), _tv(x))
    flat = torch.rand(3, 7, generator=gen, dtype=torch.float64)  # 1-D examples: horizontal only
    want = sum(abs(float(flat[b, j + 1] - flat[b, j])) for b in range(3) for j in range(6)) / 18
    assert float(total_variation(flat)) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("batch", [1, 2])
def test_batched_restarts_equal_one_at_a_time_loop(batch: int) -> None:
    model = _model()
    target, labels = _target(model, batch)
    got = match_gradients(
        model,
        target,
        Inputs(SHAPE),
        batch_size=batch,
        labels=labels,
        iterations=8,
        optimizer=Adam(0.05, signed=True, schedule=MultiStep()),
        restarts=3,
        tv=1e-2,
        seed=4,
    )
    want_x, want_loss = _reference(model, target, labels, restarts=3, iterations=8, tv=1e-2, lr=0.05, seed=4)
    torch.testing.assert_close(got.restart_inputs, want_x, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(got.losses, want_loss, rtol=1e-9, atol=1e-9)
    assert got.best == int(want_loss.argmin())
    assert len(got.trace) == 8


def test_dropout_masks_follow_the_reference() -> None:
    model = _model(dropout=0.25)
    true_mask = torch.bernoulli(
        torch.full((1, 8), 0.75, dtype=torch.float64), generator=torch.Generator().manual_seed(2)
    )
    target, labels = _target(model, 1, true_mask)
    got = match_gradients(
        model,
        target,
        InputsAndDropoutMasks(SHAPE, mask_reg=1e-2),
        batch_size=1,
        labels=labels,
        iterations=6,
        optimizer=Adam(0.05, signed=True, schedule=MultiStep()),
        restarts=2,
        tv=1e-3,
        seed=3,
    )
    want_x, want_loss = _reference(
        model, target, labels, restarts=2, iterations=6, tv=1e-3, lr=0.05, seed=3, p=0.25, mask_reg=1e-2
    )
    torch.testing.assert_close(got.restart_inputs, want_x, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(got.losses, want_loss, rtol=1e-9, atol=1e-9)
    (mask,) = got.masks.values()
    assert mask.shape == (1, 8) and bool(((mask >= 0) & (mask <= 1)).all())


def test_true_mask_gives_zero_distance() -> None:
    """With the client's own mask, the masked forward reproduces its gradient exactly."""
    model = _model(dropout=0.5)
    mask = torch.tensor([[1.0, 0, 1, 1, 0, 0, 1, 0]], dtype=torch.float64)
    target, labels = _target(model, 1, mask)
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(1, *SHAPE, generator=gen, dtype=torch.float64)
    net, rates, shapes, _ = eval_copy(model, InputsAndDropoutMasks(SHAPE), 1)
    assert list(rates.values()) == [0.5] and list(shapes.values()) == [(1, 8)]
    params = {n: p.detach() for n, p in net.named_parameters()}
    (name,) = rates
    grads = loss_gradient(net, params, {f"{name}.mask": mask}, x, labels)
    for n, t in target.items():
        torch.testing.assert_close(grads[n], t, rtol=1e-10, atol=1e-12)


def test_soft_labels_and_lbfgs_recover_a_tanh_mlp_example() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 4)).double()
    x = torch.rand(1, 12, dtype=torch.float64)
    y = torch.tensor([2])
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    target = {n: g for (n, _), g in zip(model.named_parameters(), grads, strict=True)}
    got = match_gradients(
        model,
        target,
        Inputs((12,), box=None),
        batch_size=1,
        labels=None,
        iterations=60,
        optimizer=LBFGS(1.0),
        distance=l2_distance,
        seed=0,
    )
    torch.testing.assert_close(got.inputs, x, rtol=0, atol=1e-4)
    assert int(got.labels.argmax()) == 2
    assert got.trace[-1] < got.trace[0]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"iterations": 0}, ValueError),
        ({"restarts": 0}, ValueError),
        ({"distance": "l1"}, TypeError),
        ({"optimizer": "lbfgs"}, TypeError),  # a value, Adam(...) or LBFGS(...), not a name
        ({"search": SHAPE}, TypeError),  # a value, Inputs(...), not a shape
        ({"tv": -1.0}, ValueError),
        ({"search": Inputs((2, 6))}, ValueError),
        ({"labels": torch.tensor([0.0])}, ValueError),
        ({"labels": torch.tensor([7])}, ValueError),
        ({"target": {"nope": torch.zeros(1)}}, ValueError),
        ({"update_fn": None}, TypeError),
        ({"project": 3}, TypeError),
        ({"callback": 3}, TypeError),
    ],
)
def test_bad_arguments_raise_before_work(kwargs: dict, error: type) -> None:
    model = _model()
    target, labels = _target(model, 1)
    args = {
        "target": target,
        "search": Inputs(SHAPE),
        "batch_size": 1,
        "labels": labels,
        "iterations": 3,
        "optimizer": Adam(),
    }
    args.update(kwargs)
    with pytest.raises(error):
        match_gradients(model, **args)
