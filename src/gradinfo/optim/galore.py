"""GaLore and Q-GaLore: Adam on low-rank projections of weight gradients, with quantised storage.

Zhang et al., "Q-GaLore: Quantized GaLore with INT4 Projection and Layer-Adaptive Low-Rank Gradients", 2024
(arXiv:2407.08296), building on GaLore (Zhao et al., 2024). For a matrix weight with gradient ``G`` of shape
``[m, n]`` and rank ``r``:

    every T steps:  U S V^T = svd(G);  P = V[:, :r]^T  [r, n] if m >= n,  else  P = U[:, :r]  [m, r]
    R = G P^T  [m, r]   (or  P^T G  [r, n])                       the projected gradient
    m_t, v_t = Adam moments of R;   N = m_hat / (sqrt(v_hat) + eps)
    W <- W - lr * (alpha * N P   (or  alpha * P N)  +  wd * W)    projected back, scale alpha

Q-GaLore adds, all three stored for real (:func:`memory_bytes` counts them):

- **INT4 projectors**: ``P`` min-max quantised per group of ``projector_group_size`` entries to 4 bits, two
  codes packed per byte, with an fp32 scale and an fp32 offset (the group minimum) per group;
- **lazy layer-adaptive refresh**: at each refresh the cosine similarity between the previous and the new
  projector's first singular vector enters a queue of ``queue_size``; when the queue is full and its mean is
  ``>= cos_threshold``, that layer's ``T`` is multiplied by ``gamma_proj`` (2). We take ``|cos|``: singular
  vectors are defined up to sign, and a flipped sign is the same subspace (the official code uses the signed
  value);
- **INT8 weights** (:class:`Int8Linear`, made by :func:`quantize_linears`): each ``nn.Linear`` weight is kept
  as uint8 codes per group of ``group_size`` with an fp32 scale and offset; after each update the
  new weight ``W - lr * update`` is re-quantised with **stochastic rounding** (``floor(z + u)``,
  ``u ~ U[0, 1)``, unbiased), so updates smaller than one quantum still move the weight in expectation.
  Round-to-nearest is available for comparison.

The low-rank Adam moments stay fp32 (the paper uses bitsandbytes' GPU-only 8-bit Adam). Parameters that are
not projected (vectors, or groups with ``rank=None``) run plain AdamW.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradinfo.core.registry import Conformance, register
from gradinfo.core.types import Grads, State
from gradinfo.core.validate import check_betas, positive, positive_int
from gradinfo.transform.base import GradTransform, check_keys
from gradinfo.transform.optimizer import TransformOptimizer
from gradinfo.transform.rng import derive_seed

_STREAM_ROUND = 4


# --- group-wise min-max quantisation ------------------------------------------------------------------------


def quantize_groups(
    x: Tensor, bits: int, group_size: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Asymmetric min-max quantisation of ``x`` per group of ``group_size`` consecutive entries.

    ``z = (x - min) / scale`` with ``scale = (max - min) / (2^bits - 1)`` per group, so ``z`` spans
    ``[0, 2^bits - 1]``; codes are ``round(z)`` or, with ``generator``, stochastically rounded
    ``floor(z + u)``, ``u ~ U[0, 1)`` (unbiased). ``x`` is flattened and zero-padded to a multiple of
    ``group_size``. The offset is the group's float minimum rather than an integer zero point clamped to the
    code range (the official code's choice), so groups of one sign are represented as well.

    Args:
        x: any float tensor.
        bits: 1..8.
        group_size: entries per group.
        generator: draws the stochastic rounding; None rounds to nearest.

    Returns:
        ``(codes [G, group_size] uint8, scale [G, 1] float32, offset [G, 1] float32)``.
    """
    levels = 2**bits - 1
    flat = x.detach().reshape(-1).float()  # [N]
    pad = (-flat.numel()) % group_size
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    groups = flat.view(-1, group_size)  # [G, S]
    lo, hi = groups.amin(1, keepdim=True), groups.amax(1, keepdim=True)  # [G, 1]
    scale = ((hi - lo) / levels).clamp_min(1e-12)  # [G, 1]
    z = (groups - lo) / scale  # [G, S] in [0, levels]
    if generator is None:
        codes = z.round()
    else:
        codes = (z + torch.rand(z.shape, generator=generator).to(z.device)).floor_()
    return codes.clamp_(0, levels).to(torch.uint8), scale, lo


