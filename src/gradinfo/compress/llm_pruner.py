"""LLM-Pruner: structural pruning of attention heads and MLP channels by gradient importance, LoRA recovery.

Ma, Fang, Wang, "LLM-Pruner: On the Structural Pruning of Large Language Models" (2023), arXiv:2305.11627.

1. **Groups.** Each attention head is a coupled group (its rows of the query/key/value projections and its
   columns of the output projection); with grouped-query attention (``num_key_value_heads < num_heads``) the
   unit is a whole KV group (one key/value head and the query heads that read it), so every layer keeps
   the model's queries-per-KV ratio. Each MLP channel is a group (its rows of the up/gate projections and
   its column of the down projection). The groups are those torch-pruning's ``DependencyGraph`` finds (the
   tests check the two agree for every architecture's MLP channels and for Llama's and BERT's heads, and
   check GPT-2's and grouped-query heads by masking); nn.Linear surgery is done with torch-pruning's
   ``prune_linear_out_channels``/``prune_linear_in_channels``.
2. **Importance** of a weight element (:mod:`gradinfo.compress.scores`, paper Eq. 4-5): ``|w g|``
   (``taylor``, the paper's element-wise first order), ``w^2 F / 2`` (``fisher``), ``|w g - w^2 F / 2|``
   (``param_mix``) with ``F`` the per-example empirical Fisher, ``w^2`` (``l2``), random; or the
   vector-wise ``|sum_{member slice} w g|`` (``vectorize``).
3. **Group score** ``I(G) = agg_{members k} sum_{j in slice k} I(w_j)`` (``aggregation``: sum by default).
4. **Pruning.** In every pruned layer, ``floor(ratio * n)`` units of each kind with the lowest scores go
   (first and last decoder layers are kept by default).
5. **Recovery.** :func:`lora_recover` trains LoRA adapters (peft) on the pruned model and merges them.

Saving: the pruned model's class becomes ``Pruned<Class>`` (a subclass that rebuilds the recorded layer
shapes from ``config.pruned_shapes``/``config.pruned_attrs`` at construction), so ``save_pretrained`` then
``Pruned<Class>.from_pretrained(path)`` (or :func:`load_pruned`) gives the same model back.

Supported: Hugging Face Llama-style (``q_proj/k_proj/v_proj/o_proj``, ``gate_proj/up_proj/down_proj``),
GPT-2 (``c_attn``/``c_proj`` Conv1D, ``mlp.c_fc/c_proj``) and BERT (``attention.self.query/key/value``,
``attention.output.dense``, ``intermediate.dense``/``output.dense``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from gradinfo.compress.scores import KINDS, REDUCTIONS, aggregate, mean_grad
from gradinfo.compress.scores import importance as element_importance
from gradinfo.core.registry import Conformance, register
from gradinfo.core.validate import fraction, one_of, positive, positive_int

__all__ = [
    "CONFORMANCE",
    "PruneReport",
    "llm_pruner",
    "lm_loss",
    "load_pruned",
    "lora_recover",
    "pruned_class",
]

IMPORTANCES: tuple[str, ...] = (*KINDS, "vectorize")


@dataclass(frozen=True)
class Member:
    """One slice of a coupled group: ``indices[u]`` are unit ``u``'s positions along ``axis`` ("out"/"in")."""

    name: str
    module: nn.Module
    axis: str
    indices: Tensor  # [n_units, k]


@dataclass(frozen=True)
class Unit:
    """The coupled groups of one kind in one layer: the members they span and attributes to update."""

    kind: str  # "heads" or "channels"
    layer: int
    members: tuple[Member, ...]
    attrs: Callable[[int], dict[str, dict[str, int]]]  # kept units -> {module name: {attr: value}}


@dataclass(frozen=True)
class PruneReport:
    """What :func:`llm_pruner` did.

    Attributes:
        importance: the importance kind used.
        ratio: the fraction of units asked to be removed in each pruned layer.
        params_before / params_after: parameter counts.
        layers: indices of the decoder layers that were pruned.
        removed: ``{"layer.<i>.<heads|channels>": removed unit indices}`` (original numbering).
        scores: ``{"layer.<i>.<heads|channels>": every unit's group score}`` before pruning.
    """

    importance: str
    ratio: float
    params_before: int
    params_after: int
    layers: tuple[int, ...]
    removed: dict[str, tuple[int, ...]]
    scores: dict[str, tuple[float, ...]]

    @property
    def kept_fraction(self) -> float:
        return self.params_after / self.params_before


