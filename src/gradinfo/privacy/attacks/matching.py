"""The gradient-matching engine behind every optimisation-based inversion attack.

An optimisation attack ("OP-GIA" in Guo et al., "Exploring the Vulnerabilities of Federated Learning: A
Deep Dive into Gradient Inversion Attacks", 2025; paper 4) searches for a dummy batch whose gradient
matches the shared one:

    min_{x, y, m}  D(U(theta; x, y, m), g*) + alpha_TV TV(x) + alpha_m sum_l |(1 - mean m_l) - p_l|

- ``U`` is what the client computed: by default the batch-mean cross-entropy gradient
  ``grad_theta (1/B) sum_i CE(f(x_i; theta, m), y_i)`` (:func:`loss_gradient`); callers may pass any
  differentiable ``update_fn`` (e.g. unrolled local SGD steps) and a ``project`` map applied before the
  comparison (e.g. a known sketch).
- ``D`` is the cosine distance ``1 - <g, g*> / (||g|| ||g*||)`` over all parameters together (Geiping et
  al., "Inverting Gradients - How easy is it to break privacy in federated learning?", 2020) or the
  squared L2 distance ``sum ||g - g*||^2`` (Zhu et al., "Deep Leakage from Gradients", 2019).
- ``TV(x) = mean |x[..., :, 1:] - x[..., :, :-1]| + mean |x[..., 1:, :] - x[..., :-1, :]|``
  (anisotropic, per example, over the last two axes; the last axis only for 1-D inputs).
- ``y`` is either given (hard labels, e.g. from :func:`~gradinfo.privacy.attacks.label_recovery`) or
  optimised as soft labels ``softmax(l)`` with logits ``l`` (DLG).
- ``m`` are dropout masks, optimised when ``dropout_masks=True`` (the Dropout Inversion Attack, Scheliga
  et al., "Dropout is NOT All You Need to Prevent Gradient Leakage", 2023): every ``nn.Dropout`` with
  ``p > 0`` of a copy of the model becomes ``x * m / (1 - p)`` with ``m`` of the activation's shape,
  initialised from Bernoulli(1 - p) and clipped to [0, 1] after every step.

Restarts run together. The objective of one restart is written with ``torch.func`` (``functional_call``
for the forward, ``torch.func.grad`` for the parameter gradient) and ``vmap``-ed over restarts, so R
restarts cost one batched double-backward per iteration instead of R separate ones. The objective is
separable over restarts, so the gradient of the summed objective gives every restart its own gradient.
Adam is applied elementwise with a per-restart learning rate, so each restart follows exactly the path
it would follow alone. L-BFGS runs its restarts one after the other (a shared line search would couple
them).

The attacker runs the model in eval mode (dropout off, batch-norm running statistics): it does not know
the client's dropout masks unless it optimises them.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from gradinfo.core.types import Grads
from gradinfo.core.validate import one_of, positive, positive_int
from gradinfo.privacy.attacks._common import shape_arg
from gradinfo.privacy.threat import Reconstruction

Distance = Literal["cosine", "l2"]
UpdateFn = Callable[[nn.Module, Grads, dict[str, Tensor], Tensor, Tensor], Grads]
"""``update_fn(net, params, buffers, inputs [B, ...], targets) -> Grads``: the client's update as a
differentiable function of the parameters, written with ``torch.func`` so that it can be ``vmap``-ed."""

DISTANCES: tuple[str, ...] = ("cosine", "l2")
OPTIMIZERS: tuple[str, ...] = ("adam", "lbfgs")
SCHEDULES: tuple[str, ...] = ("multistep", "plateau", "none")
_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8
_COS_EPS = 1e-8


class _MaskDropout(nn.Module):
    """Dropout with an explicit mask buffer: ``x * mask / (1 - p)`` (the mask is passed in by the engine)."""

    def __init__(self, p: float, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.p = p
        self.register_buffer("mask", torch.ones(shape))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask / (1.0 - self.p)


@dataclass(frozen=True)
class MatchResult:
    """The outcome of :func:`match_gradients`.

    Attributes:
        inputs: the best restart's reconstruction ``[B, *input_shape]`` (its lowest-objective iterate).
        restart_inputs: every restart's reconstruction ``[R, B, *input_shape]``.
        labels: the best restart's soft labels ``[B, K]`` (probabilities) when labels were optimised,
            else the given hard labels ``[B]``.
        masks: the best restart's dropout masks ``{module name: [B, ...]}`` (empty unless optimised).
        losses: the lowest objective each restart reached ``[R]``.
        best: index of the chosen restart (lowest objective).
        trace: the chosen restart's objective at every iteration.
        seconds: wall time of the optimisation.
        latents: the best restart's latents ``[B, *latent_shape]`` when a ``decoder`` was searched, else None.
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


