"""The gradient-matching engine behind every optimisation-based inversion attack.

An optimisation attack ("OP-GIA" in Guo et al., "Exploring the Vulnerabilities of Federated Learning: A
Deep Dive into Gradient Inversion Attacks", 2025; paper 4) searches for a dummy batch whose gradient
matches the shared one:

    min_{v, y}  D(P(U(theta; x(v), y, m)), g*) + alpha_TV TV(x(v)) + alpha_m sum_l |(1 - mean m_l) - p_l|

Each attack is a preset of values for this one function:

- ``v``, what is searched (:mod:`~gradinfo.privacy.attacks.search`): the inputs (``x = v``), the inputs
  and the dropout masks ``m`` (``v = (x, m)``), or a decoder's latents (``x = G(v)``).
- ``y`` is either given (hard labels, e.g. from :func:`~gradinfo.privacy.attacks.label_recovery`) or
  optimised as soft labels ``softmax(l)`` with logits ``l`` (DLG).
- ``U`` is what the client computed (:data:`~gradinfo.privacy.attacks.objective.UpdateFn`): by default
  the batch-mean cross-entropy gradient (:func:`~gradinfo.privacy.attacks.objective.loss_gradient`), or
  e.g. unrolled local SGD steps; ``P`` a known map applied before the comparison (e.g. a sketch), or none.
- ``D`` a distance (:func:`~gradinfo.privacy.attacks.objective.cosine_distance`,
  :func:`~gradinfo.privacy.attacks.objective.l2_distance`), ``TV`` the total-variation prior.
- the descent (:mod:`~gradinfo.privacy.attacks.optimizers`): Adam (signed or not, with a step-size
  schedule) or L-BFGS.

Restarts run together. The objective of one restart is written with ``torch.func`` (``functional_call``
for the forward, ``torch.func.grad`` for the parameter gradient) and ``vmap``-ed over restarts, so R
restarts cost one batched double-backward per iteration instead of R separate ones. The objective is
separable over restarts, so the gradient of the summed objective gives every restart its own gradient.
Adam is applied elementwise with a per-restart learning rate, so each restart follows exactly the path
it would follow alone. L-BFGS runs its restarts one after the other (a shared line search would couple
them).

The attacker runs the model in eval mode (dropout off, batch-norm running statistics): it does not know
the client's dropout masks unless it searches them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.func import vmap

from gradinfo.core.types import Grads
from gradinfo.core.validate import positive, positive_int
from gradinfo.privacy.attacks.objective import (
    Distance,
    UpdateFn,
    cosine_distance,
    loss_gradient,
    norm,
    total_variation,
)
from gradinfo.privacy.attacks.optimizers import ADAM_BETAS, ADAM_EPS, LBFGS, Adam
from gradinfo.privacy.attacks.search import DecoderLatents, Inputs, InputsAndDropoutMasks, Search, eval_copy
from gradinfo.privacy.threat import Reconstruction


@dataclass(frozen=True)
class MatchResult:
    """The outcome of :func:`match_gradients`.

    Attributes:
        inputs: the best restart's reconstruction ``[B, *input_shape]`` (its lowest-objective iterate).
        restart_inputs: every restart's reconstruction ``[R, B, *input_shape]``.
        labels: the best restart's soft labels ``[B, K]`` (probabilities) when labels were optimised,
            else the given hard labels ``[B]``.
        masks: the best restart's dropout masks ``{module name: [B, ...]}`` (empty unless searched).
        losses: the lowest objective each restart reached ``[R]``.
        best: index of the chosen restart (lowest objective).
        trace: the chosen restart's objective at every iteration.
        seconds: wall time of the optimisation.
        latents: the best restart's latents ``[B, *latent_shape]`` when decoder latents were searched.
    """

    inputs: Tensor
    restart_inputs: Tensor
    labels: Tensor
    masks: dict[str, Tensor] = field(default_factory=dict)
    losses: Tensor = field(default_factory=lambda: torch.empty(0))
    best: int = 0
    trace: list[float] = field(default_factory=list)
    seconds: float = 0.0
    latents: Tensor | None = None

    def reconstruction(self, labels: Tensor | None, **extras: object) -> Reconstruction:
        """The attack's result: the best restart's inputs, its trace and time, with ``restart_losses``,
        ``best_restart`` and the given ``extras`` in ``Reconstruction.extras``."""
        return Reconstruction(
            inputs=self.inputs,
            labels=labels,
            loss_trace=self.trace,
            seconds=self.seconds,
            extras={"restart_losses": self.losses, "best_restart": self.best, **extras},
        )


class _Best:
    """Each restart's lowest objective so far, its iterate, its steps since improving, and the trace."""

    def __init__(self, variables: list[Tensor], iterations: int) -> None:
        restarts, dtype, device = variables[0].shape[0], variables[0].dtype, variables[0].device
        self.loss = torch.full((restarts,), math.inf, dtype=dtype, device=device)  # [R]
        self.values = [v.clone() for v in variables]  # like ``variables``: [R, ...] each
        self.stalled = torch.zeros(restarts, dtype=torch.long, device=device)  # [R]
        self.trace = torch.zeros(iterations + 1, restarts, dtype=dtype)  # [T + 1, R]

    def record(self, it: int, rows: slice, loss: Tensor, values: list[Tensor]) -> None:
        """Record the objective ``loss`` [R'] of restarts ``rows`` at ``values``; keep each one's best."""
        better = loss < self.loss[rows]  # [R']
        self.stalled[rows] = torch.where(better, 0, self.stalled[rows] + 1)
        self.loss[rows] = torch.where(better, loss, self.loss[rows])
        for best_v, v in zip(self.values, values, strict=True):
            best_v[rows] = torch.where(better.view(-1, *([1] * (v.dim() - 1))), v, best_v[rows])
        self.trace[it, rows] = loss.cpu()