def lm_loss(out: Any, targets: Tensor) -> Tensor:
    """Next-token cross-entropy of ``out.logits`` ``[B, T, V]`` against ``targets`` ``[B, T]``.

    Raises:
        TypeError: ``out`` has no ``logits`` and is not a tensor (e.g. a bare ``BertModel``'s output).
        ValueError: the logits are not ``[B, T, V]`` matching ``targets`` ``[B, T]`` (e.g. a sequence
            classifier's ``[B, C]``); such models need their own ``loss_fn``.
    """
    logits = out.logits if hasattr(out, "logits") else out  # [B, T, V]
    if not isinstance(logits, Tensor):
        raise TypeError(
            f"lm_loss needs model outputs with .logits [B, T, V], got {type(out).__name__}; pass "
            "loss_fn=... for models without a language-model head"
        )
    if logits.dim() != 3 or logits.shape[:2] != targets.shape:
        raise ValueError(
            f"lm_loss needs logits [B, T, V] and targets [B, T], got logits {tuple(logits.shape)} and "
            f"targets {tuple(targets.shape)}; pass loss_fn=... for models without a language-model head"
        )
    return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


def _arange_units(n_units: int, size: int, offset: int = 0) -> Tensor:
    """``[n_units, size]`` consecutive index blocks starting at ``offset``."""
    return offset + torch.arange(n_units * size).reshape(n_units, size)


def _llama_units(model: nn.Module) -> list[list[Unit]]:
    config = model.config
    n_heads, n_kv = config.num_attention_heads, config.num_key_value_heads
    out = []
    for i, layer in enumerate(model.model.layers):
        att, mlp, pre = layer.self_attn, layer.mlp, f"model.layers.{i}"
        hd = att.head_dim
        per_kv = n_heads // n_kv
        n_groups = att.k_proj.out_features // hd
        heads = Unit(
            "heads",
            i,
            (
                Member(f"{pre}.self_attn.q_proj", att.q_proj, "out", _arange_units(n_groups, per_kv * hd)),
                Member(f"{pre}.self_attn.k_proj", att.k_proj, "out", _arange_units(n_groups, hd)),
                Member(f"{pre}.self_attn.v_proj", att.v_proj, "out", _arange_units(n_groups, hd)),
                Member(f"{pre}.self_attn.o_proj", att.o_proj, "in", _arange_units(n_groups, per_kv * hd)),
            ),
            lambda kept: {},
        )
        n_ch = mlp.gate_proj.out_features
        channels = Unit(
            "channels",
            i,
            (
                Member(f"{pre}.mlp.gate_proj", mlp.gate_proj, "out", _arange_units(n_ch, 1)),
                Member(f"{pre}.mlp.up_proj", mlp.up_proj, "out", _arange_units(n_ch, 1)),
                Member(f"{pre}.mlp.down_proj", mlp.down_proj, "in", _arange_units(n_ch, 1)),
            ),
            lambda kept: {},
        )
        out.append([heads, channels])
    return out


def _gpt2_units(model: nn.Module) -> list[list[Unit]]:
    out = []
    for i, block in enumerate(model.transformer.h):
        att, mlp, pre = block.attn, block.mlp, f"transformer.h.{i}"
        hd, width = att.head_dim, att.split_size
        n_heads = width // hd
        qkv = torch.cat([_arange_units(n_heads, hd, offset=s * width) for s in range(3)], dim=1)  # [H, 3hd]

        def attn_attrs(kept: int, name: str = f"{pre}.attn", hd: int = hd) -> dict[str, dict[str, int]]:
            return {name: {"num_heads": kept, "split_size": kept * hd, "embed_dim": kept * hd}}

        heads = Unit(
            "heads",
            i,
            (
                Member(f"{pre}.attn.c_attn", att.c_attn, "out", qkv),
                Member(f"{pre}.attn.c_proj", att.c_proj, "in", _arange_units(n_heads, hd)),
            ),
            attn_attrs,
        )
        n_ch = mlp.c_fc.nf
        channels = Unit(
            "channels",
            i,
            (
                Member(f"{pre}.mlp.c_fc", mlp.c_fc, "out", _arange_units(n_ch, 1)),
                Member(f"{pre}.mlp.c_proj", mlp.c_proj, "in", _arange_units(n_ch, 1)),
            ),
            lambda kept: {},
        )
        out.append([heads, channels])
    return out


