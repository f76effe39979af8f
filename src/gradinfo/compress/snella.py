"""SNELLA: kernelised low-rank sparse fine-tuning with bi-level parameter competition.

Implements "Kernelized Sparse Fine-Tuning with Bi-level Parameter Competition for Vision Models" (2025),
following the official code (ssfgunner/SNELL: the ``SNELLA`` module of ``model/vision_transformer_timm.py``,
``sparse_allocator.py`` and the training loop of ``train_alloc_ema.py`` / ``engine.py``). Every wrapped
``nn.Linear`` keeps its weight ``W [out, in]`` frozen and adds a sparse update built from mixed kernels:

    kappa[j, i] = sum_h c_h * || a_{h,i} - b_{h,j} ||_2,       c_h = 0.1 * (-1)^h,  h = 0..H-1 (H = 2)
    M[j, i]     = kappa[j, i] + alpha * softmax_j(kappa[:, i] / gamma) + beta   (softmax over the outputs)
    delta       = [ |M| > q_s(|M|) ] * M * sg(|M|)       (q_s: the s-quantile, sg: stop-gradient)
    y           = x W^T + bias + x delta^T

with ``a_h [in, r/2]`` and ``b_h [out, r/2]`` the factors (Kaiming-uniform, ``a = sqrt(5)``) and the
per-layer scalars ``alpha = 1``, ``gamma = 1``, ``beta = 0`` at the start, all trainable:
``r * (in + out) + 3`` parameters per layer (LoRA has ``r * (in + out)`` at rank ``r``). The distance
kernel makes ``M`` full rank in general, where LoRA's ``B A`` has rank ``r``. Intra-layer competition keeps
the entries of ``|M|`` strictly above the layer's sparsity quantile ``s_l`` (``torch.quantile``'s linear
interpolation), each scaled by its detached magnitude. Inter-layer competition sets ``s_l`` from the
sensitivity of the factors, read after every optimiser step:

    s      = |theta * grad theta|                    for every entry of every a_h, b_h
    I_bar <- beta1 I_bar + (1 - beta1) s             (sensitivity EMA)
    U_bar <- beta2 U_bar + (1 - beta2) |s - I_bar|   (uncertainty EMA, with the updated I_bar)
    score_l = mean(I_bar U_bar over a_l) + mean(I_bar U_bar over b_l),  normalised to sum 1
    V(t)   = V_end + (V_0 - V_end) (1 - (t - t_i) / (T - t_f - t_i))^3   (global non-zero budget)
    k_l    = V(t) * score_l, capped at in_l * out_l, the excess redistributed by score
    s_l    = 1 - k_l / (in_l * out_l)                (the layer's sparsity, the quantile level of its mask)

``V_0 = (1 - init_ratio) sum_l in_l out_l`` and ``V_end = (1 - target_ratio) sum_l in_l out_l``; the ratios
are sparsities (fractions of update entries zeroed). Official defaults (``scripts/fgvc/snella32``): r = 32,
target_ratio = 0.3, init_ratio = 0 (dense start), beta1 = beta2 = 0.85, mask_interval = 1, no warm-ups,
AdamW with weight decay 0.05 on every trainable parameter but the 1-D ones (``alpha``, ``gamma``, ``beta``).

Caveats: the official allocator reallocates once per epoch (``V(e)`` before epoch ``e``, the first epoch at
``V_0``); here :meth:`SnellaController.step` runs the same schedule per optimisation step (``V(t)`` before
step ``t``; ``total_steps`` counts steps). Budgets are rounded to integers by largest remainder, where the
official allocator truncates (at most one entry per layer apart). The official module's input dropout and
DropPath (both 0.1 in its ViT blocks) are regularisers of the host network and are not part of this layer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from peft import LoraConfig, get_peft_model
from torch import Tensor, nn
from torch.nn import functional as F

from gradinfo.core.registry import Conformance, register
from gradinfo.core.validate import fraction, positive_int

__all__ = [
    "SnellaController",
    "SnellaLinear",
    "allocate_budgets",
    "kernel_merge",
    "lora",
    "mixed_kernel",
    "quantile_mask",
    "snella",
]

HEADS = 2
COEFF = 0.1


def kernel_merge(a: Tensor, b: Tensor, coeffs: Tensor) -> Tensor:
    """The distance part of the merge, ``kappa[j, i] = sum_h coeffs[h] * ||a[h, i] - b[h, j]||_2``.

    Args:
        a: input-side factors ``[H, in, k]``.
        b: output-side factors ``[H, out, k]``.
        coeffs: one weight per head ``[H]``.

    Returns:
        ``kappa`` ``[out, in]`` (the orientation of ``nn.Linear.weight``).

    Raises:
        ValueError: the shapes do not agree.
    """
    if a.dim() != 3 or b.dim() != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[2]:
        raise ValueError(
            f"a and b must be [H, in, k] and [H, out, k], got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    if coeffs.shape != (a.shape[0],):
        raise ValueError(f"coeffs must have shape ({a.shape[0]},), got {tuple(coeffs.shape)}")
    dist = torch.cdist(b, a, compute_mode="donot_use_mm_for_euclid_dist")  # [H, out, in]
    return torch.einsum("h,hoi->oi", coeffs.to(dist.dtype), dist)  # [out, in]


def mixed_kernel(a: Tensor, b: Tensor, coeffs: Tensor, alpha: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
    """SNELLA's merge ``M = kappa + alpha * softmax(kappa / gamma) + beta``, the softmax over the outputs.

    ``kappa`` is :func:`kernel_merge`; for each input ``i`` the softmax runs over the outputs ``j`` (the
    official module builds ``M`` as ``[in, out]`` and takes the softmax over its last axis).

    Args:
        a: input-side factors ``[H, in, k]``.
        b: output-side factors ``[H, out, k]``.
        coeffs: one weight per head ``[H]``.
        alpha: softmax weight, a scalar or ``[1]``.
        gamma: softmax temperature, a scalar or ``[1]``.
        beta: offset, a scalar or ``[1]``.

    Returns:
        ``M`` ``[out, in]``.

    Raises:
        ValueError: the shapes do not agree, or a scalar has more than one element.
    """
    for name, value in (("alpha", alpha), ("gamma", gamma), ("beta", beta)):
        if value.numel() != 1:
            raise ValueError(f"{name} must hold one element, got shape {tuple(value.shape)}")
    kappa = kernel_merge(a, b, coeffs)  # [out, in]
    return kappa + alpha * torch.softmax(kappa / gamma, dim=0) + beta  # [out, in]


def quantile_mask(values: Tensor, sparsity: float) -> Tensor:
    """The official intra-layer mask: ``|values| > quantile(|values|, sparsity)`` (strictly above).

    With ``n`` distinct magnitudes this keeps ``n - 1 - floor(sparsity * (n - 1))`` entries, i.e.
    ``round((1 - sparsity) * n)`` up to one entry; ``sparsity = 0`` drops the smallest entry, as the official
    code does.

    Args:
        values: any tensor ``[*shape]`` (read detached).
        sparsity: the quantile level in ``[0, 1]``.

    Returns:
        A bool tensor ``[*shape]``.

    Raises:
        ValueError: ``sparsity`` outside ``[0, 1]``.
    """
    sparsity = fraction("sparsity", sparsity, closed=True)
    magnitude = values.detach().abs()  # [*shape]
    flat = magnitude.flatten()  # [n]
    # torch.quantile's linear interpolation, through kthvalue (no size limit on the input)
    position = sparsity * (flat.numel() - 1)
    lower = math.floor(position)
    low = flat.kthvalue(lower + 1).values
    high = flat.kthvalue(min(lower + 2, flat.numel())).values
    return magnitude > torch.lerp(low, high, position - lower)


def allocate_budgets(scores: Tensor, total: int, capacity: Tensor) -> Tensor:
    """Share ``total`` non-zero entries among layers in proportion to ``scores``, capped at ``capacity``.

    Water-filling: each layer gets ``total * score / sum(score)``; a layer over its capacity is capped and
    the excess is shared among the others by score again, until nothing is left or every layer is full.
    Fractions are then rounded to integers by largest remainder, so the budgets sum to exactly
    ``min(total, capacity.sum())``. All-zero scores share equally.

    Args:
        scores: non-negative layer scores ``[L]``.
        total: the global budget, an int ``>= 0``.
        capacity: each layer's maximum (``in * out``) ``[L]``, non-negative ints.

    Returns:
        Integer budgets ``[L]`` (int64), ``0 <= budget <= capacity``.

    Raises:
        ValueError: shapes differ, a negative score or capacity, or ``total < 0``.
    """
    positive_int("total", total, minimum=0)
    if scores.dim() != 1 or scores.shape != capacity.shape:
        raise ValueError(
            f"scores and capacity must be [L], got {tuple(scores.shape)}, {tuple(capacity.shape)}"
        )
    weights = torch.nan_to_num(scores.detach().double().cpu(), nan=0.0)  # [L]
    cap = capacity.detach().double().cpu()  # [L]
    if (weights < 0).any() or (cap < 0).any():
        raise ValueError("scores and capacity must be non-negative")
    total = min(total, int(cap.sum()))
    if weights.sum() <= 0:
        weights = torch.ones_like(weights)
    alloc = torch.zeros_like(cap)  # [L]
    for _ in range(len(cap) + 1):
        room = cap - alloc  # [L]
        remaining = total - float(alloc.sum())
        open_ = room > 0
        if remaining <= 1e-9 or not open_.any():
            break
        w = torch.where(open_, weights, 0.0)  # [L]
        if w.sum() <= 0:
            w = open_.double()
        alloc += torch.minimum(remaining * w / w.sum(), room)
    base = alloc.floor()  # [L]
    deficit = total - int(base.sum())
    if deficit > 0:
        order = torch.argsort(torch.where(base < cap, alloc - base, -1.0), descending=True, stable=True)
        base[order[:deficit]] += 1
    return base.long().to(capacity.device)


class SnellaLinear(nn.Module):
    """A frozen ``nn.Linear`` plus SNELLA's sparse kernelised update (see the module docstring).

    Attributes:
        base: the wrapped layer (its parameters have ``requires_grad=False``).
        a: trainable ``[H, in, r/2]``; ``b``: trainable ``[H, out, r/2]`` (Kaiming-uniform, ``a = sqrt(5)``).
        alpha, gamma, beta: trainable ``[1]`` each (1, 1, 0 at the start).
        coeffs: buffer ``[H]``, ``0.1 * (-1)^h``.
        sparsity: the quantile level of the layer's mask (set by :class:`SnellaController`).
    """

    def __init__(self, base: nn.Linear, r: int, generator: torch.Generator, sparsity: float) -> None:
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        w = base.weight
        a = torch.empty(HEADS, base.in_features, r // 2, dtype=w.dtype)  # [H, in, r/2]
        b = torch.empty(HEADS, base.out_features, r // 2, dtype=w.dtype)  # [H, out, r/2]
        # fan_in of a [H, n, r/2] tensor is n * r/2: bound 1 / sqrt(n * r/2), as in the official init
        nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
        nn.init.kaiming_uniform_(b, a=math.sqrt(5), generator=generator)
        self.a = nn.Parameter(a.to(w.device))
        self.b = nn.Parameter(b.to(w.device))
        self.alpha = nn.Parameter(torch.ones(1, dtype=w.dtype, device=w.device))
        self.gamma = nn.Parameter(torch.ones(1, dtype=w.dtype, device=w.device))
        self.beta = nn.Parameter(torch.zeros(1, dtype=w.dtype, device=w.device))
        coeffs = torch.tensor([COEFF * (-1) ** h for h in range(HEADS)], dtype=w.dtype, device=w.device)
        self.register_buffer("coeffs", coeffs)  # [H]
        self.sparsity = sparsity

    def kernel(self) -> Tensor:
        """The dense mixed-kernel merge ``M`` ``[out, in]``."""
        return mixed_kernel(self.a, self.b, self.coeffs, self.alpha, self.gamma, self.beta)

    def update(self) -> Tensor:
        """The sparse update ``[|M| > q_s(|M|)] * M * sg(|M|)`` ``[out, in]``."""
        merged = self.kernel()  # [out, in]
        return merged * (merged.detach().abs() * quantile_mask(merged, self.sparsity))  # [out, in]

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) + F.linear(x, self.update())  # [*, out]

    def extra_repr(self) -> str:
        return f"r={2 * self.a.shape[2]}, sparsity={self.sparsity:.4f}"


class SnellaController:
    """Bi-level budget allocation for the :class:`SnellaLinear` layers of a model.

    Call :meth:`step` once per optimisation step, after ``optimizer.step()`` (the official loop reads
    ``|theta * grad|`` with the updated parameters and the gradients of that step). The budget it sets
    applies to the next step; after ``total_steps`` calls the budgets stay fixed.

    Attributes:
        layers: the wrapped layers by module name.
        sensitivity / uncertainty: the EMAs ``I_bar`` / ``U_bar`` by ``"<layer>.a"`` / ``"<layer>.b"``.
        scores: the latest normalised layer scores ``[L]`` (None before the first reallocation).
        allocation: the latest per-layer budgets ``k_l`` (kept entries) by layer name.
        steps: how many times :meth:`step` ran.
    """

    def __init__(
        self,
        layers: dict[str, SnellaLinear],
        *,
        target_ratio: float,
        init_ratio: float,
        beta1: float,
        beta2: float,
        mask_interval: int,
        init_warmup: int,
        final_warmup: int,
        total_steps: int,
    ) -> None:
        self.layers = layers
        self.beta1, self.beta2 = beta1, beta2
        self.mask_interval, self.init_warmup, self.final_warmup = mask_interval, init_warmup, final_warmup
        self.total_steps = total_steps
        self.capacity = torch.tensor([m.a.shape[1] * m.b.shape[1] for m in layers.values()])  # [L]
        self.init_volume = int((1 - init_ratio) * int(self.capacity.sum()))
        self.target_volume = int((1 - target_ratio) * int(self.capacity.sum()))
        self.sensitivity: dict[str, Tensor] = {}
        self.uncertainty: dict[str, Tensor] = {}
        self.scores: Tensor | None = None
        self.steps = 0
        # every layer starts at init_ratio, as the official modules start at init_thres
        self.allocation = {
            name: round((1 - init_ratio) * int(cap))
            for name, cap in zip(layers, self.capacity.tolist(), strict=True)
        }
        for module in layers.values():
            module.sparsity = init_ratio

    def _assign(self, budgets: Tensor) -> None:
        for (name, module), keep, cap in zip(
            self.layers.items(), budgets.tolist(), self.capacity.tolist(), strict=True
        ):
            self.allocation[name] = int(keep)
            module.sparsity = min(max(1 - keep / cap, 0.0), 1.0)

    def volume(self, step: int) -> tuple[int, bool]:
        """The global budget for ``step`` and whether the masks are reallocated then (the cubic schedule)."""
        if step <= self.init_warmup:
            return self.init_volume, False
        if step > self.total_steps - self.final_warmup:
            return self.target_volume, True
        span = self.total_steps - self.final_warmup - self.init_warmup
        left = 1 - (step - self.init_warmup) / span
        volume = int(self.target_volume + (self.init_volume - self.target_volume) * left**3)
        return volume, step % self.mask_interval == 0

    @torch.no_grad()
    def _accumulate(self) -> None:
        for name, module in self.layers.items():
            for part in ("a", "b"):
                p = getattr(module, part)
                if p.grad is None:
                    continue
                s = torch.nan_to_num((p * p.grad).abs(), nan=0.0)  # [H, n, r/2]
                key = f"{name}.{part}"
                ema = self.sensitivity.get(key, torch.zeros_like(s)) * self.beta1 + (1 - self.beta1) * s
                unc = self.uncertainty.get(key, torch.zeros_like(s)) * self.beta2
                self.sensitivity[key] = ema
                self.uncertainty[key] = unc + (1 - self.beta2) * (s - ema).abs()

    def layer_scores(self) -> Tensor:
        """``mean(I_bar U_bar)`` over ``a`` plus over ``b`` per layer, normalised to sum 1 ``[L]``."""
        raw = []
        for name in self.layers:
            total = 0.0
            for part in ("a", "b"):
                key = f"{name}.{part}"
                if key in self.sensitivity:
                    total += float((self.sensitivity[key] * self.uncertainty[key]).mean())
            raw.append(total)
        scores = torch.tensor(raw, dtype=torch.float64)  # [L]
        return scores / scores.sum() if scores.sum() > 0 else torch.full_like(scores, 1 / len(raw))

    def step(self) -> None:
        """Update the sensitivity EMAs from the current gradients, then the budgets of the next step."""
        self._accumulate()
        self.steps += 1
        if self.steps >= self.total_steps:
            return
        volume, reallocate = self.volume(self.steps)
        if not reallocate:
            return
        self.scores = self.layer_scores()
        self._assign(allocate_budgets(self.scores, volume, self.capacity))

    def budgets(self) -> dict[str, int]:
        """The current budget ``k_l`` (update entries to keep) per layer."""
        return dict(self.allocation)


def _targets(model: nn.Module, targets: Iterable[str] | None) -> list[str]:
    linear = [name for name, m in model.named_modules() if name and isinstance(m, nn.Linear)]
    if targets is None:
        if not linear:
            raise ValueError(
                "model has no nn.Linear submodule to wrap (wrap a bare nn.Linear in nn.Sequential)"
            )
        return linear
    if isinstance(targets, str):
        raise TypeError(
            f"targets must be an iterable of module names, got the str {targets!r}; use [{targets!r}]"
        )
    chosen = list(targets)
    missing = [t for t in chosen if t not in linear]
    if missing or not chosen:
        raise ValueError(f"targets must name nn.Linear modules of the model ({linear}), got {chosen}")
    return chosen


@register(
    "snella",
    family="compress",
    paper=9,
    summary="Sparse mixed-kernel update of A, B on frozen W; layer budgets from EMA |θ·∇θ| x its uncertainty",
    claim="gradinfo.claims.snella:check",
    example="gradinfo.compress.snella:CONFORMANCE",
)
def snella(
    model: nn.Module,
    *,
    total_steps: int,
    r: int = 32,
    target_ratio: float = 0.3,
    init_ratio: float = 0.0,
    beta1: float = 0.85,
    beta2: float = 0.85,
    mask_interval: int = 1,
    init_warmup: int = 0,
    final_warmup: int = 0,
    targets: Iterable[str] | None = None,
    seed: int = 0,
) -> tuple[nn.Module, SnellaController]:
    """Wrap a model's ``nn.Linear`` layers for SNELLA fine-tuning (in place).

    Implements "Kernelized Sparse Fine-Tuning with Bi-level Parameter Competition for Vision Models" (2025):
    each target ``W`` stays frozen and gains ``delta = [|M| > q_s(|M|)] * M * sg(|M|)`` with
    ``M = kappa + alpha * softmax_out(kappa / gamma) + beta`` and
    ``kappa[j, i] = sum_h 0.1 (-1)^h ||a_{h,i} - b_{h,j}||_2``; the controller sets each layer's sparsity
    ``s`` from the EMA sensitivity ``|theta * grad|`` times its uncertainty (see the module docstring).

    Caveats: every parameter of ``model`` except the new ones is frozen (unfreeze a head yourself);
    the model is modified in place and returned. The official optimiser applies weight decay to ``a`` and
    ``b`` only, not to the 1-D ``alpha``, ``gamma``, ``beta``.

    Args:
        model: any module with ``nn.Linear`` layers.
        total_steps: optimisation steps the budget schedule spans, ``> init_warmup + final_warmup``.
        r: rank of each factor pair (``r/2`` per head, two heads), even, ``>= 2``; trainable parameters
            per layer ``r * (in + out) + 3`` (LoRA's at rank ``r`` plus ``alpha``, ``gamma``, ``beta``).
        target_ratio: final sparsity of the updates (fraction of entries zeroed) in ``[0, 1)``.
        init_ratio: starting sparsity in ``[0, 1)``, ``<= target_ratio``.
        beta1: EMA factor of the sensitivity, in ``(0, 1)``.
        beta2: EMA factor of the uncertainty, in ``(0, 1)``.
        mask_interval: reallocate budgets every this many steps, ``>= 1``.
        init_warmup: steps at the starting budget before it decays, ``>= 0``.
        final_warmup: last steps at the final budget, ``>= 0``.
        targets: names of the ``nn.Linear`` modules to wrap (default: all of them).
        seed: seed of the factors' initialisation.

    Returns:
        ``(model, controller)``: the model with :class:`SnellaLinear` layers in place of the targets, and
        the :class:`SnellaController` to step after each optimiser step.

    Raises:
        TypeError / ValueError: a bad argument, or a target that is not an ``nn.Linear`` of ``model``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    positive_int("r", r, minimum=2)
    if r % 2:
        raise ValueError(f"r must be even (r/2 per kernel head), got {r!r}")
    target_ratio = fraction("target_ratio", target_ratio, closed=True)
    init_ratio = fraction("init_ratio", init_ratio, closed=True)
    if target_ratio >= 1 or init_ratio > target_ratio:
        raise ValueError(f"need 0 <= init_ratio <= target_ratio < 1, got {init_ratio!r} and {target_ratio!r}")
    fraction("beta1", beta1)
    fraction("beta2", beta2)
    positive_int("mask_interval", mask_interval)
    positive_int("init_warmup", init_warmup, minimum=0)
    positive_int("final_warmup", final_warmup, minimum=0)
    positive_int("total_steps", total_steps)
    if total_steps <= init_warmup + final_warmup:
        raise ValueError(
            f"total_steps must exceed init_warmup + final_warmup "
            f"({init_warmup} + {final_warmup}), got {total_steps}"
        )
    positive_int("seed", seed, minimum=0)
    names = _targets(model, targets)
    for p in model.parameters():
        p.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    layers: dict[str, SnellaLinear] = {}
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        layers[name] = SnellaLinear(getattr(parent, child), r, generator, init_ratio)
        setattr(parent, child, layers[name])
    controller = SnellaController(
        layers,
        target_ratio=target_ratio,
        init_ratio=init_ratio,
        beta1=beta1,
        beta2=beta2,
        mask_interval=mask_interval,
        init_warmup=init_warmup,
        final_warmup=final_warmup,
        total_steps=total_steps,
    )
    return model, controller


def lora(
    model: nn.Module, *, r: int = 32, targets: Iterable[str] | None = None, alpha: float = 8.0, seed: int = 0
) -> nn.Module:
    """The LoRA baseline at the same trainable-parameter count, via ``peft`` (``r * (in + out)`` per layer).

    Args:
        model: any module with ``nn.Linear`` layers (``peft`` freezes everything but the LoRA factors).
        r: LoRA rank, ``>= 1``.
        targets: names of the ``nn.Linear`` modules to adapt (default: all of them).
        alpha: ``lora_alpha`` (the update is scaled by ``alpha / r``), ``> 0``.
        seed: seed of ``lora_A``'s initialisation (``peft`` draws it from the global RNG; the global
            state is restored afterwards).

    Returns:
        A ``peft.PeftModel`` wrapping ``model``.

    Raises:
        TypeError / ValueError: a bad argument or target.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    positive_int("r", r)
    positive_int("seed", seed, minimum=0)
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    names = _targets(model, targets)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(
            model, LoraConfig(r=r, lora_alpha=alpha, target_modules=names, lora_dropout=0.0)
        )


def _conformance(seed: int) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    model, controller = snella(model, total_steps=3, r=4, seed=seed)
    x, y = torch.randn(8, 6, generator=gen), torch.randint(0, 3, (8,), generator=gen)  # [8, 6], [8]
    for _ in range(3):
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        controller.step()
    return {name: m.update().detach() for name, m in controller.layers.items()}


CONFORMANCE = Conformance(
    call=_conformance,
    bad_calls=(
        lambda: snella(nn.Linear(3, 3), total_steps=10, r=3),
        lambda: snella(nn.Linear(3, 3), total_steps=10, target_ratio=1.0),
        lambda: snella(nn.Linear(3, 3), total_steps=0),
        lambda: snella(nn.Linear(3, 3), total_steps=10, beta1=1.0),
        lambda: snella(nn.Sequential(nn.Linear(3, 3)), total_steps=10, targets=["nope"]),
        lambda: snella("model", total_steps=10),
    ),
)
