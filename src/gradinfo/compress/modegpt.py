"""MoDeGPT: gradient-free modular decomposition of a Llama-style model from calibration activations.

Each decoder layer is cut into matrix-pair modules whose inner dimension is shrunk so that the module's
output on calibration data is reconstructed as well as possible, using only forward activations (no
backward pass, no gradient). With ``Z`` the module's inner activations over the calibration tokens:

- **Type I, MLP (Nystrom).** ``f(x) = W_d z``, ``z = silu(W_g x) * (W_u x)``, ``C = Z^T Z`` ``[n, n]``. The
  ridge leverage score of channel ``i`` is ``[C (C + lambda I)^-1]_ii = 1 - lambda [(C + lambda I)^-1]_ii``;
  keep the top-``k`` channels ``S`` (rows ``S`` of ``W_g``, ``W_u``) and refit the down projection by least
  squares, ``W_d <- W_d C_{:S} C_{SS}^-1`` (``argmin ||Z W_d^T - Z_S W^T||``).
- **Type II, query-key (CR decomposition).** ``q^T k = sum_i q_i k_i``; keep the head dimensions with the
  largest ``||C_q^{1/2} e_i|| ||C_k^{1/2} e_i||`` (``C_q``, ``C_k`` the covariances of one head's query and
  key outputs; ``||C^{1/2} e_i||^2 = C_ii``), i.e. the column-row sampling with the smallest error bound. With
  rotary positions dimension ``i`` rotates together with ``i + d/2``, so pairs are kept or dropped together,
  scored ``sum_h (q_i^2 k_i^2 + q_{i+d/2}^2 k_{i+d/2}^2)`` over the query heads ``h`` sharing the key head
  (grouped-query attention), as in the unofficial ``cbacary/MoDeGPT`` code.
- **Type III, value-output (SVD).** A key/value head ``j`` and the ``g`` query heads using it map ``x``
  through ``P = W_o^{(grp)} W_v^{(j)}`` ``[g D, D]``. With ``C = X^T X`` the attention-input covariance, the
  best rank-``r`` ``P'`` in ``||(P - P') C^{1/2}||_F`` is ``P' = U_r U_r^T P`` with ``P C^{1/2} = U S V^T``
  (Eckart-Young); so ``W_v^{(j)} <- U_r^T P`` ``[r, D]`` and ``W_o^{(grp)} <- U_r`` (split per query head),
  the paper's ``C^{-1/2} U_r``/``S_r V_r^T`` split up to an invertible ``r x r`` factor, without inverting
  ``C``.

Layer ratios (global allocation, paper Sec. 3.3): block importance ``s_l = 1 - mean_t cos(h_in, h_out)`` of
decoder layer ``l`` on the calibration tokens, then ``phi_l = L phi softmax(-s / epsilon)_l`` (capped at
``max_layer_ratio``, the excess spread over the other layers), so the mean is the target ``phi``; or
``phi_l = phi`` (uniform). Each type keeps ``(1 - phi_l)`` of its inner dimension, so ``phi`` is the share of
the decoder layers' linear parameters removed (up to rounding; the report gives the exact count).

Caveats: all covariances come from one forward pass of the dense model (not layer by layer through the
already-compressed ones). The result is the same ``LlamaForCausalLM`` object with smaller ``nn.Linear``
layers in every MLP (a stock ``LlamaMLP``; ``config.intermediate_size`` is updated when all layers keep the
same width) and each ``self_attn`` replaced by :class:`ModularAttention` (query-key and value-output head
dimensions differ and rotary positions are gathered per kept pair), so it runs, generates and trains like
the original but does not reload with ``from_pretrained``: save its state dict and the report's widths,
and reload into a dense model reshaped by :func:`rebuild`. Models with biases in attention or MLP
projections are refused.

References:
    Lin, Gao, Ye, Zhu, Liu, Yang, Gao. MoDeGPT: Modular Decomposition for Large Language Model Compression
    (2025), ICLR, arXiv:2408.09632.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.llama.modeling_llama import eager_attention_forward, rotate_half

from gradinfo.core.registry import Conformance, register
from gradinfo.core.validate import fraction, one_of, positive

__all__ = [
    "ALLOCATIONS",
    "ModeGPTReport",
    "ModularAttention",
    "allocate",
    "cr_select",
    "modegpt",
    "nystrom",
    "rebuild",
    "svd_vo",
]

ALLOCATIONS: tuple[str, ...] = ("global", "uniform")
"""Per-layer ratio allocations: the paper's block-importance softmax, or the same ratio everywhere."""