def _bert_units(model: nn.Module) -> list[list[Unit]]:
    encoder = model.bert.encoder if hasattr(model, "bert") else model.encoder
    prefix = "bert.encoder" if hasattr(model, "bert") else "encoder"
    out = []
    for i, layer in enumerate(encoder.layer):
        sa, pre = layer.attention.self, f"{prefix}.layer.{i}"
        hd = sa.attention_head_size
        n_heads = sa.query.out_features // hd

        def attn_attrs(
            kept: int, name: str = f"{pre}.attention.self", hd: int = hd
        ) -> dict[str, dict[str, int]]:
            return {name: {"num_attention_heads": kept, "all_head_size": kept * hd}}

        heads = Unit(
            "heads",
            i,
            (
                *tuple(
                    Member(f"{pre}.attention.self.{p}", getattr(sa, p), "out", _arange_units(n_heads, hd))
                    for p in ("query", "key", "value")
                ),
                Member(
                    f"{pre}.attention.output.dense",
                    layer.attention.output.dense,
                    "in",
                    _arange_units(n_heads, hd),
                ),
            ),
            attn_attrs,
        )
        n_ch = layer.intermediate.dense.out_features
        channels = Unit(
            "channels",
            i,
            (
                Member(f"{pre}.intermediate.dense", layer.intermediate.dense, "out", _arange_units(n_ch, 1)),
                Member(f"{pre}.output.dense", layer.output.dense, "in", _arange_units(n_ch, 1)),
            ),
            lambda kept: {},
        )
        out.append([heads, channels])
    return out


def _architecture(model: Any) -> Callable[[nn.Module], list[list[Unit]]]:
    """The unit builder for ``model``'s architecture, or a ValueError naming what is supported."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (a Hugging Face model), got {type(model).__name__}")
    if (
        hasattr(model, "model")
        and hasattr(model.model, "layers")
        and hasattr(model.config, "num_key_value_heads")
    ):
        return _llama_units
    if hasattr(model, "transformer") and hasattr(model.transformer, "h"):
        return _gpt2_units
    if hasattr(model, "bert") or (hasattr(model, "encoder") and hasattr(model.encoder, "layer")):
        return _bert_units
    raise ValueError(
        f"model {type(model).__name__} is not a supported architecture; llm_pruner prunes Hugging Face "
        "Llama-style (model.layers with q/k/v/o and gate/up/down projections), GPT-2 (transformer.h) and "
        "BERT (encoder.layer) models"
    )


def _weight_rows(member: Member) -> tuple[Tensor, int]:
    """The member's weight and the tensor axis that ``member.axis`` refers to."""
    weight = member.module.weight
    if isinstance(member.module, Conv1D):  # weight [in, out]
        return weight, 1 if member.axis == "out" else 0
    return weight, 0 if member.axis == "out" else 1  # nn.Linear weight [out, in]


def _member_scores(member: Member, element: dict[str, Tensor]) -> Tensor:
    """``[n_units]``: the summed element scores of each unit's slice of the member (weight and bias)."""
    _weight, axis = _weight_rows(member)
    per_index = element[f"{member.name}.weight"].sum(1 - axis)  # [n along axis]
    bias_key = f"{member.name}.bias"
    if member.axis == "out" and bias_key in element:
        per_index = per_index + element[bias_key]
    return per_index[member.indices].sum(1)  # [n_units]