def loss_gradient(
    net: nn.Module, params: Grads, buffers: dict[str, Tensor], inputs: Tensor, targets: Tensor
) -> Grads:
    """The batch-mean cross-entropy gradient at ``params``, differentiable and ``vmap``-compatible.

    Args:
        net: the module whose forward is used (its own parameters are replaced by ``params``).
        params: ``{name: tensor}`` for the parameters to differentiate (the shared ones).
        buffers: every other tensor ``functional_call`` needs (frozen parameters, buffers, masks).
        inputs: ``[B, ...]``.
        targets: hard labels ``[B]`` (int) or class probabilities ``[B, K]``.

    Returns:
        ``{name: grad}`` with the shapes of ``params``; differentiable w.r.t. ``inputs``, ``targets`` and
        ``buffers`` (it is ``torch.func.grad`` of the loss).
    """

    def loss(p: Grads) -> Tensor:
        out = functional_call(net, {**p, **buffers}, (inputs,))  # [B, K]
        return F.cross_entropy(out, targets)

    return torch.func.grad(loss)(params)


def gradient_distance(
    grads: Grads, target: Grads, distance: Distance = "cosine", *, target_norm: float | None = None
) -> Tensor:
    """``1 - <g, g*> / (||g|| ||g*||)`` (cosine) or ``sum ||g - g*||^2`` (l2) over all entries of all keys.

    Args:
        grads: the dummy gradient ``{name: tensor}``.
        target: the shared gradient, same keys and shapes.
        distance: ``"cosine"`` or ``"l2"``.
        target_norm: ``||g*||`` if already known (an optimisation loop computes it once), else None.

    Returns:
        A scalar tensor.
    """
    if distance == "l2":
        return sum(((grads[n] - t) ** 2).sum() for n, t in target.items())
    dot = sum((grads[n] * t).sum() for n, t in target.items())
    norm_g = sum(grads[n].pow(2).sum() for n in target).sqrt()
    if target_norm is None:
        target_norm = _norm(target)
    return 1.0 - dot / (norm_g * target_norm + _COS_EPS)


def _norm(grads: Grads) -> float:
    """``||g||`` over all entries of all keys."""
    return math.sqrt(sum(float(t.pow(2).sum()) for t in grads.values()))