@dataclass(frozen=True)
class ModeGPTReport:
    """What :func:`modegpt` did.

    Attributes:
        layer_ratios: ``phi_l`` per decoder layer (their mean is the requested ratio).
        block_importance: ``s_l = 1 - mean cos(h_in, h_out)`` per layer on the calibration tokens.
        mlp_width: MLP channels kept per layer (of ``intermediate_size``).
        qk_dim: query/key dimensions kept per head, per layer (of ``head_dim``).
        vo_rank: value/output rank kept per head, per layer (of ``head_dim``).
        params_before: parameters of the decoder layers' linear projections before.
        params_after: the same after.
        tokens: calibration tokens the covariances were built from.
    """

    layer_ratios: tuple[float, ...]
    block_importance: tuple[float, ...]
    mlp_width: tuple[int, ...]
    qk_dim: tuple[int, ...]
    vo_rank: tuple[int, ...]
    params_before: int
    params_after: int
    tokens: int

    @property
    def compression(self) -> float:
        """Share of the decoder layers' linear parameters removed."""
        return 1 - self.params_after / self.params_before


def nystrom(cov: Tensor, keep: int, ridge: float = 1e-2) -> tuple[Tensor, Tensor]:
    """Type-I Nystrom selection: the ``keep`` channels of largest ridge leverage, and the refit map.

    Args:
        cov: ``[n, n]`` symmetric PSD covariance ``Z^T Z`` of the inner activations.
        keep: channels to keep, ``1 <= keep <= n``.
        ridge: ``lambda`` relative to the mean diagonal of ``cov`` (the paper uses 1e-2 to 1e-4).

    Returns:
        ``(index [keep] sorted, refit [keep, n])`` with ``refit = C_SS^-1 C_S:``, so a down projection
        ``W_d`` ``[D, n]`` becomes ``W_d refit^T`` ``[D, keep]``.
    """
    n = cov.shape[0]
    scale = cov.diagonal().mean().clamp_min(torch.finfo(cov.dtype).tiny)
    eye = torch.eye(n, dtype=cov.dtype)
    leverage = 1 - ridge * scale * torch.linalg.inv(cov + ridge * scale * eye).diagonal()  # [n]
    index = torch.sort(torch.topk(leverage, keep).indices).values  # [k]
    sub = cov[index][:, index] + 1e-10 * scale * torch.eye(keep, dtype=cov.dtype)  # [k, k]
    refit = torch.linalg.solve(sub, cov[index])  # [k, n]
    return index, refit