def _vectorized_scores(member: Member, grads: dict[str, Tensor]) -> Tensor:
    """``[n_units]``: ``|sum_{slice} w g|`` per unit (LLM-Pruner's vector-wise score for one member)."""
    weight, axis = _weight_rows(member)
    wg = (weight.detach() * grads[f"{member.name}.weight"]).sum(1 - axis)  # [n along axis]
    bias_key = f"{member.name}.bias"
    if member.axis == "out" and bias_key in grads:
        wg = wg + member.module.bias.detach() * grads[bias_key]
    return wg[member.indices].sum(1).abs()  # [n_units]


def _remove(member: Member, drop: Tensor) -> None:
    """Cut the positions ``drop`` along the member's axis (torch-pruning for Linear, slicing for Conv1D)."""
    idxs = sorted(drop.tolist())
    module = member.module
    if isinstance(module, Conv1D):
        n = module.weight.shape[1 if member.axis == "out" else 0]
        keep = torch.tensor([j for j in range(n) if j not in set(idxs)], dtype=torch.long)
        if member.axis == "out":
            module.weight = nn.Parameter(module.weight.data[:, keep].clone())
            module.bias = nn.Parameter(module.bias.data[keep].clone())
            module.nf = len(keep)
        else:
            module.weight = nn.Parameter(module.weight.data[keep].clone())
            module.nx = len(keep)
    elif member.axis == "out":
        tp.prune_linear_out_channels(module, idxs)
    else:
        tp.prune_linear_in_channels(module, idxs)


def _calibration(calibration: Any, seed: int, num_examples: int, seq_len: int) -> list[tuple[Tensor, Tensor]]:
    """``(inputs, targets)`` next-token pairs from token batches or a dataset name."""
    if isinstance(calibration, str):
        from gradinfo.datasets import load

        data = load(calibration, split="train", seed=seed, block_size=seq_len)
        gen = torch.Generator().manual_seed(seed)
        pick = torch.randperm(len(data.x), generator=gen)[:num_examples]
        return [(data.x[pick], data.y[pick])]
    if isinstance(calibration, Tensor):
        calibration = [calibration]
    if not isinstance(calibration, Iterable):
        raise TypeError(
            "calibration must be a dataset name or an iterable of token-id batches [B, T], got "
            f"{type(calibration).__name__}"
        )
    pairs = []
    for i, item in enumerate(calibration):
        if (
            isinstance(item, Tensor)
            and item.dim() == 2
            and not item.is_floating_point()
            and item.shape[1] >= 2
        ):
            pairs.append((item[:, :-1], item[:, 1:]))
        elif isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(t, Tensor) for t in item):
            pairs.append((item[0], item[1]))
        else:
            raise TypeError(
                f"calibration[{i}] must be integer token ids [B, T] with T >= 2 or an (inputs, targets) "
                f"pair, "
                f"got {item!r:.60}"
            )
    if not pairs:
        raise ValueError("calibration is empty: give at least one batch of token ids")
    return pairs


