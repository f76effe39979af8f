"""diffGrad: Adam whose step is damped by how little the gradient changed.

Dubey et al., "diffGrad: An Optimization Method for Convolutional Neural Networks", 2019 (arXiv:1909.11015).
For every coordinate, with ``g_0 = 0`` and step ``t >= 1``:

    g_t  <- g_t + wd * theta                                   (L2 weight decay, as in the paper's code)
    m_t   = b1 m_{t-1} + (1 - b1) g_t,   v_t = b2 v_{t-1} + (1 - b2) g_t^2
    xi_t  = sigmoid(|g_{t-1} - g_t|)                           (the friction coefficient, in [0.5, 1))
    theta <- theta - lr * sqrt(1 - b2^t) / (1 - b1^t) * xi_t * m_t / (sqrt(v_t) + eps)

This is the *fixed* semantics: the original repository's first ``diffGrad.py`` aliases the stored previous
gradient to the live one, so ``|g_{t-1} - g_t|`` is always 0 and ``xi == 0.5``; ``diffGrad_v2.py`` stores a
copy, as here.

Comparison with ``pytorch_optimizer.DiffGrad`` (4.x): the same update when it runs with
``weight_decouple=False`` (its default ``True`` is AdamW-style decoupled decay instead of the paper's L2),
except that it adds ``1e-15`` inside the square root (``sqrt(v_t + 1e-15) + eps``); the trajectories agree to
``1e-6`` unless second moments fall below ~1e-12.

Two forms of the one update: :func:`diffgrad_transform` is pure (new state tensors every step), for
``chain``; :class:`DiffGrad` owns its state and updates it in place, as ``torch.optim.Adam`` does, with the
step applied by one ``addcdiv_``. The pure form allocates five parameter-sized tensors per step; run as the
optimizer it measured 1.02-1.10x pytorch-optimizer's step in benchmarks/optim.py (1-thread CPU, five
runs), in place 0.82-0.89x. The tests hold the two forms to each other.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from gradinfo.core.registry import Conformance, register
from gradinfo.core.types import Grads, State
from gradinfo.core.validate import check_betas, positive
from gradinfo.transform.base import GradTransform, check_keys
from gradinfo.transform.optimizer import TransformOptimizer


def diffgrad_transform(
    betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0
) -> GradTransform:
    """The diffGrad direction ``sqrt(1-b2^t)/(1-b1^t) * xi_t * m_t / (sqrt(v_t) + eps)``, a transform.

    The state is per parameter, ``{name: {"step", "exp_avg", "exp_avg_sq", "previous_grad"}}``; the previous
    gradient starts at zero. The output is a descent direction (``as_optimizer`` and :class:`DiffGrad`
    subtract ``lr`` times it).

    Args:
        betas: ``(b1, b2)``, each in ``[0, 1)``.
        eps: added to ``sqrt(v_t)``, ``>= 0``.
        weight_decay: L2 coefficient added to the gradient (``g + wd * theta``), ``>= 0``; needs ``params``.

    Returns:
        A ``GradTransform`` mapping ``{name: [*shape]}`` to ``{name: [*shape]}``.

    Raises:
        TypeError / ValueError: a bad ``betas``, ``eps`` or ``weight_decay``.
    """
    b1, b2 = check_betas(betas)
    eps = positive("eps", eps, allow_zero=True)
    weight_decay = positive("weight_decay", weight_decay, allow_zero=True)

    def init(params: Grads) -> State:
        return {name: _initial_state(p) for name, p in params.items()}

    def update(grads: Grads, state: State, params: Grads | None = None) -> tuple[Grads, State]:
        check_keys("diffgrad_transform", grads, state)
        if weight_decay and params is None:
            raise ValueError("diffgrad_transform with weight_decay > 0 needs params in update()")
        out: Grads = {}
        new_state: State = {}
        for name, g in grads.items():
            s = state[name]
            if weight_decay:
                g = g.add(params[name], alpha=weight_decay)  # [*shape]
            step = s["step"] + 1
            m = torch.lerp(s["exp_avg"], g, 1 - b1)  # [*shape]
            v = torch.mul(s["exp_avg_sq"], b2).addcmul_(g, g, value=1 - b2)  # [*shape]
            xi = torch.sub(s["previous_grad"], g).abs_().sigmoid_()  # [*shape] in [0.5, 1)
            step_size = math.sqrt(1 - b2**step) / (1 - b1**step)
            out[name] = xi.mul_(m).div_(v.sqrt().add_(eps)).mul_(step_size)
            new_state[name] = {"step": step, "exp_avg": m, "exp_avg_sq": v, "previous_grad": g.clone()}
        return out, new_state

    return GradTransform(init, update)


def _initial_state(param: Tensor) -> dict[str, Any]:
    """One parameter's state before step 1: step 0, zero moments, zero previous gradient (``g_0 = 0``)."""
    return {
        "step": 0,
        "exp_avg": torch.zeros_like(param),
        "exp_avg_sq": torch.zeros_like(param),
        "previous_grad": torch.zeros_like(param),
    }