class _Problem(NamedTuple):
    """What a descent loop works on."""

    variables: list[Tensor]
    """The searched variables (soft-label logits, masks), each ``[R, ...]``."""
    objective: Callable[[list[Tensor]], Tensor]
    """``objective(values) -> [R']``: the objective of ``R'`` restarts at ``values`` (like ``variables``)."""
    best: _Best
    after_step: Callable[[int, list[Tensor]], None]
    """``after_step(iteration, values)``: the constraints and the callback, after every step."""
    iterations: int


def match_gradients(
    model: nn.Module,
    target: Grads,
    search: Search,
    *,
    batch_size: int,
    labels: Tensor | None,
    iterations: int,
    optimizer: Adam | LBFGS,
    restarts: int = 1,
    distance: Distance = cosine_distance,
    tv: float = 0.0,
    update_fn: UpdateFn = loss_gradient,
    project: Callable[[Grads], Grads] | None = None,
    callback: Callable[[int, Tensor], None] | None = None,
    seed: int = 0,
) -> MatchResult:
    """Find what ``search`` describes (and optionally soft labels) so that its gradient matches ``target``.

    Restarts are optimised together (``vmap`` over a functional forward); the restart with the lowest
    objective wins, and within a restart its lowest-objective iterate is kept.

    Args:
        model: the round-start model (left untouched; a copy is run in eval mode).
        target: the shared gradient ``{name: param-shaped tensor}`` (keys a subset of the trainable
            parameters), or, with ``project``, whatever ``project`` maps a gradient to.
        search: what is searched: :class:`~gradinfo.privacy.attacks.search.Inputs`,
            :class:`~gradinfo.privacy.attacks.search.InputsAndDropoutMasks` or
            :class:`~gradinfo.privacy.attacks.search.DecoderLatents`.
        batch_size: B, the number of examples behind the update.
        labels: hard labels ``[B]`` (int) to use as they are, or None to optimise soft labels
            ``softmax(l)``, logits ``l`` ``[B, K]`` initialised from N(0, 1).
        iterations: optimisation steps, >= 1.
        optimizer: :class:`~gradinfo.privacy.attacks.optimizers.Adam` or
            :class:`~gradinfo.privacy.attacks.optimizers.LBFGS`.
        restarts: independent random initialisations run together, >= 1.
        distance: ``D(grads, target, target_norm) -> scalar``, e.g.
            :func:`~gradinfo.privacy.attacks.objective.cosine_distance` (Inverting Gradients) or
            :func:`~gradinfo.privacy.attacks.objective.l2_distance` (DLG).
        tv: weight of the total-variation prior on the inputs, >= 0.
        update_fn: the client's update as a function of the parameters (default one batch-mean
            cross-entropy gradient); see :data:`~gradinfo.privacy.attacks.objective.UpdateFn`.
        project: applied to the dummy update before the comparison (e.g. a known sketch), or None.
        callback: called as ``callback(iteration, inputs)`` after every step with the current inputs
            ``[R, B, *input_shape]`` (detached; ``[1, B, ...]`` of the running restart with L-BFGS), e.g. to
            time how fast a benchmark reaches a given PSNR; None to skip.
        seed: seeds every random initialisation (a private generator; the global RNG is untouched).

    Returns:
        A :class:`MatchResult`.

    Raises:
        TypeError, ValueError: an argument of the wrong type or value, or a ``target`` that does not fit
            the model, before any optimisation.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(search, (Inputs, DecoderLatents)):
        raise TypeError(
            f"search must be Inputs, InputsAndDropoutMasks or DecoderLatents, got {type(search).__name__}"
        )
    target = _check_target(model, target, project)
    batch_size = positive_int("batch_size", batch_size)
    iterations = positive_int("iterations", iterations)
    restarts = positive_int("restarts", restarts)
    if not isinstance(optimizer, (Adam, LBFGS)):
        raise TypeError(f"optimizer must be Adam(...) or LBFGS(...), got {type(optimizer).__name__}")
    tv = positive("tv", tv, allow_zero=True)
    positive_int("seed", seed, minimum=0)
    if not callable(distance):
        raise TypeError(
            f"distance must be callable as distance(grads, target, target_norm), got {distance!r}"
        )
    if not callable(update_fn):
        raise TypeError(
            "update_fn must be callable as update_fn(net, params, buffers, inputs, targets), "
            f"got {update_fn!r}"
        )
    if project is not None and not callable(project):
        raise TypeError(f"project must be callable as project(grads) or None, got {type(project).__name__}")
    if callback is not None and not callable(callback):
        raise TypeError(
            f"callback must be callable as callback(iteration, inputs), got {type(callback).__name__}"
        )
    _check_labels(labels, batch_size)

    start = time.perf_counter()
    param = next(model.parameters())
    dtype, device = param.dtype, param.device
    net, rates, mask_shapes, classes = eval_copy(model, search, batch_size)
    params = {
        n: p.detach()
        for n, p in net.named_parameters()
        if (n in target if project is None else p.requires_grad)
    }
    fixed = {n: p.detach() for n, p in net.named_parameters() if n not in params}
    fixed.update({n: b for n, b in net.named_buffers() if not n.endswith(".mask") or n[:-5] not in rates})
    target_norm = norm(target)  # once, not at every step
    if labels is not None and int(labels.max()) >= classes:
        raise ValueError(f"labels must be < the model's {classes} classes, got max {int(labels.max())}")
    mask_reg = search.mask_reg if isinstance(search, InputsAndDropoutMasks) else 0.0

    # the optimised variables, each with a leading restart axis, drawn in this order from one generator
    gen = torch.Generator(device="cpu").manual_seed(seed)
    z = search.initial(gen, restarts, batch_size, dtype, device)  # [R, B, *searched]
    soft = None  # or the label logits [R, B, K]
    if labels is None:
        soft = _draw(gen, (restarts, batch_size, classes), dtype, device)
    masks = {n: _draw(gen, (restarts, *mask_shapes[n]), dtype, device, 1.0 - p) for n, p in rates.items()}
    variables = [z] + ([soft] if soft is not None else []) + list(masks.values())

    def one_restart(x: Tensor, y: Tensor, m: dict[str, Tensor]) -> Tensor:  # x [B, *input] -> []
        targets = y if labels is not None else y.softmax(-1)
        grads = update_fn(net, params, {**fixed, **{f"{n}.mask": v for n, v in m.items()}}, x, targets)
        if project is not None:
            grads = project(grads)
        loss = distance(grads, target, target_norm)
        if tv > 0:
            loss = loss + tv * total_variation(x)
        for n, v in m.items():
            loss = loss + mask_reg * ((1.0 - v.mean()) - rates[n]).abs()
        return loss

    vmapped = vmap(one_restart, in_dims=(0, None if labels is not None else 0, 0))

    def objective(values: list[Tensor]) -> Tensor:  # values like ``variables`` with R' restarts -> [R']
        x = search.inputs(values[0])  # [R', B, *input]
        y = labels if labels is not None else values[1]
        m = dict(zip(masks, values[len(values) - len(masks) :], strict=True))
        if x.shape[0] > 1:
            return vmapped(x, y, m)
        one_y = y if labels is not None else y[0]  # a single restart skips vmap's batching rules
        return one_restart(x[0], one_y, {n: v[0] for n, v in m.items()}).unsqueeze(0)

    def after_step(it: int, values: list[Tensor]) -> None:
        """Clip the searched variables and the masks; report the inputs to ``callback``."""
        with torch.no_grad():
            search.clip_(values[0])
            for m in values[len(values) - len(masks) :]:
                m.clamp_(0.0, 1.0)
        if callback is not None:
            callback(it, search.inputs(values[0].detach()))

    best = _Best(variables, iterations)
    problem = _Problem(variables, objective, best, after_step, iterations)
    if isinstance(optimizer, LBFGS):
        _descend_lbfgs(optimizer, problem)
    else:
        _descend_adam(optimizer, problem)
    with torch.no_grad():
        restart_inputs = search.inputs(best.values[0]).detach()  # [R, B, *input]
    chosen = int(best.loss.argmin())
    out_labels = best.values[1][chosen].softmax(-1) if soft is not None else labels  # [B, K] or [B]
    return MatchResult(
        inputs=restart_inputs[chosen],
        restart_inputs=restart_inputs,
        labels=out_labels,
        masks={n: m[chosen] for n, m in zip(masks, best.values[len(variables) - len(masks) :], strict=True)},
        losses=best.loss.detach().clone(),
        best=chosen,
        trace=best.trace[:iterations, chosen].tolist(),  # the objective before each step
        seconds=time.perf_counter() - start,
        latents=best.values[0][chosen] if isinstance(search, DecoderLatents) else None,
    )


def _draw(
    gen: torch.Generator,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
    p: float | None = None,
) -> Tensor:
    """N(0, 1), or Bernoulli(p) given ``p``, of ``shape``: drawn on the CPU by ``gen``, sent to ``device``."""
    if p is None:
        return torch.randn(shape, generator=gen, dtype=dtype).to(device)
    return torch.bernoulli(torch.full(shape, p, dtype=dtype), generator=gen).to(device)


def _descend_lbfgs(optimizer: LBFGS, problem: _Problem) -> None:
    """L-BFGS, one restart after the other (its line search would couple them), recording the best."""
    variables, objective, best, after_step, iterations = problem
    evaluations: list[Tensor] = []
    for r in range(variables[0].shape[0]):
        rows = slice(r, r + 1)
        local = [v[rows].clone().requires_grad_(True) for v in variables]  # [1, ...] each
        opt = optimizer.build(local)

        def closure(local: list[Tensor] = local, opt: torch.optim.LBFGS = opt) -> Tensor:
            opt.zero_grad()
            loss = objective(local)  # [1]
            loss.sum().backward()
            evaluations.append(loss.detach())
            return loss.sum()

        for it in range(iterations):
            evaluations.clear()
            before = [v.detach().clone() for v in local]
            opt.step(closure)
            best.record(it, rows, evaluations[0], before)  # the first evaluation is at the pre-step point
            after_step(it, local)
        with torch.no_grad():
            best.record(iterations, rows, objective(local), [v.detach() for v in local])


def _descend_adam(optimizer: Adam, problem: _Problem) -> None:
    """Elementwise Adam on all restarts at once, each with its own step size, recording the best."""
    variables, objective, best, after_step, iterations = problem
    restarts = variables[0].shape[0]
    for v in variables:
        v.requires_grad_(True)
    schedule = optimizer.schedule
    step_lr = torch.full((restarts,), optimizer.lr, dtype=best.loss.dtype, device=best.loss.device)  # [R]
    moments = [(torch.zeros_like(v), torch.zeros_like(v)) for v in variables]
    b1, b2 = ADAM_BETAS
    everything = slice(0, restarts)
    for it in range(iterations):
        loss = objective(variables)  # [R]
        grads = torch.autograd.grad(loss.sum(), variables)
        best.record(it, everything, loss.detach(), [v.detach() for v in variables])
        with torch.no_grad():
            correct1, correct2 = 1 - b1 ** (it + 1), math.sqrt(1 - b2 ** (it + 1))
            for k, (v, g, (m1, m2)) in enumerate(zip(variables, grads, moments, strict=True)):
                if k == 0 and optimizer.signed:
                    g = g.sign_()
                m1.mul_(b1).add_(g, alpha=1 - b1)
                m2.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = m2.sqrt().div_(correct2).add_(ADAM_EPS)
                if schedule.per_restart:
                    rate = step_lr.view(-1, *([1] * (v.dim() - 1))) / correct1
                    v.sub_(rate * m1 / denom)
                else:  # every restart at the same step size: one fused update
                    v.addcdiv_(m1, denom, value=-float(step_lr[0]) / correct1)
        after_step(it, variables)
        cut = torch.as_tensor(schedule(it, iterations, best.stalled), device=step_lr.device)  # [] or [R]
        step_lr.copy_(torch.where(cut, step_lr * schedule.gamma, step_lr))
        best.stalled.masked_fill_(cut, 0)
    with torch.no_grad():
        best.record(iterations, everything, objective(variables), [v.detach() for v in variables])


def _check_target(model: nn.Module, target: Grads, project: Callable[[Grads], Grads] | None) -> Grads:
    if not isinstance(target, dict) or not target:
        raise TypeError(f"target must be a non-empty dict {{name: Tensor}}, got {type(target).__name__}")
    if project is not None:
        return target
    params = dict(model.named_parameters())
    for n, t in target.items():
        if n not in params:
            raise ValueError(
                f"target has gradient {n!r}, which is not a parameter of the model; "
                f"its parameters are {', '.join(params)}"
            )
        if not isinstance(t, Tensor) or t.shape != params[n].shape:
            got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(
                f"target[{n!r}] must have the parameter's shape {tuple(params[n].shape)}, got {got}"
            )
    return target


def _check_labels(labels: object, batch_size: int) -> None:
    if labels is None:
        return
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be an int tensor [batch_size] or None, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.shape != (batch_size,):
        raise ValueError(
            f"labels must be an int tensor [batch_size={batch_size}] or None, "
            f"got {labels.dtype} of shape {tuple(labels.shape)}"
        )