@functools.cache
def pruned_class(base: type) -> type:
    """``Pruned<base>``: ``base`` whose constructor reshapes layers as ``config.pruned_shapes`` records.

    Args:
        base: a Hugging Face ``PreTrainedModel`` subclass (e.g. ``LlamaForCausalLM``).

    Returns:
        The subclass (one per ``base``), whose ``from_pretrained`` reloads what :func:`llm_pruner` saved.
    """

    def __init__(self: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        base.__init__(self, config, *args, **kwargs)
        _reshape(self, getattr(config, "pruned_shapes", {}) or {}, getattr(config, "pruned_attrs", {}) or {})

    namespace = {"__init__": __init__, "__module__": __name__, "pruned_base": base}
    return type(f"Pruned{base.__name__}", (base,), namespace)


def _reshape(model: nn.Module, shapes: dict[str, list[int]], attrs: dict[str, dict[str, int]]) -> None:
    """Replace each named Linear/Conv1D by an uninitialised one of the recorded ``[out, in]`` shape."""
    modules = dict(model.named_modules())
    for name, (n_out, n_in) in shapes.items():
        old = modules[name]
        parent, _, child = name.rpartition(".")
        if isinstance(old, Conv1D):
            new: nn.Module = Conv1D(n_out, n_in)
        else:
            new = nn.Linear(n_in, n_out, bias=old.bias is not None)
        new.to(device=old.weight.device, dtype=old.weight.dtype)
        setattr(modules[parent], child, new)
    for name, values in attrs.items():
        for attr, value in values.items():
            setattr(modules[name], attr, value)


def load_pruned(path: str | Path, **kwargs: Any) -> nn.Module:
    """Reload a model pruned by :func:`llm_pruner` and saved with ``save_pretrained``.

    Args:
        path: the folder ``save_pretrained`` wrote.
        **kwargs: passed to ``from_pretrained``.

    Returns:
        The pruned model (class ``Pruned<Base>``).

    Raises:
        ValueError: the folder holds no model saved by :func:`llm_pruner`.
    """
    import transformers

    config = json.loads((Path(path) / "config.json").read_text())
    base = config.get("pruned_base")
    if base is None or not hasattr(transformers, base):
        raise ValueError(f"{path} holds no model pruned by llm_pruner (config.json has no known pruned_base)")
    return pruned_class(getattr(transformers, base)).from_pretrained(path, **kwargs)


def _shapes(model: nn.Module) -> dict[str, list[int]]:
    """``{name: [out, in]}`` of every Linear and Conv1D."""
    return {
        n: [m.nf, m.nx] if isinstance(m, Conv1D) else [m.out_features, m.in_features]
        for n, m in model.named_modules()
        if isinstance(m, (nn.Linear, Conv1D))
    }


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@register(
    "llm_pruner",
    family="compress",
    paper=17,
    summary="Prunes attention heads and MLP channels whose coupled group has the lowest summed |w·g|",
    claim="gradinfo.claims.llm_pruner:check",
    example="gradinfo.compress.llm_pruner:CONFORMANCE",
)
def llm_pruner(
    model: nn.Module,
    calibration: Any,
    ratio: float,
    *,
    importance: str = "taylor",
    aggregation: str = "sum",
    keep_first_last: bool = True,
    layers: Sequence[int] | None = None,
    prune: tuple[str, ...] = ("heads", "channels"),
    loss_fn: Callable[[Any, Tensor], Tensor] = lm_loss,
    num_examples: int = 10,
    seq_len: int = 64,
    chunk_size: int | None = None,
    seed: int = 0,
) -> tuple[nn.Module, PruneReport]:
    """Structurally prune ``model`` in place and return it with a report.

    "LLM-Pruner: On the Structural Pruning of Large Language Models" (Ma et al., 2023): coupled groups
    (heads, MLP channels) whose summed element importance, e.g. Taylor ``|w g|``, is lowest are removed.

    Caveats first: the model is modified in place and its class becomes ``Pruned<Class>`` (reload with
    :func:`load_pruned`); with grouped-query attention whole KV groups are removed, so a layer with two KV
    groups loses 0 or 1 of them. The group score is the paper's ``I(G) = agg_k sum_{j in G_k} I(w_j)``
    with ``I(w) = |w g|`` (taylor), ``|w g - w^2 F / 2|`` (param_mix, F the per-example empirical Fisher),
    ``w^2 F / 2``, ``w^2``, random, or ``|sum_{G_k} w g|`` per member (vectorize); in each pruned layer
    ``floor(ratio * n)`` of its ``n`` heads (or KV groups) and of its MLP channels with the lowest scores go.

    Args:
        model: a Hugging Face Llama-style, GPT-2 or BERT model (see the module docstring).
        calibration: token ids ``[B, T]`` (or an iterable of them, or of ``(inputs, targets)`` pairs), or a
            dataset name for ``gradinfo.datasets.load`` (``num_examples`` windows of ``seq_len`` tokens).
        ratio: fraction of units removed per pruned layer, in (0, 1).
        importance: one of ``taylor``, ``fisher``, ``param_mix``, ``l2``, ``random``, ``vectorize``.
        aggregation: how member scores combine: ``sum``, ``mean``, ``max``, ``prod``.
        keep_first_last: leave the first and last layers whole (ignored when ``layers`` is given).
        layers: explicit layer indices to prune.
        prune: which unit kinds to prune: ``"heads"``, ``"channels"`` or both.
        loss_fn: ``loss_fn(model_output, targets) -> scalar`` (default: :func:`lm_loss`, next-token
            cross-entropy on logits ``[B, T, V]``; a bare encoder or a classifier, e.g. ``BertModel`` or
            ``BertForSequenceClassification``, needs its own, with ``(inputs, targets)`` calibration pairs).
        num_examples, seq_len: calibration size when ``calibration`` is a dataset name (paper: 10 x 64).
        chunk_size: examples per chunk of per-example gradients (Fisher kinds).
        seed: seeds the calibration draw and the random importance.

    Returns:
        ``(model, report)``: the pruned model and a :class:`PruneReport`.

    Raises:
        TypeError: ``model`` is not a module or an argument has the wrong type.
        ValueError: unknown architecture or importance, ``ratio`` outside (0, 1), no layer to prune, a layer
            index out of range, or empty calibration; all before any gradient is computed.
    """
    build = _architecture(model)
    fraction("ratio", ratio)
    one_of("importance", importance, IMPORTANCES)
    one_of("aggregation", aggregation, REDUCTIONS)
    positive_int("seed", seed, minimum=0)
    positive_int("num_examples", num_examples)
    positive_int("seq_len", seq_len, minimum=2)
    if isinstance(prune, str) or not prune or any(p not in ("heads", "channels") for p in prune):
        raise ValueError(f"prune must be a non-empty tuple of 'heads' and/or 'channels', got {prune!r}")
    units = build(model)
    n_layers = len(units)
    if layers is None:
        chosen = list(range(1, n_layers - 1)) if keep_first_last else list(range(n_layers))
    else:
        chosen = sorted(set(layers))
        bad = [i for i in chosen if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n_layers]
        if bad:
            raise ValueError(f"layers must be indices in [0, {n_layers}), got {bad}")
    if not chosen:
        raise ValueError(
            f"no layer to prune: the model has {n_layers} layers and keep_first_last=True keeps the first "
            "and last; pass keep_first_last=False or layers=[...]"
        )
    targets = [u for i in chosen for u in units[i] if u.kind in prune]
    too_small = [f"layer {u.layer} {u.kind}" for u in targets if len(u.members[0].indices) < 2]
    if too_small:
        raise ValueError(f"cannot prune units with fewer than 2 groups: {too_small}")
    batches = (
        None if importance in ("l2", "random") else _calibration(calibration, seed, num_examples, seq_len)
    )
    names = [f"{m.name}.{p}" for u in targets for m in u.members for p in ("weight", "bias")]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    names = [n for n in names if n in trainable]

    params_before = _count(model)
    shapes_before = _shapes(model)
    if importance == "vectorize":
        grads = mean_grad(model, batches, loss_fn, params=names)
        member_score: Callable[[Member], Tensor] = lambda m: _vectorized_scores(m, grads)  # noqa: E731
    else:
        element = element_importance(
            model, batches, loss_fn, kind=importance, params=names, chunk_size=chunk_size, seed=seed
        )
        member_score = lambda m: _member_scores(m, element)  # noqa: E731
    removed, scores, attrs = {}, {}, {}
    with torch.no_grad():
        for unit in targets:
            score = aggregate([member_score(m) for m in unit.members], aggregation)  # [n_units]
            n = score.shape[0]
            drop = torch.sort(torch.argsort(score, stable=True)[: int(n * ratio)]).values
            key = f"layer.{unit.layer}.{unit.kind}"
            scores[key] = tuple(score.tolist())
            removed[key] = tuple(drop.tolist())
            if len(drop):
                for m in unit.members:
                    _remove(m, m.indices[drop].flatten())
                attrs.update(unit.attrs(n - len(drop)))
    _reshape(model, {}, attrs)
    after = _shapes(model)
    recorded = dict(getattr(model.config, "pruned_shapes", None) or {})
    recorded.update({n: shape for n, shape in after.items() if n in recorded or shape != shapes_before[n]})
    model.config.pruned_shapes = recorded
    model.config.pruned_attrs = {**(getattr(model.config, "pruned_attrs", None) or {}), **attrs}
    base = getattr(type(model), "pruned_base", type(model))
    model.config.pruned_base = base.__name__
    model.__class__ = pruned_class(base)
    report = PruneReport(importance, ratio, params_before, _count(model), tuple(chosen), removed, scores)
    return model, report


def lora_recover(
    model: nn.Module,
    data: Any,
    steps: int,
    *,
    rank: int = 8,
    alpha: float = 16.0,
    lr: float = 1e-3,
    batch_size: int = 16,
    target_modules: Sequence[str] | None = None,
    loss_fn: Callable[[Any, Tensor], Tensor] = lm_loss,
    seed: int = 0,
) -> nn.Module:
    """Recover a pruned model with LoRA (peft) for ``steps`` AdamW steps, then merge the adapters in.

    Args:
        model: the (pruned) model; its weights change (the merged LoRA update), its shapes do not.
        data: ``(inputs [N, ...], targets [N, ...])`` or token ids ``[N, T]`` (next-token pairs).
        steps: optimizer steps.
        rank, alpha: LoRA rank ``r`` and scale ``alpha`` (update ``(alpha / r) B A``).
        lr: AdamW learning rate.
        batch_size: examples per step, drawn with replacement under ``seed``.
        target_modules: module name suffixes to adapt (default: every attention and MLP projection).
        loss_fn: ``loss_fn(model_output, targets) -> scalar``.
        seed: seeds the LoRA initialisation and the batch draw.

    Returns:
        The model with the LoRA update merged (same class and shapes as ``model``), in eval mode.

    Raises:
        TypeError / ValueError: bad ``data``, ``steps``, ``rank``, ``alpha``, ``lr`` or ``batch_size``.
    """
    from peft import LoraConfig, get_peft_model

    positive_int("steps", steps)
    positive_int("rank", rank)
    positive("alpha", alpha)
    positive("lr", lr)
    positive_int("batch_size", batch_size)
    if isinstance(data, Tensor):
        inputs, targets = data[:, :-1], data[:, 1:]
    elif isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        inputs, targets = data
    else:
        raise TypeError(
            f"data must be token ids [N, T] or an (inputs, targets) pair, got {type(data).__name__}"
        )
    if target_modules is None:
        linear = {
            n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D))
        }
        target_modules = sorted(linear - {"lm_head", "classifier", "decoder"})
    cls = type(model)
    torch.manual_seed(seed)
    peft_model = get_peft_model(
        model, LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(target_modules), lora_dropout=0.0)
    )
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    peft_model.train()
    for _ in range(steps):
        idx = torch.randint(len(inputs), (batch_size,), generator=gen)  # [b]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(peft_model(inputs[idx]), targets[idx])
        loss.backward()
        optimizer.step()
    merged = peft_model.merge_and_unload()
    merged.__class__ = cls
    return merged.eval()


