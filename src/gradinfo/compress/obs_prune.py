"""Unstructured optimal-brain-surgeon pruning with M-FAC's matrix-free inverse Fisher, one-shot or gradual.

With the damped empirical Fisher of ``m`` per-example gradients, ``F = lambda I + (1/m) sum_i g_i g_i^T``
(over the weights still present), removing weight ``j`` and letting the others move optimally under the
quadratic model ``L(w + dw) - L(w) ~ (1/2) dw^T F dw`` (Hassibi and Stork's optimal brain surgeon) costs

    rho_j = w_j^2 / (2 [F^-1]_jj)                         (OBS saliency)

with the weight update

    dw = -(w_j / [F^-1]_jj) F^-1 e_j                      (OBS update; it sets w_j to 0).

``[F^-1]_jj`` and ``F^-1 v`` come from the static M-FAC algorithm (:class:`gradinfo.capture.InverseFisher`,
``O(d m^2)`` precompute, then ``O(d m)`` per product), exact for the full matrix or its block-diagonal part
(``block_size``). For many weights at once this module follows the official M-FAC pruner
(``IST-DASLab/M-FAC``, ``main_prun.py``): rank the remaining weights by ``rho``, drop the ``k`` lowest set
``Q``, apply the sum of their single-weight updates in one IHVP,

    w <- w + F^-1 v,   v_j = -w_j / [F^-1]_jj for j in Q (0 elsewhere),   then w_Q <- 0,

which ignores the interactions between the dropped weights (blocks keep them small). Gradual pruning
(``steps > 1``) reaches the target in several such steps along a schedule, recomputing the gradients at the
current weights each time (the official code's "recomputations" between two sparsity levels), with an
optional ``retrain`` callback after each step.

Differences from the official code: the gradients ``g_i`` are per-example gradients
(:func:`gradinfo.capture.per_example_grads`, the true empirical Fisher) of a fixed set of ``m`` calibration
examples, not mini-batch gradients of freshly drawn batches; precision is float64 by default.

References:
    Frantar, Kurtic, Alistarh. M-FAC: Efficient Matrix-Free Approximations of Second-Order Information
    (2021), NeurIPS, arXiv:2107.03356. Hassibi, Stork. Second order derivatives for network pruning:
    Optimal Brain Surgeon (1993). Zhu, Gupta. To prune, or not to prune (2017; the cubic schedule).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from gradinfo.capture import InverseFisher, per_example_grads
from gradinfo.core.registry import Conformance, register
from gradinfo.core.types import LossFn
from gradinfo.core.validate import fraction, one_of, positive, positive_int

__all__ = ["SCHEDULES", "OBSReport", "obs_prune", "obs_step", "sparsity_schedule"]

SCHEDULES: tuple[str, ...] = ("cubic", "linear", "geometric")
"""How gradual pruning spaces its targets: ``s (1 - (1 - t/T)^3)``, ``s t/T``, ``1 - (1 - s)^(t/T)``."""


@dataclass(frozen=True)
class OBSReport:
    """What :func:`obs_prune` did.

    Attributes:
        masks: ``{name: bool tensor shaped like the parameter}``, True where the weight was kept.
        sparsity: the fraction of the pruned parameters' entries now zeroed by pruning.
        schedule: the target sparsity after each step.
        saliency: per step, the summed OBS saliency ``sum_{j in Q} rho_j`` of the weights dropped then
            (the quadratic model's estimate of the loss increase, each weight taken alone).
        num_grads: the gradients ``m`` behind each Fisher.
    """

    masks: dict[str, Tensor]
    sparsity: float
    schedule: tuple[float, ...]
    saliency: tuple[float, ...]
    num_grads: int


def sparsity_schedule(sparsity: float, steps: int, schedule: str = "cubic") -> tuple[float, ...]:
    """The target sparsity after each of ``steps`` pruning steps, ending at ``sparsity``.

    Args:
        sparsity: final fraction of weights removed, in ``[0, 1)``.
        steps: number of pruning steps ``T >= 1``.
        schedule: ``"cubic"`` (Zhu and Gupta: ``s (1 - (1 - t/T)^3)``, fast early), ``"linear"``
            (``s t / T``) or ``"geometric"`` (the density shrinks by a constant factor,
            ``1 - (1 - s)^(t/T)``, the official M-FAC recomputation schedule).

    Returns:
        ``T`` non-decreasing targets ``s_1 .. s_T = sparsity``.

    Raises:
        TypeError / ValueError: ``sparsity`` outside ``[0, 1)``, ``steps < 1``, unknown ``schedule``.
    """
    if fraction("sparsity", sparsity, closed=True) == 1.0:
        raise ValueError(f"sparsity must lie in [0, 1), got {sparsity!r}; 1 would remove every weight")
    positive_int("steps", steps)
    one_of("schedule", schedule, SCHEDULES)
    fractions = [t / steps for t in range(1, steps + 1)]
    if schedule == "cubic":
        out = [sparsity * (1 - (1 - f) ** 3) for f in fractions]
    elif schedule == "linear":
        out = [sparsity * f for f in fractions]
    else:
        out = [1 - (1 - sparsity) ** f for f in fractions]
    out[-1] = float(sparsity)
    return tuple(out)


def obs_step(weights: Tensor, fisher: InverseFisher, count: int) -> tuple[Tensor, Tensor, Tensor]:
    """Drop the ``count`` weights of lowest OBS saliency and update the rest (the official M-FAC procedure).

    Args:
        weights: ``[d]`` the remaining weights, in the order of the gradients behind ``fisher``.
        fisher: the inverse of ``lambda I + (1/m) sum_i g_i g_i^T`` over those ``d`` weights.
        count: how many to drop, ``0 <= count <= d``.

    Returns:
        ``(new_weights [d], dropped [count] indices, saliency [d])``: ``saliency_j = w_j^2 / (2 [F^-1]_jj)``;
        ``new_weights = w + F^-1 v`` with ``v_j = -w_j / [F^-1]_jj`` on the dropped set and 0 elsewhere,
        then exactly 0 on the dropped set. Everything in ``fisher``'s dtype.

    Raises:
        ValueError: ``weights`` is not ``[d]`` for ``fisher``'s ``d``, or ``count`` outside ``[0, d]``.
    """
    if weights.dim() != 1 or weights.shape[0] != fisher.dim:
        raise ValueError(f"weights must be [{fisher.dim}] (the Fisher's d), got {tuple(weights.shape)}")
    positive_int("count", count, minimum=0)
    if count > fisher.dim:
        raise ValueError(f"count must be <= d = {fisher.dim}, got {count}")
    w = weights.detach().to(fisher.dtype)  # [d]
    inv_diag = fisher.diag()  # [d]
    saliency = w.square() / (2 * inv_diag)  # [d]
    dropped = torch.argsort(saliency, stable=True)[:count]  # [count]
    v = torch.zeros_like(w)  # [d]
    v[dropped] = -w[dropped] / inv_diag[dropped]
    new = w + fisher.ihvp(v)  # [d]
    new[dropped] = 0
    return new, dropped, saliency


def _examples(batches: Any, m: int) -> tuple[Tensor, Tensor]:
    """The first ``m`` examples of ``batches`` (an iterable of ``(inputs, targets)`` pairs), concatenated."""
    if batches is None or isinstance(batches, (Tensor, str)) or not isinstance(batches, Iterable):
        raise TypeError(
            f"batches must be an iterable of (inputs, targets) tensor pairs, got {type(batches).__name__}"
        )
    xs, ys, have = [], [], 0
    for i, item in enumerate(batches):
        if (
            not isinstance(item, (tuple, list))
            or len(item) != 2
            or not all(isinstance(t, Tensor) for t in item)
        ):
            raise TypeError(f"batches[{i}] must be an (inputs, targets) pair of tensors, got {item!r:.80}")
        x, y = item
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"batches[{i}]: inputs and targets differ in batch size, {x.shape[0]} vs {y.shape[0]}"
            )
        xs.append(x[: m - have])
        ys.append(y[: m - have])
        have += xs[-1].shape[0]
        if have >= m:
            return torch.cat(xs), torch.cat(ys)
    raise ValueError(f"batches hold {have} examples, fewer than m = {m}; pass more data or lower m")


def _targets(model: nn.Module, params: Iterable[str] | None) -> dict[str, nn.Parameter]:
    """The parameters to prune: ``params`` by name, or every trainable weight with >= 2 dims."""
    named = dict(model.named_parameters())
    if params is None:
        chosen = {n: p for n, p in named.items() if p.requires_grad and p.dim() >= 2}
    else:
        if isinstance(params, str) or not isinstance(params, Iterable):
            raise TypeError(f"params must be an iterable of parameter names, got {type(params).__name__}")
        wanted = list(params)
        unknown = [n for n in wanted if n not in named or not named[n].requires_grad]
        if unknown:
            raise ValueError(
                f"params {unknown} are not trainable parameters of the model; choose among {list(named)[:6]}"
            )
        chosen = {n: named[n] for n in named if n in set(wanted)}
    if not chosen:
        raise ValueError(
            "no parameters to prune: params is empty or the model has no trainable weight matrix"
        )
    return chosen


def _gradients(
    model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor, targets: dict[str, nn.Parameter]
) -> dict[str, Tensor]:
    """Per-example gradients of the ``targets`` only (other parameters frozen for the call)."""
    frozen = [p for p in model.parameters() if p.requires_grad and all(p is not q for q in targets.values())]
    for p in frozen:
        p.requires_grad_(False)
    try:
        return per_example_grads(model, loss_fn, x, y)
    finally:
        for p in frozen:
            p.requires_grad_(True)


@register(
    "obs_prune",
    family="compress",
    paper=43,
    summary="Drops weights of least OBS saliency w²/(2[F⁻¹]jj), updating the rest by M-FAC IHVPs",
    claim="gradinfo.claims.obs_prune:check",
    example="gradinfo.compress.obs_prune:CONFORMANCE",
)
def obs_prune(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    loss_fn: LossFn,
    sparsity: float,
    *,
    params: Iterable[str] | None = None,
    m: int = 64,
    damping: float = 1e-5,
    block_size: int | None = 128,
    steps: int = 1,
    schedule: str = "cubic",
    retrain: Callable[[nn.Module, dict[str, Tensor]], None] | None = None,
    dtype: torch.dtype = torch.float64,
    inplace: bool = False,
) -> tuple[nn.Module, OBSReport]:
    """Prune ``sparsity`` of the chosen weights by optimal brain surgeon with M-FAC's inverse Fisher.

    From "M-FAC: Efficient Matrix-Free Approximations of Second-Order Information" (2021): with
    ``F = damping I + (1/m) sum_i g_i g_i^T`` over the weights still present (block-diagonal in blocks of
    ``block_size``), each step drops the weights of least ``rho_j = w_j^2 / (2 [F^-1]_jj)`` and moves the
    others by ``sum_{j dropped} -(w_j / [F^-1]_jj) F^-1 e_j`` (one IHVP). Ranking is global over all
    chosen parameters. Caveats: the update treats the dropped weights' single OBS updates as additive (as
    the official code does); the model is deep-copied unless ``inplace``; memory is ``m`` gradients of the
    chosen parameters in ``dtype``.

    Args:
        model: any module :func:`gradinfo.capture.per_example_grads` supports, in the mode to score in.
        batches: iterable of ``(inputs [B, ...], targets [B, ...])``; its first ``m`` examples give the
            gradients (reused, at the current weights, in every step).
        loss_fn: ``loss_fn(outputs, targets) -> scalar``.
        sparsity: fraction of the chosen weights to remove, in ``[0, 1)``.
        params: names of the parameters to prune (default: every trainable parameter with >= 2 dims,
            i.e. weight matrices and kernels, no biases or norms).
        m: number of gradients (paper: 64 for pruning with blocks).
        damping: ``lambda > 0`` (official default 1e-5).
        block_size: M-FAC block size over the flattened remaining weights (``None``: the full matrix).
        steps: pruning steps; 1 is one-shot, more is gradual along ``schedule``.
        schedule: ``"cubic"``, ``"linear"`` or ``"geometric"`` (see :func:`sparsity_schedule`).
        retrain: called as ``retrain(model, masks)`` after every step (e.g. a few fine-tuning steps that
            keep ``param * mask``); None for pure pruning.
        dtype: precision of the gradients and the inverse Fisher.
        inplace: prune ``model`` itself instead of a deep copy.

    Returns:
        ``(pruned_model, OBSReport)``; the pruned entries of the chosen parameters are exactly 0.

    Raises:
        TypeError: ``model`` not an ``nn.Module``, ``loss_fn`` not callable, malformed ``batches``.
        ValueError: a bad ``sparsity``/``m``/``damping``/``block_size``/``steps``/``schedule``, unknown
            ``params`` names, or fewer than ``m`` examples in ``batches``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be callable (outputs, targets) -> scalar, got {type(loss_fn).__name__}"
        )
    positive_int("m", m)
    positive("damping", damping)
    if block_size is not None:
        positive_int("block_size", block_size)
    targets_schedule = sparsity_schedule(sparsity, steps, schedule)
    if retrain is not None and not callable(retrain):
        raise TypeError(f"retrain must be callable (model, masks) -> None, got {type(retrain).__name__}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating point torch.dtype, got {dtype!r}")
    _targets(model, params)  # validate names before copying
    x, y = _examples(batches, m)
    if not inplace:
        model = copy.deepcopy(model)
    targets = _targets(model, params)
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in targets.items()}
    total = sum(p.numel() for p in targets.values())
    saliencies = []
    for target in targets_schedule:
        kept = torch.cat([mask.reshape(-1) for mask in masks.values()])  # [D]
        count = round(target * total) - int((~kept).sum())
        grads = _gradients(model, loss_fn, x, y, targets)
        g = torch.cat([grads[n].reshape(m, -1) for n in targets], dim=1)[:, kept].to(dtype)  # [m, d]
        w = torch.cat([p.detach().reshape(-1) for p in targets.values()])[kept]  # [d]
        fisher = InverseFisher(g, damping, block_size=block_size)
        new, dropped, saliency = obs_step(w, fisher, max(count, 0))
        saliencies.append(float(saliency[dropped].sum()))
        flat = torch.cat([p.detach().reshape(-1) for p in targets.values()]).to(dtype)  # [D]
        flat[kept] = new
        positions = kept.nonzero().squeeze(1)[dropped]  # [count]
        kept[positions] = False
        start = 0
        with torch.no_grad():
            for n, p in targets.items():
                size = p.numel()
                p.copy_(flat[start : start + size].view_as(p).to(p.dtype))
                masks[n] = kept[start : start + size].view_as(p).clone()
                start += size
        if retrain is not None:
            retrain(model, masks)
    pruned = sum(int((~mask).sum()) for mask in masks.values())
    report = OBSReport(masks, pruned / total, targets_schedule, tuple(saliencies), m)
    return model, report


def _conformance(seed: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    x, y = torch.randn(8, 5, generator=gen), torch.randint(0, 3, (8,), generator=gen)
    pruned, report = obs_prune(
        model, [(x, y)], nn.functional.cross_entropy, 0.5, m=8, damping=1e-2, block_size=8, steps=2
    )
    return dict(pruned.state_dict()), report.masks


def _tiny() -> tuple[nn.Module, list[tuple[Tensor, Tensor]]]:
    return nn.Linear(3, 2), [(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))]


CONFORMANCE = Conformance(
    call=_conformance,
    bad_calls=(
        lambda: obs_prune(*_tiny(), nn.functional.cross_entropy, 1.0, m=4),
        lambda: obs_prune(*_tiny(), nn.functional.cross_entropy, 0.5, m=8),
        lambda: obs_prune(*_tiny(), nn.functional.cross_entropy, 0.5, m=4, damping=0.0),
        lambda: obs_prune(*_tiny(), nn.functional.cross_entropy, 0.5, m=4, schedule="exp"),
        lambda: obs_prune(*_tiny(), nn.functional.cross_entropy, 0.5, m=4, params=["nope"]),
        lambda: obs_prune("model", [], nn.functional.cross_entropy, 0.5),
    ),
)