@register(
    "diffgrad",
    family="optim",
    paper=25,
    summary="Adam with each step scaled by the friction sigmoid(|g_{t-1} - g_t|)",
    claim="gradinfo.claims.diffgrad:check",
    example="gradinfo.optim.diffgrad:CONFORMANCE",
)
class DiffGrad(TransformOptimizer):
    """diffGrad as a ``torch.optim.Optimizer`` (per-group ``lr``, ``betas``, ``eps``, ``weight_decay``).

    Implements "diffGrad: An Optimization Method for Convolutional Neural Networks" (2019): Adam's step
    times ``xi_t = sigmoid(|g_{t-1} - g_t|)`` (see the module docstring for the equation), with the previous
    gradient actually stored (the fixed semantics).

    Args:
        params: parameters or param-group dicts (a group may override any setting below).
        lr: learning rate, ``>= 0`` (paper default 1e-3).
        betas: ``(b1, b2)`` in ``[0, 1)``.
        eps: ``>= 0``.
        weight_decay: L2 coefficient added to the gradient, ``>= 0``.

    Raises:
        TypeError / ValueError: a bad setting (checked for every group when it is added).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    def group_transform(self, group: dict[str, Any]) -> GradTransform:
        return diffgrad_transform(group["betas"], group["eps"], group["weight_decay"])

    def step_group(self, group: dict[str, Any], live: Grads) -> None:
        """One in-place diffGrad update of ``live``, the parameters of ``group`` that have gradients."""
        (b1, b2), eps, lr, wd = group["betas"], group["eps"], group["lr"], group["weight_decay"]
        for p in live.values():
            g = p.grad.add(p, alpha=wd) if wd else p.grad  # [*shape]
            s = self.state[p]
            if not s:
                s.update(_initial_state(p))
            s["step"] += 1
            m, v, previous = s["exp_avg"], s["exp_avg_sq"], s["previous_grad"]
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            xi_m = torch.sub(previous, g).abs_().sigmoid_().mul_(m)  # [*shape] xi_t * m_t
            previous.copy_(g)
            step_size = lr * math.sqrt(1 - b2 ** s["step"]) / (1 - b1 ** s["step"])
            p.addcdiv_(xi_m, v.sqrt().add_(eps), value=-step_size)


def _conformance(seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    w = torch.nn.Parameter(torch.randn(4, 3, generator=gen))
    target = torch.randn(4, 3, generator=gen)
    opt = DiffGrad([w], lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        ((w - target) ** 2).sum().backward()
        opt.step()
    return w.detach().clone()


CONFORMANCE = Conformance(
    call=_conformance,
    bad_calls=(
        lambda: DiffGrad([torch.nn.Parameter(torch.zeros(2))], lr=-1.0),
        lambda: DiffGrad([torch.nn.Parameter(torch.zeros(2))], betas=(0.9, 1.0)),
        lambda: DiffGrad([torch.nn.Parameter(torch.zeros(2))], eps="1e-8"),
        lambda: diffgrad_transform(weight_decay=-0.1),
    ),
)