def cr_select(q_power: Tensor, k_power: Tensor, keep: int, *, rotary: bool = True) -> Tensor:
    """Type-II CR selection of head dimensions for one key head and the query heads sharing it.

    Args:
        q_power: ``[g, d]`` diagonals of the query covariances, ``[C_q]_ii = ||C_q^{1/2} e_i||^2``, one row
            per query head of the group.
        k_power: ``[d]`` diagonal of the key covariance.
        keep: dimensions to keep (even with ``rotary``: whole pairs).
        rotary: keep dimension ``i`` and ``i + d/2`` together (rotate-half rotary positions).

    Returns:
        ``[keep]`` indices: without ``rotary`` the top dimensions by ``sum_h q_i^2 k_i^2`` in ascending order;
        with ``rotary`` the kept first-half indices ``a`` (ascending) followed by ``a + d/2``, so the
        rotate-half pairing survives in the reduced head.
    """
    score = q_power * k_power  # [g, d]
    if not rotary:
        return torch.sort(torch.topk(score.square().sum(0), keep).indices).values
    half = q_power.shape[1] // 2
    pairs = (score[:, :half].square() + score[:, half:].square()).sum(0)  # [d/2]
    first = torch.sort(torch.topk(pairs, keep // 2).indices).values  # [keep/2]
    return torch.cat([first, first + half])


def svd_vo(cov: Tensor, w_v: Tensor, w_o: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """Type-III SVD of one key/value head and its query heads' output blocks.

    Args:
        cov: ``[D, D]`` covariance ``X^T X`` of the attention input.
        w_v: ``[d, D]`` the head's rows of ``v_proj.weight``.
        w_o: ``[g D, d]`` the group's ``o_proj.weight[:, h*d:(h+1)*d]`` blocks stacked, query head by head.
        rank: ``r``, ``1 <= r <= d``.

    Returns:
        ``(w_v' [r, D], w_o' [g D, r])`` with ``w_o' w_v' = U_r U_r^T P``, ``P = w_o w_v``,
        ``P C^{1/2} = U S V^T``: the best rank-``r`` ``P'`` in ``||(P - P') C^{1/2}||_F``.
    """
    vals, vecs = torch.linalg.eigh(cov)  # [D], [D, D]
    root = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T  # [D, D]
    product = w_o @ w_v  # [gD, D]
    left = torch.linalg.svd(product @ root, full_matrices=False)[0][:, :rank]  # [gD, r]
    return left.T @ product, left


def allocate(
    importance: Tensor, ratio: float, *, epsilon: float = 0.1, max_layer_ratio: float = 0.9
) -> Tensor:
    """Global sparsity allocation ``phi_l = L phi softmax(-s / epsilon)_l``, capped, mean kept at ``phi``.

    Args:
        importance: ``[L]`` block-importance scores ``s_l`` (higher: the layer changes its input more).
        ratio: the mean ratio ``phi`` in ``[0, 1)``.
        epsilon: softmax temperature (small: concentrate the cuts on the least important layers).
        max_layer_ratio: cap on any ``phi_l``; the excess goes to the uncapped layers in proportion.

    Returns:
        ``[L]`` float64 ratios with mean ``ratio`` (unless every layer hits the cap).
    """
    weights = torch.softmax(-importance.double() / epsilon, 0)  # [L]
    phi = weights * ratio * len(importance)  # [L]
    capped = torch.zeros_like(phi, dtype=torch.bool)  # [L]
    while bool((phi > max_layer_ratio + 1e-12).any()) and not bool(capped.all()):
        over = phi > max_layer_ratio
        excess = float((phi[over] - max_layer_ratio).sum())
        phi[over] = max_layer_ratio
        capped |= over
        if capped.all():
            break
        free = ~capped
        phi[free] += excess * weights[free] / weights[free].sum()
    return phi


class ModularAttention(nn.Module):
    """Llama self-attention whose query-key and value-output head dimensions were cut by MoDeGPT.

    Same call signature and outputs as ``LlamaAttention`` (``(attn_output [B, T, D], attn_weights)``),
    using the model's attention implementation and the original softmax scale ``1/sqrt(head_dim)``. The
    rotary ``cos``/``sin`` ``[B, T, head_dim]`` are gathered at each key head's kept dimensions
    (``rope_index`` ``[H_kv, d_qk]``), which keeps the rotate-half pairing (see :func:`cr_select`).
    """

    def __init__(
        self, old: nn.Module, q: nn.Linear, k: nn.Linear, v: nn.Linear, o: nn.Linear, rope_index: Tensor
    ):
        super().__init__()
        self.config = old.config
        self.layer_idx = old.layer_idx
        self.scaling = old.scaling
        self.attention_dropout = old.attention_dropout
        self.is_causal = True
        self.num_key_value_groups = old.num_key_value_groups
        self.qk_dim, self.vo_dim = rope_index.shape[1], v.out_features // rope_index.shape[0]
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = q, k, v, o
        self.register_buffer("rope_index", rope_index, persistent=True)

    def forward(
        self,
        hidden_states: Tensor,
        position_embeddings: tuple[Tensor, Tensor] | None = None,
        attention_mask: Tensor | None = None,
        past_key_values: Any = None,
        cache: Any = None,
        **kwargs: Any,
    ) -> tuple[Tensor, Tensor | None]:
        # transformers < 5.24 passes the KV cache as ``past_key_values``, later versions as ``cache``
        cache = cache if cache is not None else past_key_values
        if position_embeddings is None:
            raise ValueError("ModularAttention needs position_embeddings (cos, sin) from the Llama model")
        shape = hidden_states.shape[:-1]
        q = self.q_proj(hidden_states).view(*shape, -1, self.qk_dim).transpose(1, 2)  # [B, H, T, dq]
        k = self.k_proj(hidden_states).view(*shape, -1, self.qk_dim).transpose(1, 2)  # [B, Hkv, T, dq]
        v = self.v_proj(hidden_states).view(*shape, -1, self.vo_dim).transpose(1, 2)  # [B, Hkv, T, dv]
        cos, sin = position_embeddings  # [B, T, head_dim]
        k_index = self.rope_index  # [Hkv, dq]
        q_index = k_index.repeat_interleave(self.num_key_value_groups, 0)  # [H, dq]
        cos_q, sin_q = cos[..., q_index].transpose(1, 2), sin[..., q_index].transpose(1, 2)  # [B, H, T, dq]
        cos_k, sin_k = cos[..., k_index].transpose(1, 2), sin[..., k_index].transpose(1, 2)  # [B, Hkv, T, dq]
        q = q * cos_q + rotate_half(q) * sin_q
        k = k * cos_k + rotate_half(k) * sin_k
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        attend = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        out, weights = attend(
            self,
            q,
            k,
            v,
            attention_mask,
            dropout=0.0 if not self.training else self.attention_dropout,
            scaling=self.scaling,
            **kwargs,
        )
        return self.o_proj(out.reshape(*shape, -1).contiguous()), weights  # [B, T, D]


def _layers(model: Any) -> nn.ModuleList:
    """The decoder layers of a Llama-style causal LM, or a ValueError saying what is missing."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module (a Llama-style causal LM), got {type(model).__name__}"
        )
    layers = getattr(getattr(model, "model", None), "layers", None)
    config = getattr(model, "config", None)
    needed = ("q_proj", "k_proj", "v_proj", "o_proj")
    ok = isinstance(layers, nn.ModuleList) and len(layers) > 0 and config is not None
    ok = ok and all(
        not isinstance(layer.self_attn, ModularAttention)
        and all(isinstance(getattr(layer.self_attn, n, None), nn.Linear) for n in needed)
        and all(
            isinstance(getattr(layer.mlp, n, None), nn.Linear) for n in ("gate_proj", "up_proj", "down_proj")
        )
        for layer in layers
    )
    if not ok:
        raise ValueError(
            f"modegpt supports Llama-style models (model.model.layers[i].self_attn.q/k/v/o_proj and "
            ".mlp.gate/up/down_proj as nn.Linear, e.g. gradinfo.models.tiny_llama), "
            f"got {type(model).__name__}; an already compressed model cannot be compressed again"
        )
    biased = [
        f"layers[{i}].{part}.{n}"
        for i, layer in enumerate(layers)
        for part, names in (("self_attn", needed), ("mlp", ("gate_proj", "up_proj", "down_proj")))
        for n in names
        if getattr(getattr(layer, part), n).bias is not None
    ]
    if biased:
        raise ValueError(f"modegpt does not handle biased projections, found biases in {biased[:4]}")
    return layers


def _calibration(calibration: Any, vocab: int) -> list[Tensor]:
    """The calibration batches as a list of int64 ``[B, T]`` token-id tensors, checked."""
    items = [calibration] if isinstance(calibration, Tensor) else calibration
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError(
            "calibration must be a token-id tensor [B, T] or an iterable of them, "
            f"got {type(calibration).__name__}"
        )
    batches = []
    for i, ids in enumerate(items):
        if not isinstance(ids, Tensor) or ids.dtype not in (torch.int32, torch.int64) or ids.dim() != 2:
            what = f"{ids.dtype} {tuple(ids.shape)}" if isinstance(ids, Tensor) else type(ids).__name__
            raise TypeError(f"calibration[{i}] must be an integer token-id tensor [B, T], got {what}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
            raise ValueError(f"calibration[{i}] has token ids outside [0, {vocab})")
        batches.append(ids.long())
    if not batches or sum(b.numel() for b in batches) == 0:
        raise ValueError("calibration is empty; pass at least one [B, T] batch of token ids")
    return batches


def _statistics(model: nn.Module, layers: nn.ModuleList, batches: list[Tensor]) -> dict[str, list[Tensor]]:
    """One forward pass over the calibration data collecting every covariance MoDeGPT needs (float64)."""
    config = model.config
    head_dim = layers[0].self_attn.head_dim
    stats: dict[str, list[Any]] = {k: [None] * len(layers) for k in ("x", "z", "q", "k", "cos", "count")}
    handles = []

    def add(key: str, i: int, value: Tensor) -> None:
        stats[key][i] = value if stats[key][i] is None else stats[key][i] + value

    for i, layer in enumerate(layers):
        attn, mlp = layer.self_attn, layer.mlp

        def on_x(_m: nn.Module, args: tuple, i: int = i) -> None:
            x = args[0].detach().double().reshape(-1, args[0].shape[-1])  # [N, D]
            add("x", i, x.T @ x)

        def on_z(_m: nn.Module, args: tuple, i: int = i) -> None:
            z = args[0].detach().double().reshape(-1, args[0].shape[-1])  # [N, n]
            add("z", i, z.T @ z)

        def on_q(_m: nn.Module, _a: tuple, out: Tensor, i: int = i) -> None:
            add(
                "q",
                i,
                out.detach().double().reshape(-1, config.num_attention_heads, head_dim).square().sum(0),
            )

        def on_k(_m: nn.Module, _a: tuple, out: Tensor, i: int = i) -> None:
            add(
                "k",
                i,
                out.detach().double().reshape(-1, config.num_key_value_heads, head_dim).square().sum(0),
            )

        def on_layer(_m: nn.Module, args: tuple, kwargs: dict, out: Any, i: int = i) -> None:
            before = args[0] if args else kwargs["hidden_states"]  # [B, T, D]
            after = out[0] if isinstance(out, tuple) else out  # [B, T, D]
            cos = nn.functional.cosine_similarity(before.double(), after.double(), dim=-1)  # [B, T]
            add("cos", i, cos.sum())
            add("count", i, torch.tensor(float(cos.numel()), dtype=torch.float64))

        handles += [
            attn.q_proj.register_forward_pre_hook(on_x),
            mlp.down_proj.register_forward_pre_hook(on_z),
            attn.q_proj.register_forward_hook(on_q),
            attn.k_proj.register_forward_hook(on_k),
            layer.register_forward_hook(on_layer, with_kwargs=True),
        ]
    try:
        for ids in batches:
            model(input_ids=ids)
    finally:
        for handle in handles:
            handle.remove()
    return stats


def _linear(weight: Tensor, like: nn.Linear) -> nn.Linear:
    layer = nn.Linear(
        weight.shape[1], weight.shape[0], bias=False, dtype=like.weight.dtype, device=like.weight.device
    )
    layer.weight.data.copy_(weight)
    layer.weight.requires_grad_(like.weight.requires_grad)
    return layer


def _compress_mlp(mlp: nn.Module, cov: Tensor, keep: int, ridge: float) -> None:
    index, refit = nystrom(cov, keep, ridge)  # [k], [k, n]
    down = mlp.down_proj.weight.double() @ refit.T  # [D, k]
    mlp.gate_proj = _linear(mlp.gate_proj.weight[index], mlp.gate_proj)
    mlp.up_proj = _linear(mlp.up_proj.weight[index], mlp.up_proj)
    mlp.down_proj = _linear(down, mlp.down_proj)


def _compress_attention(
    attn: nn.Module, stats: dict[str, Tensor], qk_keep: int, vo_rank: int
) -> ModularAttention:
    d, groups = attn.head_dim, attn.num_key_value_groups
    kv_heads = attn.k_proj.out_features // d
    wq = attn.q_proj.weight.reshape(kv_heads, groups, d, -1)  # [Hkv, g, d, D]
    wk = attn.k_proj.weight.reshape(kv_heads, d, -1)  # [Hkv, d, D]
    wv = attn.v_proj.weight.double().reshape(kv_heads, d, -1)  # [Hkv, d, D]
    wo = attn.o_proj.weight.double().reshape(-1, kv_heads, groups, d)  # [D, Hkv, g, d]
    q_power = stats["q"].reshape(kv_heads, groups, d)  # [Hkv, g, d]
    index, q_rows, k_rows, v_rows, o_cols = [], [], [], [], []
    for j in range(kv_heads):
        keep = cr_select(q_power[j], stats["k"][j], qk_keep)  # [dq]
        index.append(keep)
        q_rows.append(wq[j][:, keep])  # [g, dq, D]
        k_rows.append(wk[j][keep])  # [dq, D]
        stacked = wo[:, j].permute(1, 0, 2).reshape(-1, d)  # [g D, d]
        new_v, new_o = svd_vo(stats["x"], wv[j], stacked, vo_rank)  # [r, D], [g D, r]
        v_rows.append(new_v)
        o_cols.append(new_o.reshape(groups, -1, vo_rank).permute(1, 0, 2))  # [D, g, r]
    q = _linear(torch.cat(q_rows).reshape(-1, wq.shape[-1]), attn.q_proj)  # [H dq, D]
    k = _linear(torch.cat(k_rows), attn.k_proj)  # [Hkv dq, D]
    v = _linear(torch.cat(v_rows), attn.v_proj)  # [Hkv r, D]
    o = _linear(torch.cat(o_cols, dim=1).reshape(wo.shape[0], -1), attn.o_proj)  # [D, H r]
    return ModularAttention(attn, q, k, v, o, torch.stack(index))


def _linear_params(layers: nn.ModuleList) -> int:
    return sum(m.weight.numel() for layer in layers for m in layer.modules() if isinstance(m, nn.Linear))


@register(
    "modegpt",
    family="compress",
    paper=19,
    summary="Gradient-free modular decomposition (Nyström, CR, SVD) from activation covariances",
    claim="gradinfo.claims.modegpt:check",
    example="gradinfo.compress.modegpt:CONFORMANCE",
)
@torch.no_grad()
def modegpt(
    model: nn.Module,
    calibration: Tensor | Iterable[Tensor],
    ratio: float,
    *,
    allocation: str = "global",
    epsilon: float = 0.1,
    max_layer_ratio: float = 0.9,
    ridge: float = 1e-2,
    inplace: bool = False,
) -> tuple[nn.Module, ModeGPTReport]:
    """Compress every decoder layer of a Llama-style model by MoDeGPT's modular decomposition, no backward.

    From "MoDeGPT: Modular Decomposition for Large Language Model Compression" (2025): Nystrom selection
    by ridge leverage with a least-squares refit of ``down_proj`` (MLP), CR selection of query-key head
    dimensions by ``||C_q^{1/2} e_i|| ||C_k^{1/2} e_i||`` (rotary pairs kept together), and the SVD
    ``P' = U_r U_r^T P`` of ``P C^{1/2} = U S V^T`` for value-output (see the module docstring for the
    equations); layer ratios by the paper's ``phi_l = L phi softmax(-s_l / epsilon)`` or uniformly. Runs under
    ``torch.no_grad``: forward passes only.

    Args:
        model: a Llama-style ``transformers`` causal LM (``gradinfo.models.tiny_llama``), without biases.
        calibration: token ids ``[B, T]`` (int) or an iterable of such batches.
        ratio: mean share ``phi`` of each layer's inner dimensions removed, in ``[0, 1)``.
        allocation: ``"global"`` (paper) or ``"uniform"``.
        epsilon: temperature of the global allocation.
        max_layer_ratio: cap on a layer's ratio in the global allocation, in ``(0, 1)``.
        ridge: Nystrom ridge ``lambda`` relative to the mean diagonal of the MLP covariance.
        inplace: compress ``model`` itself instead of a deep copy.

    Returns:
        ``(compressed_model, ModeGPTReport)``; the model maps ``input_ids`` ``[B, T]`` to logits as before.

    Raises:
        TypeError: ``model`` not a module, calibration not integer ``[B, T]`` tensors.
        ValueError: unsupported architecture or biases, token ids out of range, empty calibration, bad
            ``ratio``/``allocation``/``epsilon``/``max_layer_ratio``/``ridge``.
    """
    layers = _layers(model)
    if fraction("ratio", ratio, closed=True) == 1.0:
        raise ValueError(f"ratio must lie in [0, 1), got {ratio!r}; 1 would remove every dimension")
    one_of("allocation", allocation, ALLOCATIONS)
    positive("epsilon", epsilon)
    fraction("max_layer_ratio", max_layer_ratio)
    positive("ridge", ridge)
    batches = _calibration(calibration, model.config.vocab_size)
    if not inplace:
        model = copy.deepcopy(model)
        layers = model.model.layers
    before = _linear_params(layers)
    stats = _statistics(model, layers, batches)
    importance = torch.stack([1 - c / n for c, n in zip(stats["cos"], stats["count"], strict=True)])  # [L]
    if allocation == "global":
        phi = allocate(importance, ratio, epsilon=epsilon, max_layer_ratio=max_layer_ratio)  # [L]
    else:
        phi = torch.full((len(layers),), float(ratio), dtype=torch.float64)  # [L]
    widths, qk_dims, vo_ranks = [], [], []
    for i, layer in enumerate(layers):
        keep = 1 - float(phi[i])
        head_dim = layer.self_attn.head_dim
        width = max(1, round(keep * layer.mlp.down_proj.in_features))
        qk = max(2, 2 * round(keep * head_dim / 2))
        rank = max(1, round(keep * head_dim))
        _compress_mlp(layer.mlp, stats["z"][i], width, ridge)
        part = {"x": stats["x"][i], "q": stats["q"][i], "k": stats["k"][i]}
        layer.self_attn = _compress_attention(layer.self_attn, part, qk, rank)
        widths.append(width)
        qk_dims.append(qk)
        vo_ranks.append(rank)
    if len(set(widths)) == 1:
        model.config.intermediate_size = widths[0]
    report = ModeGPTReport(
        tuple(float(p) for p in phi),
        tuple(float(s) for s in importance),
        tuple(widths),
        tuple(qk_dims),
        tuple(vo_ranks),
        before,
        _linear_params(layers),
        sum(b.numel() for b in batches),
    )
    return model, report


def rebuild(model: nn.Module, layers: Sequence[Mapping[str, int]]) -> None:
    """Give a dense Llama-style ``model`` the shapes :func:`modegpt` cut it to, in place, to load its weights.

    Every MLP gets ``mlp_width`` channels and every ``self_attn`` becomes a :class:`ModularAttention` with
    ``qk_dim`` query-key and ``vo_rank`` value-output dimensions per head; the weights (and the rotary
    index) are left uninitialised, to be replaced by the compressed model's state dict (``strict=True``
    then fits). ``config.intermediate_size`` is updated when all layers keep the same width, as
    :func:`modegpt` does.

    Args:
        model: a dense Llama-style causal LM of the compressed model's configuration.
        layers: one mapping per decoder layer with ``mlp_width``, ``qk_dim`` and ``vo_rank`` (a
            :class:`ModeGPTReport`'s ``mlp_width[i]``, ``qk_dim[i]``, ``vo_rank[i]``).

    Raises:
        ValueError: ``layers`` does not hold one entry per decoder layer.
    """
    if len(layers) != len(model.model.layers):
        raise ValueError(
            f"layers must hold one entry per decoder layer ({len(model.model.layers)}), got {len(layers)}"
        )
    for layer, dims in zip(model.model.layers, layers, strict=True):
        attn, mlp = layer.self_attn, layer.mlp
        width, qk, rank = dims["mlp_width"], dims["qk_dim"], dims["vo_rank"]
        hidden = mlp.gate_proj.in_features
        kv_heads = attn.k_proj.out_features // attn.head_dim
        heads = attn.q_proj.out_features // attn.head_dim

        def linear(n_in: int, n_out: int, like: nn.Linear) -> nn.Linear:
            return nn.Linear(n_in, n_out, bias=False, dtype=like.weight.dtype)

        mlp.gate_proj = linear(hidden, width, mlp.gate_proj)
        mlp.up_proj = linear(hidden, width, mlp.up_proj)
        mlp.down_proj = linear(width, hidden, mlp.down_proj)
        q = linear(hidden, heads * qk, attn.q_proj)
        k = linear(hidden, kv_heads * qk, attn.k_proj)
        v = linear(hidden, kv_heads * rank, attn.v_proj)
        o = linear(heads * rank, hidden, attn.o_proj)
        index = torch.zeros(kv_heads, qk, dtype=torch.long)  # [Hkv, dq], loaded from the state dict
        layer.self_attn = ModularAttention(attn, q, k, v, o, index)
    widths = {d["mlp_width"] for d in layers}
    if len(widths) == 1:
        model.config.intermediate_size = widths.pop()


def _conformance(seed: int) -> tuple[Tensor, ModeGPTReport]:
    from gradinfo.models import tiny_llama

    model = tiny_llama(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, seed=seed)
    ids = torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(seed))  # [B, T]
    small, report = modegpt(model, ids, 0.3)
    return small(input_ids=ids).logits.detach(), report


def _tiny() -> nn.Module:
    from gradinfo.models import tiny_llama

    return tiny_llama(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1, seed=0)


_IDS = torch.zeros(1, 4, dtype=torch.long)

CONFORMANCE = Conformance(
    call=_conformance,
    bad_calls=(
        lambda: modegpt(_tiny(), _IDS, 1.0),
        lambda: modegpt(_tiny(), _IDS, -0.2),
        lambda: modegpt(_tiny(), _IDS, 0.3, allocation="greedy"),
        lambda: modegpt(_tiny(), _IDS.float(), 0.3),
        lambda: modegpt(_tiny(), _IDS + 999, 0.3),
        lambda: modegpt(nn.Linear(2, 2), _IDS, 0.3),
    ),
)