def dequantize_groups(codes: Tensor, scale: Tensor, offset: Tensor, shape: torch.Size) -> Tensor:
    """Invert :func:`quantize_groups`: ``codes * scale + offset``, unpadded and reshaped to ``shape``."""
    values = codes.float() * scale + offset  # [G, S]
    return values.reshape(-1)[: math.prod(shape)].view(shape)


def pack_int4(codes: Tensor) -> Tensor:
    """Pack 4-bit codes ``[G, S]`` (S even) two per byte: ``[G, S / 2]`` uint8."""
    return codes[:, 0::2] | (codes[:, 1::2] << 4)


def unpack_int4(packed: Tensor) -> Tensor:
    """Invert :func:`pack_int4`: ``[G, S / 2]`` -> ``[G, S]`` uint8 codes."""
    return torch.stack([packed & 15, packed >> 4], dim=-1).flatten(1)  # [G, S]


# --- INT8 linear layers -------------------------------------------------------------------------------------


class Int8Linear(nn.Module):
    """An ``nn.Linear`` whose weight is stored as INT8: uint8 codes per group, fp32 scale and offset.

    ``weight`` is a storage-free *gradient carrier*: a zero tensor expanded to ``[out, in]`` (stride 0, one
    element of storage). The forward uses ``weight + dequantized``, so ``weight.grad`` receives ``dL/dW``
    while the values live in the buffers ``weight_codes`` ``[G, group_size]``, ``weight_scale`` ``[G, 1]``
    and ``weight_offset`` ``[G, 1]``. :func:`QGaLoreAdamW` (given the layer) writes updates back with
    :meth:`store`. Other optimizers would only move the carrier's single element: train these layers with
    :func:`QGaLoreAdamW`.

    Args:
        linear: the layer to convert (its weight is quantised with round-to-nearest).
        group_size: entries per quantisation group.
    """

    def __init__(self, linear: nn.Linear, group_size: int = 256) -> None:
        super().__init__()
        self.group_size = positive_int("group_size", group_size)
        self.shape = linear.weight.shape
        codes, scale, offset = quantize_groups(linear.weight, 8, group_size)
        self.register_buffer("weight_codes", codes)
        self.register_buffer("weight_scale", scale)
        self.register_buffer("weight_offset", offset)
        carrier = torch.zeros((), dtype=linear.weight.dtype, device=linear.weight.device)
        self.weight = nn.Parameter(carrier.expand(self.shape))
        self.bias = linear.bias

    def dequantized(self) -> Tensor:
        """The weight the layer computes with, ``[out, in]`` float32."""
        return dequantize_groups(self.weight_codes, self.weight_scale, self.weight_offset, self.shape)

    @torch.no_grad()
    def store(self, weight: Tensor, generator: torch.Generator | None) -> None:
        """Re-quantise ``weight`` ``[out, in]`` into the buffers (stochastic rounding with ``generator``)."""
        codes, scale, offset = quantize_groups(weight, 8, self.group_size, generator)
        self.weight_codes.copy_(codes)
        self.weight_scale.copy_(scale)
        self.weight_offset.copy_(offset)

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight + self.dequantized().to(x.dtype)  # [out, in]
        return F.linear(x, weight, self.bias)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        state_dict.pop(prefix + "weight", None)  # the carrier holds no values
        super()._load_from_state_dict(state_dict, prefix, *args)
        missing = args[2]
        if prefix + "weight" in missing:
            missing.remove(prefix + "weight")