def _conformance_call(seed: int) -> tuple[Tensor, ...]:
    from gradinfo.models import tiny_llama

    model = tiny_llama(hidden_size=32, num_layers=3, num_heads=4, num_kv_heads=4, vocab_size=32, seed=seed)
    tokens = torch.randint(32, (4, 9), generator=torch.Generator().manual_seed(seed))  # [B, T]
    pruned, report = llm_pruner(model, tokens, 0.5)
    return (torch.tensor(report.params_after), pruned(tokens).logits)


def _bad_model() -> nn.Module:
    from gradinfo.models import tiny_llama

    return tiny_llama(hidden_size=16, num_layers=3, num_heads=2, num_kv_heads=2, vocab_size=16)


CONFORMANCE = Conformance(
    call=_conformance_call,
    bad_calls=(
        lambda: llm_pruner(_bad_model(), torch.zeros(2, 4, dtype=torch.long), 1.5),
        lambda: llm_pruner(_bad_model(), torch.zeros(2, 4, dtype=torch.long), 0.3, importance="hessian"),
        lambda: llm_pruner(nn.Linear(2, 2), torch.zeros(2, 4, dtype=torch.long), 0.3),
        lambda: llm_pruner(_bad_model(), torch.zeros(2, 4, dtype=torch.long), 0.3, layers=[7]),
        lambda: llm_pruner(_bad_model(), "text", 0.3, keep_first_last=True, layers=[]),
    ),
)