def total_variation(x: Tensor) -> Tensor:
    """Anisotropic total variation of one batch ``[B, ...]``: mean |horizontal diff| + mean |vertical diff|.

    The last axis gives the horizontal differences; the second-to-last the vertical ones when each
    example has at least two axes (images ``[C, H, W]``, ``[H, W]``), none for 1-D examples.
    """
    tv = (x[..., 1:] - x[..., :-1]).abs().mean()
    if x.dim() >= 3:
        tv = tv + (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    return tv


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


def _functional_copy(
    model: nn.Module, input_shape: tuple[int, ...], batch_size: int, dropout_masks: bool
) -> tuple[nn.Module, dict[str, float], dict[str, tuple[int, ...]], int]:
    """An eval-mode copy of ``model`` with masked dropouts; dropout rates, mask shapes and the class count."""
    net = copy.deepcopy(model).eval()
    shapes: dict[str, tuple[int, ...]] = {}
    rates: dict[str, float] = {}
    hooks = []
    if dropout_masks:
        for name, mod in net.named_modules():
            if isinstance(mod, nn.Dropout) and mod.p > 0:
                rates[name] = float(mod.p)

                def record(m: nn.Module, args: tuple[Tensor, ...], name: str = name) -> None:
                    shapes[name] = tuple(args[0].shape)

                hooks.append(mod.register_forward_pre_hook(record))
    with torch.no_grad():
        probe = torch.zeros(batch_size, *input_shape, dtype=_dtype(model), device=_device(model))
        try:
            out = net(probe)  # [B, K]
        except RuntimeError as err:
            raise ValueError(
                f"the model cannot take a batch of shape {tuple(probe.shape)} (batch_size, *input_shape): "
                f"{err}; pass the input_shape one example has"
            ) from err
    for hook in hooks:
        hook.remove()
    if out.dim() != 2:
        raise ValueError(f"the model must output class logits [B, K], got shape {tuple(out.shape)}")
    for name, p in rates.items():
        parent, _, child = name.rpartition(".")
        net.get_submodule(parent).register_module(child, _MaskDropout(p, shapes[name]))
    return net, rates, shapes, int(out.shape[1])


def _dtype(model: nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def match_gradients(
    model: nn.Module,
    target: Grads,
    *,
    input_shape: tuple[int, ...],
    batch_size: int,
    labels: Tensor | None,
    iterations: int,
    restarts: int = 1,
    distance: Distance = "cosine",
    tv: float = 0.0,
    optimizer: Literal["adam", "lbfgs"] = "adam",
    lr: float = 0.1,
    signed: bool = True,
    box: tuple[float, float] | None = (0.0, 1.0),
    schedule: Literal["multistep", "plateau", "none"] = "multistep",
    plateau_patience: int = 800,
    dropout_masks: bool = False,
    mask_reg: float = 1e-4,
    update_fn: UpdateFn | None = None,
    project: Callable[[Grads], Grads] | None = None,
    decoder: Callable[[Tensor], Tensor] | None = None,
    latent_shape: tuple[int, ...] | None = None,
    callback: Callable[[int, Tensor], None] | None = None,
    seed: int = 0,
) -> MatchResult:
    """Find inputs (and optionally soft labels and dropout masks) whose gradient matches ``target``.

    Restarts are optimised together (``vmap`` over a functional forward); the restart with the lowest
    objective wins, and within a restart its lowest-objective iterate is kept.

    Args:
        model: the round-start model (left untouched; a copy is run in eval mode).
        target: the shared gradient ``{name: param-shaped tensor}`` (keys a subset of the trainable
            parameters), or, with ``project``, whatever ``project`` maps a gradient to.
        input_shape: the shape of one example (public: the attacker knows the data format).
        batch_size: B, the number of examples behind the update.
        labels: hard labels ``[B]`` (int) to use as they are, or None to optimise soft labels
            ``softmax(l)``, logits ``l`` ``[B, K]`` initialised from N(0, 1).
        iterations: optimisation steps, >= 1.
        restarts: independent random initialisations run together, >= 1.
        distance: ``"cosine"`` (Inverting Gradients) or ``"l2"`` (DLG).
        tv: weight of the total-variation prior on the inputs, >= 0.
        optimizer: ``"adam"`` (elementwise, per-restart learning rate; restarts batched) or ``"lbfgs"``
            (``torch.optim.LBFGS``, one step per iteration with a strong-Wolfe line search of at most 20
            evaluations; restarts run one after the other, since a shared line search would couple them).
        lr: the learning rate, > 0.
        signed: Adam on the sign of the input gradient (Inverting Gradients); labels and masks get the
            plain gradient. Must be False with L-BFGS.
        box: ``(low, high)`` valid input range; inputs are initialised uniformly in it and clipped to it after
            every step. None: inputs from N(0, 1), unclipped.
        schedule: ``"multistep"`` (learning rate x0.1 at 3/8, 5/8 and 7/8 of ``iterations``),
            ``"plateau"`` (x0.1 for a restart whose best objective has not improved for
            ``plateau_patience`` steps) or ``"none"``. Adam only.
        plateau_patience: steps without improvement before a plateau decay, >= 1.
        dropout_masks: optimise one mask per ``nn.Dropout`` with ``p > 0`` (DIA).
        mask_reg: weight of ``sum_l |(1 - mean m_l) - p_l|``, >= 0.
        update_fn: the client's update as a function of the parameters (default :func:`loss_gradient`,
            one batch-mean cross-entropy gradient); see :data:`UpdateFn`.
        project: applied to the dummy update before the comparison (e.g. a known sketch), or None.
        decoder: optimise latents ``z`` ``[B, *latent_shape]`` (init N(0, 1), unboxed) and use
            ``decoder(z)`` ``[B, *input_shape]`` as the inputs (a generative prior); called on
            ``[R * B, *latent_shape]``.
        latent_shape: the shape of one latent; required with ``decoder``.
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
    target = _check_target(model, target, project)
    input_shape = shape_arg("input_shape", input_shape)
    batch_size = positive_int("batch_size", batch_size)
    iterations = positive_int("iterations", iterations)
    restarts = positive_int("restarts", restarts)
    one_of("distance", distance, DISTANCES)
    tv = positive("tv", tv, allow_zero=True)
    one_of("optimizer", optimizer, OPTIMIZERS)
    lr = positive("lr", lr)
    one_of("schedule", schedule, SCHEDULES)
    plateau_patience = positive_int("plateau_patience", plateau_patience)
    mask_reg = positive("mask_reg", mask_reg, allow_zero=True)
    positive_int("seed", seed, minimum=0)
    if optimizer == "lbfgs" and signed:
        raise ValueError("signed=True needs optimizer='adam'; L-BFGS uses the plain gradient (signed=False)")
    if box is not None and (len(box) != 2 or not float(box[0]) < float(box[1])):
        raise ValueError(f"box must be (low, high) with low < high, or None; got {box!r}")
    if callback is not None and not callable(callback):
        raise TypeError(
            f"callback must be callable as callback(iteration, inputs), got {type(callback).__name__}"
        )
    if decoder is not None:
        if not callable(decoder):
            raise TypeError(f"decoder must be callable as decoder(z) -> inputs, got {type(decoder).__name__}")
        latent_shape = shape_arg("latent_shape", latent_shape)
    _check_labels(labels, batch_size)

    start = time.perf_counter()
    dtype, device = _dtype(model), _device(model)
    net, rates, mask_shapes, classes = _functional_copy(model, input_shape, batch_size, dropout_masks)
    params = {
        n: p.detach()
        for n, p in net.named_parameters()
        if (n in target if project is None else p.requires_grad)
    }
    fixed = {n: p.detach() for n, p in net.named_parameters() if n not in params}
    fixed.update({n: b for n, b in net.named_buffers() if not n.endswith(".mask") or n[:-5] not in rates})
    update = update_fn or loss_gradient
    target_norm = _norm(target)  # once, not at every step
    if labels is not None and int(labels.max()) >= classes:
        raise ValueError(f"labels must be < the model's {classes} classes, got max {int(labels.max())}")

    gen = torch.Generator(device="cpu").manual_seed(seed)

    def draw(shape: tuple[int, ...], kind: str, p: float = 0.0) -> Tensor:
        if kind == "randn":
            t = torch.randn(shape, generator=gen, dtype=dtype)
        elif kind == "rand":
            t = torch.rand(shape, generator=gen, dtype=dtype)
        else:
            t = torch.bernoulli(torch.full(shape, 1.0 - p, dtype=dtype), generator=gen)
        return t.to(device)

    # the optimised variables, each with a leading restart axis
    if decoder is not None:
        z = draw((restarts, batch_size, *latent_shape), "randn")  # [R, B, *latent]
    elif box is None:
        z = draw((restarts, batch_size, *input_shape), "randn")  # [R, B, *input]
    else:
        z = box[0] + (box[1] - box[0]) * draw((restarts, batch_size, *input_shape), "rand")  # [R, B, *input]
    soft = None if labels is not None else draw((restarts, batch_size, classes), "randn")  # [R, B, K]
    masks = {n: draw((restarts, *mask_shapes[n]), "bernoulli", rates[n]) for n in rates}  # [R, B, ...]
    variables = [z] + ([soft] if soft is not None else []) + list(masks.values())

    def decode(z: Tensor) -> Tensor:  # [R', B, *latent] -> [R', B, *input]
        if decoder is None:
            return z
        x = decoder(z.reshape(z.shape[0] * batch_size, *latent_shape))
        return x.reshape(z.shape[0], batch_size, *input_shape)

    def one_restart(x: Tensor, y: Tensor, m: dict[str, Tensor]) -> Tensor:  # x [B, *input] -> []
        targets = y if labels is not None else y.softmax(-1)
        grads = update(net, params, {**fixed, **{f"{n}.mask": v for n, v in m.items()}}, x, targets)
        if project is not None:
            grads = project(grads)
        loss = gradient_distance(grads, target, distance, target_norm=target_norm)
        if tv > 0:
            loss = loss + tv * total_variation(x)
        for n, v in m.items():
            loss = loss + mask_reg * ((1.0 - v.mean()) - rates[n]).abs()
        return loss

    vmapped = vmap(one_restart, in_dims=(0, None if labels is not None else 0, 0))

    def batched(x: Tensor, y: Tensor, m: dict[str, Tensor]) -> Tensor:  # x [R', B, *input] -> [R']
        if x.shape[0] > 1:
            return vmapped(x, y, m)
        one_y = y if labels is not None else y[0]  # a single restart skips vmap's batching rules
        return one_restart(x[0], one_y, {n: v[0] for n, v in m.items()}).unsqueeze(0)

    def objective(values: list[Tensor]) -> Tensor:  # values like ``variables`` with R' restarts -> [R']
        y = labels if labels is not None else values[1]
        m = dict(zip(masks, values[len(values) - len(masks) :], strict=True))
        return batched(decode(values[0]), y, m)

    best_loss = torch.full((restarts,), math.inf, dtype=dtype, device=device)  # [R]
    best_values = [v.clone() for v in variables]  # like ``variables``: [R, ...] each
    since_best = torch.zeros(restarts, dtype=torch.long, device=device)  # [R]
    trace = torch.zeros(iterations + 1, restarts, dtype=dtype)  # [T + 1, R]

    def keep_best(it: int, rows: slice, loss: Tensor, values: list[Tensor]) -> None:
        """Record the objective ``loss`` [R'] of restarts ``rows`` at ``values``; keep each one's best."""
        better = loss < best_loss[rows]  # [R']
        since_best[rows] = torch.where(better, 0, since_best[rows] + 1)
        best_loss[rows] = torch.where(better, loss, best_loss[rows])
        for best_v, v in zip(best_values, values, strict=True):
            best_v[rows] = torch.where(better.view(-1, *([1] * (v.dim() - 1))), v, best_v[rows])
        trace[it, rows] = loss.cpu()

    def clip(values: list[Tensor]) -> None:
        with torch.no_grad():
            if box is not None and decoder is None:
                values[0].clamp_(box[0], box[1])
            for m in values[len(values) - len(masks) :]:
                m.clamp_(0.0, 1.0)

    if optimizer == "lbfgs":  # one restart after the other: L-BFGS's line search would couple them
        evaluations: list[Tensor] = []
        for r in range(restarts):
            rows = slice(r, r + 1)
            local = [v[rows].clone().requires_grad_(True) for v in variables]  # [1, ...] each
            opt = torch.optim.LBFGS(
                local, lr=lr, max_iter=1, max_eval=20, history_size=100, line_search_fn="strong_wolfe"
            )

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
                keep_best(it, rows, evaluations[0], before)  # the first evaluation is at the pre-step point
                clip(local)
                if callback is not None:
                    callback(it, decode(local[0].detach()))
            with torch.no_grad():
                keep_best(iterations, rows, objective(local), [v.detach() for v in local])
    else:
        for v in variables:
            v.requires_grad_(True)
        step_lr = torch.full((restarts,), lr, dtype=dtype, device=device)  # [R]
        shared_lr = schedule != "plateau"  # only the plateau schedule gives restarts their own step sizes
        milestones = {int(iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)}
        moments = [(torch.zeros_like(v), torch.zeros_like(v)) for v in variables]
        b1, b2 = _ADAM_BETAS
        everything = slice(0, restarts)
        for it in range(iterations):
            loss = objective(variables)  # [R]
            grads = torch.autograd.grad(loss.sum(), variables)
            keep_best(it, everything, loss.detach(), [v.detach() for v in variables])
            with torch.no_grad():
                correct1, correct2 = 1 - b1 ** (it + 1), math.sqrt(1 - b2 ** (it + 1))
                for k, (v, g, (m1, m2)) in enumerate(zip(variables, grads, moments, strict=True)):
                    if k == 0 and signed:
                        g = g.sign_()
                    m1.mul_(b1).add_(g, alpha=1 - b1)
                    m2.mul_(b2).addcmul_(g, g, value=1 - b2)
                    denom = m2.sqrt().div_(correct2).add_(_ADAM_EPS)
                    if shared_lr:  # every restart at the same step size: one fused update
                        v.addcdiv_(m1, denom, value=-float(step_lr[0]) / correct1)
                    else:
                        rate = step_lr.view(-1, *([1] * (v.dim() - 1))) / correct1
                        v.sub_(rate * m1 / denom)
            clip(variables)
            if callback is not None:
                callback(it, decode(variables[0].detach()))
            if schedule == "multistep" and it + 1 in milestones:
                step_lr.mul_(0.1)
            elif schedule == "plateau":
                decay = since_best >= plateau_patience  # [R]
                step_lr.copy_(torch.where(decay, step_lr * 0.1, step_lr))
                since_best.masked_fill_(decay, 0)
        with torch.no_grad():
            keep_best(iterations, everything, objective(variables), [v.detach() for v in variables])
    with torch.no_grad():
        best_z, best_soft = best_values[0], best_values[1] if soft is not None else None
        best_masks = dict(zip(masks, best_values[len(variables) - len(masks) :], strict=True))
        restart_inputs = decode(best_z).detach()  # [R, B, *input]
    best = int(best_loss.argmin())
    history = trace[:iterations, best].tolist()  # the objective before each step
    out_labels = best_soft[best].softmax(-1) if best_soft is not None else labels  # [B, K] or [B]
    return MatchResult(
        inputs=restart_inputs[best],
        restart_inputs=restart_inputs,
        labels=out_labels,
        masks={n: m[best] for n, m in best_masks.items()},
        losses=best_loss.detach().clone(),
        best=best,
        trace=history,
        seconds=time.perf_counter() - start,
        latents=best_z[best] if decoder is not None else None,
    )


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