def quantize_linears(
    model: nn.Module, names: Iterable[str] | None = None, group_size: int = 256
) -> list[Int8Linear]:
    """Replace ``nn.Linear`` submodules of ``model`` in place by :class:`Int8Linear`.

    Args:
        model: the network (modified in place).
        names: qualified module names to convert; None converts every ``nn.Linear`` except the output head
            (``model.get_output_embeddings()`` where the model has it).
        group_size: entries per quantisation group.

    Returns:
        The new layers, in module order (give them to :func:`QGaLoreAdamW` as ``int8_layers``).

    Raises:
        ValueError: a name in ``names`` is not an ``nn.Linear`` of ``model``.
    """
    positive_int("group_size", group_size)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    chosen = [n for n, m in linears.items() if m is not head] if names is None else list(names)
    unknown = sorted(set(chosen) - linears.keys())
    if unknown:
        raise ValueError(
            f"names {unknown} are not nn.Linear modules of the model; its linears: {sorted(linears)}"
        )
    layers = []
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        layer = Int8Linear(linears[name], group_size)
        setattr(parent, child, layer)
        layers.append(layer)
    return layers


# --- the transform ------------------------------------------------------------------------------------------


def _orthonormal_basis(grad: Tensor, rank: int) -> Tensor:
    """``P``: ``[r, n]`` (top right singular vectors) when ``m >= n``, else ``[m, r]`` (top left ones)."""
    work = grad if grad.dtype in (torch.float32, torch.float64) else grad.float()
    u, _, vh = torch.linalg.svd(work, full_matrices=False)
    return vh[:rank].clone() if grad.shape[0] >= grad.shape[1] else u[:, :rank].clone()


def _first_vector(proj: Tensor, right: bool) -> Tensor:
    return proj[0] if right else proj[:, 0]


def galore_transform(
    rank: int | None = 128,
    update_proj_gap: int = 200,
    scale: float = 0.25,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    projector_bits: int | None = None,
    projector_group_size: int = 256,
    cos_threshold: float | None = None,
    queue_size: int = 5,
    gamma_proj: int = 2,
) -> GradTransform:
    """GaLore's direction (Adam in a low-rank subspace refreshed by SVD), optionally with Q-GaLore's parts.

    Args:
        rank: ``r``; None (or a 1-D tensor) runs plain Adam on the full gradient.
        update_proj_gap: ``T``, steps between SVD refreshes.
        scale: ``alpha``, multiplies the projected-back direction.
        betas, eps: Adam's settings.
        weight_decay: decoupled, ``wd * W`` added to every direction, ``>= 0``.
        projector_bits: None keeps ``P`` in fp32; 4 (Q-GaLore) stores it group-quantised and packed.
        projector_group_size: entries per projector quantisation group (even).
        cos_threshold: None disables the lazy refresh; else the mean ``|cos|`` of the queue at which ``T``
            grows by ``gamma_proj``.
        queue_size, gamma_proj: the lazy refresh's queue length and growth factor.

    Returns:
        A ``GradTransform`` with per-parameter state. Projected parameters hold ``step``, ``exp_avg`` and
        ``exp_avg_sq`` (``[m, r]`` or ``[r, n]``), the projector (``proj``, or ``proj_codes`` /
        ``proj_scale`` / ``proj_offset``), ``gap``, ``next_refresh``, ``svd_calls``, ``queue`` and
        ``last_vector``; the others hold AdamW's ``step``, ``exp_avg``, ``exp_avg_sq``.

    Raises:
        TypeError / ValueError: a bad setting.
    """
    if rank is not None:
        positive_int("rank", rank)
    positive_int("update_proj_gap", update_proj_gap)
    scale = positive("scale", scale)
    b1, b2 = check_betas(betas)
    eps = positive("eps", eps, allow_zero=True)
    weight_decay = positive("weight_decay", weight_decay, allow_zero=True)
    if projector_bits is not None and projector_bits != 4:
        raise ValueError(f"projector_bits must be None (fp32) or 4, got {projector_bits!r}")
    positive_int("projector_group_size", projector_group_size, minimum=2)
    if projector_group_size % 2:
        raise ValueError(
            f"projector_group_size must be even (two INT4 codes a byte), got {projector_group_size}"
        )
    if cos_threshold is not None:
        positive("cos_threshold", cos_threshold, allow_zero=True)
    positive_int("queue_size", queue_size)
    positive_int("gamma_proj", gamma_proj)

    def projected(p: Tensor) -> bool:
        return rank is not None and p.ndim == 2

    def init(params: Grads) -> State:
        state = {}
        for name, p in params.items():
            if projected(p):
                state[name] = {
                    "step": 0,
                    "gap": update_proj_gap,
                    "next_refresh": 0,
                    "svd_calls": 0,
                    "queue": [],
                }
            else:
                state[name] = {"step": 0, "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
        return state

    def store_projector(s: State, proj: Tensor) -> None:
        if projector_bits is None:
            s["proj"] = proj
            return
        codes, q_scale, offset = quantize_groups(proj, projector_bits, projector_group_size)
        s["proj_codes"], s["proj_scale"], s["proj_offset"] = pack_int4(codes), q_scale, offset
        s["proj_shape"] = tuple(proj.shape)

    def load_projector(s: State) -> Tensor:
        if projector_bits is None:
            return s["proj"]
        codes = unpack_int4(s["proj_codes"])
        return dequantize_groups(codes, s["proj_scale"], s["proj_offset"], torch.Size(s["proj_shape"]))

    def refresh(s: State, g: Tensor, step: int) -> None:
        right = g.shape[0] >= g.shape[1]
        proj = _orthonormal_basis(g, min(rank, *g.shape))  # [r, n] or [m, r]
        s["svd_calls"] += 1
        first = _first_vector(proj, right)
        gap = s["gap"]
        if cos_threshold is not None and "last_vector" in s:
            queue = [*s["queue"], abs(F.cosine_similarity(s["last_vector"], first, dim=0).item())]
            queue = queue[-queue_size:]
            if len(queue) == queue_size and sum(queue) / queue_size >= cos_threshold:
                gap *= gamma_proj
            s["queue"] = queue
        s["gap"], s["next_refresh"], s["last_vector"] = gap, step + gap, first.clone()
        store_projector(s, proj)

    def low_rank_direction(s: State, g: Tensor) -> tuple[Tensor, State]:
        s = dict(s)
        step = s["step"]
        if step >= s["next_refresh"]:
            refresh(s, g, step)
        proj = load_projector(s).to(g.dtype)
        right = g.shape[0] >= g.shape[1]
        r = g @ proj.T if right else proj.T @ g  # [m, r] or [r, n]
        if "exp_avg" not in s:
            s["exp_avg"], s["exp_avg_sq"] = torch.zeros_like(r), torch.zeros_like(r)
        n, s = adam_direction(s, r)
        back = n @ proj if right else proj @ n  # [m, n]
        return back.mul_(scale), s

    def adam_direction(s: State, g: Tensor) -> tuple[Tensor, State]:
        step = s["step"] + 1
        m = torch.lerp(s["exp_avg"], g, 1 - b1)  # [*shape]
        v = torch.addcmul(s["exp_avg_sq"] * b2, g, g, value=1 - b2)  # [*shape]
        denom = (v / (1 - b2**step)).sqrt_().add_(eps)
        return (m / (1 - b1**step)).div_(denom), {**s, "step": step, "exp_avg": m, "exp_avg_sq": v}

    def update(grads: Grads, state: State, params: Grads | None = None) -> tuple[Grads, State]:
        check_keys("galore_transform", grads, state)
        if weight_decay and params is None:
            raise ValueError("galore_transform with weight_decay > 0 needs params in update()")
        out: Grads = {}
        new_state: State = {}
        for name, g in grads.items():
            s = state[name]
            if "gap" in s:
                direction, new_state[name] = low_rank_direction(s, g)
            else:
                direction, new_state[name] = adam_direction(s, g)
            if weight_decay:
                direction = direction.add(params[name], alpha=weight_decay)
            out[name] = direction
        return out, new_state

    return GradTransform(init, update)


# --- the optimizers ---------------------------------------------------------------------------------------

_GALORE_KEYS = ("rank", "update_proj_gap", "scale", "betas", "eps", "weight_decay")
_Q_KEYS = ("projector_bits", "projector_group_size", "cos_threshold", "queue_size", "gamma_proj")


@dataclass(frozen=True)
class Quantization:
    """Q-GaLore's quantised storage, the configuration that turns :class:`GaLoreAdamW` into Q-GaLore.

    Attributes:
        int8_layers: the :class:`Int8Linear` layers (from :func:`quantize_linears`) whose carriers are among
            the optimizer's params; their weights are updated as ``W_int8 <- Q(deq(W_int8) - lr * update)``.
        stochastic_round: True (the paper) or False (round to nearest, for comparison).
        projector_bits: 4 (INT4) or None (fp32 projectors).
        projector_group_size: entries per projector quantisation group.
        cos_threshold: mean ``|cos|`` that doubles a layer's ``T`` (None: never).
        queue_size, gamma_proj: the lazy refresh's queue length and growth factor.
        seed: seeds the stochastic rounding (a counter-based stream per layer and step).

    Raises:
        TypeError / ValueError: an ``int8_layers`` entry that is not an ``Int8Linear``, a non-bool
            ``stochastic_round``, a negative ``seed`` (the projector settings are checked by the optimizer).
    """

    int8_layers: tuple[Int8Linear, ...] = ()
    stochastic_round: bool = True
    projector_bits: int | None = 4
    projector_group_size: int = 256
    cos_threshold: float | None = 0.4
    queue_size: int = 5
    gamma_proj: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        layers = tuple(self.int8_layers)
        for layer in layers:
            if not isinstance(layer, Int8Linear):
                raise TypeError(f"int8_layers must hold Int8Linear layers, got {type(layer).__name__}")
        if not isinstance(self.stochastic_round, bool):
            raise TypeError(f"stochastic_round must be a bool, got {self.stochastic_round!r}")
        positive_int("seed", self.seed, minimum=0)
        object.__setattr__(self, "int8_layers", layers)


@register(
    "galore",
    family="optim",
    paper=13,
    summary="Adam on 2-D gradients projected onto their top-r singular vectors, refreshed every T steps",
    claim="gradinfo.claims.galore:check",
    example="gradinfo.optim.galore:CONFORMANCE",
)
class GaLoreAdamW(TransformOptimizer):
    """GaLore's AdamW as a ``torch.optim.Optimizer``: low-rank Adam for matrices, AdamW for the rest.

    The GaLore half of "Q-GaLore: Quantized GaLore with INT4 Projection and Layer-Adaptive Low-Rank
    Gradients" (2024): ``R = G P^T`` with ``P`` from an SVD of ``G`` every ``T`` steps, Adam on ``R``,
    ``W <- W - lr * (alpha * N P + wd * W)`` (the module docstring has the equations). Every 2-D parameter
    of a group with ``rank`` set is projected; put the embeddings and head in a group with ``rank=None`` to
    keep them full-rank, as the paper does. With ``quantization`` it is Q-GaLore (:func:`QGaLoreAdamW`
    builds it with the paper's settings).

    Args:
        params: parameters or param-group dicts; a group may override any setting below (and, with
            ``quantization``, its projector settings).
        lr: ``>= 0``.
        rank: ``r`` (None: plain AdamW).
        update_proj_gap: ``T``.
        scale: ``alpha``.
        betas, eps, weight_decay: AdamW's (decoupled decay).
        quantization: Q-GaLore's INT4 projectors, lazy refresh and INT8 weights; None for GaLore.

    Raises:
        TypeError / ValueError: a bad setting (checked when a group is added).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        rank: int | None = 128,
        update_proj_gap: int = 200,
        scale: float = 0.25,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        quantization: Quantization | None = None,
    ) -> None:
        if quantization is not None and not isinstance(quantization, Quantization):
            raise TypeError(f"quantization must be a Quantization or None, got {type(quantization).__name__}")
        self.quantization = quantization
        layers = () if quantization is None else quantization.int8_layers
        self._int8 = {id(layer.weight): (i, layer) for i, layer in enumerate(layers)}
        settings = {} if quantization is None else {k: getattr(quantization, k) for k in _Q_KEYS}
        defaults = {
            "lr": lr,
            "rank": rank,
            "update_proj_gap": update_proj_gap,
            "scale": scale,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            **settings,
        }
        super().__init__(params, defaults)

    def group_transform(self, group: dict[str, Any]) -> GradTransform:
        return galore_transform(**{k: group[k] for k in _GALORE_KEYS + _Q_KEYS if k in group})

    def step_group(self, group: dict[str, Any], live: Grads) -> None:
        """Apply the group's updates; weights of the ``int8_layers`` are re-quantised instead."""
        updates = self.group_updates(group, live)
        for name, p in live.items():
            found = self._int8.get(id(p))
            if found is None:
                p.add_(updates[name].to(p.dtype), alpha=-group["lr"])
            else:
                self._store_int8(*found, p, updates[name], group)

    def _store_int8(self, index: int, layer: Int8Linear, carrier: Tensor, update: Tensor, group: Any) -> None:
        """``W_int8 <- Q(deq(W_int8) (1 - lr wd) - lr update)``, stochastically rounded per layer and step."""
        step = self.state[carrier]["step"]
        generator = (
            torch.Generator().manual_seed(
                derive_seed(self.quantization.seed, _STREAM_ROUND + 16 * index, step)
            )
            if self.quantization.stochastic_round
            else None
        )
        weight = layer.dequantized()  # [out, in]
        decay = group["lr"] * group["weight_decay"]  # the transform decayed the carrier's zeros, not these
        layer.store(weight * (1 - decay) - group["lr"] * update.float(), generator)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a ``state_dict()``; integer codes come back as uint8 (torch casts state to param dtype)."""
        super().load_state_dict(state_dict)
        for s in self.state.values():
            if "proj_codes" in s:
                s["proj_codes"] = s["proj_codes"].to(torch.uint8)


@register(
    "q_galore",
    family="optim",
    paper=13,
    summary="GaLore with INT4 projectors, lazy layer-adaptive SVD refresh, stochastic-rounded INT8 weights",
    claim="gradinfo.claims.q_galore:check",
    example="gradinfo.optim.galore:Q_CONFORMANCE",
)
def QGaLoreAdamW(
    params: Iterable[Any],
    lr: float = 1e-3,
    rank: int | None = 128,
    update_proj_gap: int = 200,
    scale: float = 0.25,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    int8_layers: Iterable[Int8Linear] = (),
    stochastic_round: bool = True,
    projector_bits: int | None = 4,
    projector_group_size: int = 256,
    cos_threshold: float | None = 0.4,
    queue_size: int = 5,
    gamma_proj: int = 2,
    seed: int = 0,
) -> GaLoreAdamW:
    """Q-GaLore: GaLore with INT4 projectors, lazy layer-adaptive refresh and INT8 weights.

    Implements "Q-GaLore: Quantized GaLore with INT4 Projection and Layer-Adaptive Low-Rank Gradients"
    (2024); see the module docstring for the equations and storage. Weights of the ``int8_layers``
    (from :func:`quantize_linears`) are updated as ``W_int8 <- Q_sr(deq(W_int8) - lr * update)``.

    Args:
        params: as :class:`GaLoreAdamW`.
        lr, rank, update_proj_gap, scale, betas, eps, weight_decay: as :class:`GaLoreAdamW`.
        int8_layers, stochastic_round, projector_bits, projector_group_size, cos_threshold, queue_size,
            gamma_proj, seed: as :class:`Quantization` (the defaults are the paper's).

    Returns:
        A :class:`GaLoreAdamW` configured with that :class:`Quantization`.

    Raises:
        TypeError / ValueError: a bad setting, or an ``int8_layers`` entry that is not an ``Int8Linear``.
    """
    quantization = Quantization(
        tuple(int8_layers),
        stochastic_round,
        projector_bits,
        projector_group_size,
        cos_threshold,
        queue_size,
        gamma_proj,
        seed,
    )
    return GaLoreAdamW(
        params, lr, rank, update_proj_gap, scale, betas, eps, weight_decay, quantization=quantization
    )


def svd_calls(optimizer: torch.optim.Optimizer) -> int:
    """Total SVDs a :class:`GaLoreAdamW` / :func:`QGaLoreAdamW` has run so far (over all layers)."""
    return sum(s.get("svd_calls", 0) for s in optimizer.state.values())


def _tensor_bytes(tree: Any) -> int:
    if isinstance(tree, Tensor):
        return tree.untyped_storage().nbytes()
    if isinstance(tree, dict):
        return sum(_tensor_bytes(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return sum(_tensor_bytes(v) for v in tree)
    return 0


def memory_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes actually held by the weights, the optimizer state and the projectors.

    ``weights`` counts the storage of every parameter and buffer of ``model`` (an :class:`Int8Linear`
    contributes its codes, scales and offsets; its carrier one element); ``optimizer_state`` every tensor
    in ``optimizer.state`` except projectors; ``projectors`` the state entries whose key starts with
    ``proj`` (the projector and, for INT4, its codes, scales and offsets). Gradients and activations are
    not counted.

    Returns:
        ``{"weights", "optimizer_state", "projectors", "total"}`` in bytes.
    """
    seen: set[int] = set()
    weights = 0
    for t in [*model.parameters(), *model.buffers()]:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in seen:
            seen.add(ptr)
            weights += t.untyped_storage().nbytes()
    state = projectors = 0
    for s in optimizer.state.values():
        for key, value in s.items():
            if str(key).startswith("proj"):
                projectors += _tensor_bytes(value)
            else:
                state += _tensor_bytes(value)
    return {
        "weights": weights,
        "optimizer_state": state,
        "projectors": projectors,
        "total": weights + state + projectors,
    }


def _conformance_run(seed: int, quantized: bool) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    x, y = torch.randn(32, 8, generator=gen), torch.randn(32, 4, generator=gen)
    if quantized:
        layers = quantize_linears(model, ["0", "2"], group_size=16)
        opt: torch.optim.Optimizer = QGaLoreAdamW(
            model.parameters(),
            lr=0.01,
            rank=2,
            update_proj_gap=2,
            int8_layers=layers,
            seed=seed,
            projector_group_size=8,
            queue_size=2,
        )
    else:
        opt = GaLoreAdamW(model.parameters(), lr=0.01, rank=2, update_proj_gap=2)
    for _ in range(6):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
    return model(x).detach()


CONFORMANCE = Conformance(
    call=lambda seed: _conformance_run(seed, quantized=False),
    bad_calls=(
        lambda: GaLoreAdamW([nn.Parameter(torch.zeros(2, 2))], rank=0),
        lambda: GaLoreAdamW([nn.Parameter(torch.zeros(2, 2))], update_proj_gap=1.5),
        lambda: GaLoreAdamW([nn.Parameter(torch.zeros(2, 2))], scale=-1.0),
    ),
)

Q_CONFORMANCE = Conformance(
    call=lambda seed: _conformance_run(seed, quantized=True),
    bad_calls=(
        lambda: QGaLoreAdamW([nn.Parameter(torch.zeros(2, 2))], projector_bits=3),
        lambda: QGaLoreAdamW([nn.Parameter(torch.zeros(2, 2))], int8_layers=[nn.Linear(2, 2)]),
        lambda: QGaLoreAdamW([nn.Parameter(torch.zeros(2, 2))], projector_group_size=7),
        lambda: quantize_linears(nn.Sequential(nn.Linear(2, 2)), ["9"]),
    ),
)
