"""GAPrune: unstructured pruning of an embedding model by Domain Alignment Importance (DAI).

For every prunable weight ``w`` (the encoder's MLP linear weights by default, as the official release
prunes with ``--sparsify_layers mlp``), from a domain set ``D`` and a general set ``G`` of contrastive
examples, following the official ``gaprune/features/{fisher,gradient}.py`` and
``gaprune/model/SparseModel.py``:

- ``F_dom``, ``F_gen``: diagonal empirical Fisher, the mean over examples of the squared per-example
  gradient of the InfoNCE loss (:func:`gradinfo.compress.fisher_diag`), plus ``1e-8`` as officially;
- ``a``: gradient alignment, the element-wise product of the unit-normalised (per weight tensor) mean
  gradients ``g_gen / ||g_gen||`` and ``g_dom / ||g_dom||`` (:func:`gradinfo.compress.mean_grad`), averaged
  over a ``window x window`` neighbourhood (zero padded) for matrices (``compute_local_gradient_alignment``);
- the DAI score (official ``compute_dai_importance``)::

      DAI = softplus( (F_dom |w| - beta F_gen |w|) * clamp(1 + 0.2 a, 0.8, 1.2) + c sqrt(|w| + 1e-8) )

  with ``beta = 1`` and ``c = 0.5`` (``compression_weight``, the value the official pruner passes);
- low-variance rescue, per weight tensor: if ``std(DAI) < 1e-6`` (unbiased), ``DAI <- DAI * (0.5 + 0.5 |w| /
  (mean|w| + 1e-8))``;
- post-processing per weight tensor (``postproc``): ``"none"`` (the official command line's default, the one
  its published commands run), ``"zscore_sigmoid"`` (``sigmoid((DAI - mean) / (std + 1e-8) / T)``, the
  default of the official Python constructor), ``"minmax"`` or ``"rank"`` (rank / n);
- pruning: the lowest scores are set to 0; ``budget="global"`` drops the ``floor(sparsity * N)`` lowest among
  all ``N`` prunable weights; ``budget="layer"`` is the official ``uniform`` strategy: each transformer block
  ``i`` (``n_i`` weights) gets ``floor(n_i / N * floor(sparsity * N))``, the remainder goes one each to the
  largest blocks, clamped to ``[floor(0.05 n_i), floor(0.95 n_i)]``.

Caveats first. ``softplus`` (and every post-processing) keeps the order within a tensor, so within one
weight matrix DAI ranks by ``(F_dom - beta F_gen)|w| m(a) + c sqrt|w|``. The Fisher terms are tiny next to
``c sqrt|w|`` (on MiniLM ``F |w| ~ 1e-6`` against ``~0.1``; the official Fisher is smaller still, see below),
and ``a`` is one element of a product of two unit vectors (``|a| ~ 1 / numel`` for spread-out gradients), so
``m(a)`` is 1 to about ``1e-5``: DAI ranks almost by magnitude, over all tensors with ``postproc="none"``,
within each tensor (the budget then split by the shape of each tensor's distribution) with the others.
Deliberate departures from the official code: the Fisher is the true per-example one (the official code
squares gradients of micro-batch losses, 4 examples per micro-batch in its published commands, and divides
by the example count; its docstring intends the per-example estimate); gradients are taken in the model's
current mode in float32 (officially in ``train()`` mode, so with dropout, in bfloat16, scores stored as
float16); the official fallbacks for missing score files, NaN guards and ``fusion_alpha`` mixing (off by
default) are not reproduced, since every score is computed here.

Inputs: ``model(inputs)`` returns embeddings ``[B, K, D]`` (query first, then its candidates) and
``loss_fn(outputs, targets)`` is a per-example-separable loss; :class:`SentenceEncoder` and :func:`info_nce`
provide both for a Hugging Face encoder, and :func:`contrastive_batches` tokenises query-passage pairs with
in-batch negatives made explicit (each example carries the other passages of its group), so each example's
loss is its own and the per-example Fisher is exact.

References:
    Tang, Yang. GAPrune: Gradient-Alignment Pruning for Domain-Aware Embeddings (2025), arXiv:2509.10844;
    official code ``yixuantt/GAPrune`` (``gaprune/model/SparseModel.py``, ``gaprune/features``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradinfo.compress.scores import fisher_diag, mean_grad
from gradinfo.core.registry import Conformance, register
from gradinfo.core.types import LossFn
from gradinfo.core.validate import fraction, one_of, positive, positive_int

__all__ = [
    "BUDGETS",
    "POSTPROCS",
    "SCOPES",
    "GAPruneReport",
    "SentenceEncoder",
    "contrastive_batches",
    "dai",
    "gaprune",
    "gradient_alignment",
    "info_nce",
    "layer_counts",
    "postprocess",
    "prunable_weights",
    "rescale_low_variance",
    "zscore_sigmoid",
]

SCOPES: tuple[str, ...] = ("mlp", "attention", "linear")
"""Which linear weights are pruned: MLP, attention projections, or both."""

BUDGETS: tuple[str, ...] = ("global", "layer")
"""One threshold over all prunable weights, or the same ratio in every block (official ``uniform``)."""

POSTPROCS: tuple[str, ...] = ("none", "zscore_sigmoid", "minmax", "rank")
"""Per-tensor score post-processing of the official ``--score_postproc`` (``none`` is its default)."""

EPS = 1e-8
"""The official code's epsilon (Fisher offset, norms, DAI square root, post-processing)."""

RHO: tuple[float, float] = (0.05, 0.95)
"""Bounds of each block's pruned share under the layer budget (official ``rho_min``, ``rho_max``)."""

Batch = tuple[Tensor, Tensor]

_MLP = re.compile(r"(intermediate\.dense|(?<!attention\.)output\.dense|gate_proj|up_proj|down_proj|fc1|fc2)$")
_ATTN = re.compile(r"(self\.(query|key|value)|attention\.output\.dense|[qkvo]_proj|out_proj)$")
_BLOCK = re.compile(r"\.(layer|layers|h|block|blocks)\.(\d+)\.")


class SentenceEncoder(nn.Module):
    """Mean-pooled, L2-normalised sentence embeddings of token ids ``[B, K, T]`` -> ``[B, K, D]``.

    Pooling as sentence-transformers does for MiniLM: ``e = m / ||m||``, ``m = sum_t a_t h_t / sum_t a_t``
    with ``a_t = [id_t != pad_id]``. The ``K`` texts of an example are encoded in ``K`` calls of ``[B, T]``
    (not one ``[B*K, T]`` call) so every layer keeps the batch on axis 0 and per-example gradients take
    the hook fast path.

    Args:
        encoder: a Hugging Face encoder (``BertModel``-like) returning ``last_hidden_state`` ``[B, T, D]``.
        pad_id: the tokenizer's padding id.
    """

    def __init__(self, encoder: nn.Module, pad_id: int = 0) -> None:
        super().__init__()
        if not isinstance(encoder, nn.Module):
            raise TypeError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}")
        self.encoder = encoder
        self.pad_id = positive_int("pad_id", pad_id, minimum=0)

    def forward(self, ids: Tensor) -> Tensor:
        if ids.dim() != 3:
            raise ValueError(f"ids must be [B, K, T] token ids, got shape {tuple(ids.shape)}")
        out = []
        for k in range(ids.shape[1]):
            x = ids[:, k]  # [B, T]
            mask = (x != self.pad_id).long()  # [B, T]
            hidden = self.encoder(input_ids=x, attention_mask=mask).last_hidden_state  # [B, T, D]
            m = mask.unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
            out.append(F.normalize((hidden * m).sum(1) / m.sum(1).clamp_min(1e-9), dim=-1))  # [B, D]
        return torch.stack(out, dim=1)  # [B, K, D]


def info_nce(outputs: Tensor, targets: Tensor, *, scale: float = 20.0) -> Tensor:
    """InfoNCE of each query against its own candidates, averaged over the batch.

    ``loss = mean_b CE(scale * <e_b0, e_bk>_{k=1..K-1}, targets_b)``: row ``b`` of ``outputs`` is the query
    embedding then ``K - 1`` candidate embeddings (unit norm, so the dot product is the cosine, as the
    official ``HardNegativeNLLLoss`` with scale 20); ``targets_b`` indexes the positive among the candidates.

    Args:
        outputs: ``[B, K, D]`` embeddings, ``K >= 2``.
        targets: ``[B]`` int64 in ``[0, K - 1)``.
        scale: the inverse temperature.

    Returns:
        The scalar mean loss.
    """
    logits = (outputs[:, :1] * outputs[:, 1:]).sum(-1) * scale  # [B, K - 1]
    return F.cross_entropy(logits, targets)


def contrastive_batches(
    tokenizer: object,
    pairs: Sequence[tuple[str, str]],
    *,
    group: int = 4,
    batch_size: int = 16,
    max_length: int = 64,
) -> list[Batch]:
    """Tokenise query-passage pairs into :func:`info_nce` batches with in-batch negatives made explicit.

    Consecutive pairs form groups of ``group``; example ``i`` of a group is ``[q_i, p_i, p_j (j != i)]``,
    so its loss equals query ``i``'s term of in-batch InfoNCE over the group while depending on its own
    row only. Targets are 0 (the positive comes first). A last group shorter than ``group`` is dropped.

    Args:
        tokenizer: a Hugging Face tokenizer (called with ``padding=True, return_tensors="pt"``).
        pairs: ``(query, passage)`` strings.
        group: pairs sharing their passages as negatives (>= 2).
        batch_size: examples per batch.
        max_length: tokens kept per text.

    Returns:
        ``[(ids [b, group + 1, T], targets [b])]``.

    Raises:
        TypeError: ``pairs`` does not hold ``(str, str)`` pairs.
        ValueError: bad ``group``/``batch_size``/``max_length``, or fewer than ``group`` pairs.
    """
    positive_int("group", group, minimum=2)
    positive_int("batch_size", batch_size)
    positive_int("max_length", max_length)
    if isinstance(pairs, str) or not all(
        isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(t, str) for t in p) for p in pairs
    ):
        raise TypeError(f"pairs must be a sequence of (query, passage) string pairs, got {pairs!r:.80}")
    usable = len(pairs) // group * group
    if usable == 0:
        raise ValueError(f"pairs must hold at least group={group} pairs, got {len(pairs)}")
    rows = []
    for start in range(0, usable, group):
        members = pairs[start : start + group]
        for i, (query, passage) in enumerate(members):
            rows.append([query, passage] + [p for j, (_, p) in enumerate(members) if j != i])
    texts = [t for row in rows for t in row]
    ids = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    ids = ids["input_ids"].reshape(len(rows), group + 1, -1)  # [N, group + 1, T]
    return [
        (ids[s : s + batch_size], torch.zeros(len(ids[s : s + batch_size]), dtype=torch.long))
        for s in range(0, len(rows), batch_size)
    ]


def prunable_weights(model: nn.Module, scope: str = "mlp") -> list[str]:
    """Names of the ``nn.Linear`` weights in ``scope``, in ``named_parameters()`` order.

    MLP: BERT ``intermediate.dense`` / ``output.dense`` (not ``attention.output.dense``), Llama
    ``gate_proj``/``up_proj``/``down_proj``, ``fc1``/``fc2``. Attention: BERT ``self.query/key/value`` and
    ``attention.output.dense``, ``q/k/v/o_proj``, ``out_proj``. ``"linear"`` is both.

    Raises:
        TypeError: ``model`` is not a module.
        ValueError: unknown ``scope``, or no linear weight in it (the message lists the linear modules).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    one_of("scope", scope, SCOPES)
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    chosen = {
        f"{n}.weight"
        for n in linears
        if (scope != "attention" and _MLP.search(n)) or (scope != "mlp" and _ATTN.search(n))
    }
    names = [n for n, p in model.named_parameters() if n in chosen and p.requires_grad]
    if not names:
        raise ValueError(
            f"model has no trainable {scope} linear weights (looked for BERT/Llama-style names); its linear "
            f"modules are {linears[:6]}; pass params=[...] to name the weights to prune"
        )
    return names


def gradient_alignment(g_dom: Tensor, g_gen: Tensor, *, window: int = 3) -> Tensor:
    """Element-wise alignment of unit-normalised gradients, locally averaged for matrices.

    ``a = (g_gen / ||g_gen||) * (g_dom / ||g_dom||)`` (0 where either norm is <= 1e-8), then for a 2-D
    tensor the mean over a ``k x k`` window, ``k = min(window, *shape)``, zero padded (border elements
    average in zeros), as the official ``compute_local_gradient_alignment``.

    Args:
        g_dom: the mean domain gradient of one weight tensor.
        g_gen: the mean general gradient, same shape.
        window: odd window size; 1 disables the averaging.

    Returns:
        ``a``, same shape, in ``[-1, 1]``.
    """
    if g_dom.shape != g_gen.shape:
        raise ValueError(
            f"g_dom and g_gen must have one shape, got {tuple(g_dom.shape)} and {tuple(g_gen.shape)}"
        )
    positive_int("window", window)
    if window % 2 == 0:
        raise ValueError(f"window must be odd (a centred neighbourhood), got {window}")
    n_dom, n_gen = g_dom.norm(), g_gen.norm()
    if n_dom <= EPS or n_gen <= EPS:
        return torch.zeros_like(g_dom)
    a = (g_gen / (n_gen + EPS)) * (g_dom / (n_dom + EPS))
    k = min(window, *a.shape) if a.dim() == 2 else 1
    if k > 1:
        k = k if k % 2 else k - 1
        a = F.avg_pool2d(a[None, None], k, stride=1, padding=k // 2, count_include_pad=True)[0, 0]
    return a


def dai(
    weight: Tensor,
    fisher_domain: Tensor,
    fisher_general: Tensor,
    alignment: Tensor,
    *,
    beta: float = 1.0,
    compression_weight: float = 0.5,
) -> Tensor:
    """The Domain Alignment Importance of each weight (before post-processing).

    ``softplus((F_dom |w| - beta F_gen |w|) * clamp(1 + 0.2 a, 0.8, 1.2) + c sqrt(|w| + 1e-8))``.

    Args:
        weight, fisher_domain, fisher_general, alignment: tensors of one shape.
        beta: weight of the general Fisher term.
        compression_weight: ``c``, weight of the magnitude prior.

    Returns:
        Scores of the same shape, > 0.
    """
    mag = weight.abs()
    factor = (1.0 + 0.2 * alignment).clamp(0.8, 1.2)
    raw = (fisher_domain * mag - beta * fisher_general * mag) * factor + compression_weight * (
        mag + EPS
    ).sqrt()
    return F.softplus(raw)


def rescale_low_variance(scores: Tensor, weight: Tensor) -> Tensor:
    """The official rescue of a flat score tensor: spread it by relative magnitude.

    If ``std(scores) < 1e-6`` (unbiased, over the tensor), returns ``scores * (0.5 + 0.5 |w| / (mean|w| +
    1e-8))``; otherwise ``scores`` unchanged. Without it a constant DAI (e.g. zero Fisher and ``c = 0``)
    would leave the tensor's order to chance.

    Args:
        scores: DAI of one weight tensor.
        weight: the weight, same shape.

    Returns:
        Scores of the same shape.
    """
    if scores.numel() < 2 or float(scores.std()) >= 1e-6:
        return scores
    mag = weight.abs()
    return scores * (0.5 + 0.5 * mag / (mag.mean() + EPS))


def zscore_sigmoid(scores: Tensor, temperature: float = 1.0) -> Tensor:
    """``sigmoid((s - mean(s)) / (std(s) + 1e-8) / T)`` over one tensor (unbiased std), as officially."""
    return torch.sigmoid((scores - scores.mean()) / (scores.std() + EPS) / temperature)


def postprocess(scores: Tensor, how: str = "none", *, temperature: float = 1.0) -> Tensor:
    """The official per-tensor post-processing of DAI scores before the budget is applied.

    ``"none"``: ``s``; ``"zscore_sigmoid"``: :func:`zscore_sigmoid`; ``"minmax"``: ``(s - min) / (max - min +
    1e-8)``; ``"rank"``: ``rank(s) / n`` with ranks ``1..n`` ascending (ties by position).

    Args:
        scores: scores of one weight tensor, any shape.
        how: one of :data:`POSTPROCS`.
        temperature: ``T`` of ``"zscore_sigmoid"``, > 0.

    Returns:
        Scores of the same shape; the order within the tensor is kept (up to ties).

    Raises:
        ValueError: unknown ``how`` or ``temperature <= 0``.
    """
    one_of("postproc", how, POSTPROCS)
    positive("temperature", temperature)
    if how == "zscore_sigmoid":
        return zscore_sigmoid(scores, temperature)
    if how == "minmax":
        return (scores - scores.min()) / (scores.max() - scores.min() + EPS)
    if how == "rank":
        flat = scores.reshape(-1)  # [n]
        ranks = torch.empty_like(flat)
        ranks[torch.argsort(flat, stable=True)] = torch.arange(1, flat.numel() + 1, dtype=flat.dtype)
        return (ranks / flat.numel()).reshape(scores.shape)
    return scores


@dataclass(frozen=True)
class GAPruneReport:
    """What :func:`gaprune` did.

    Attributes:
        sparsity: the requested fraction of prunable weights set to 0.
        pruned: how many weights were set to 0 by the mask (``floor(sparsity * total)`` overall for the
            global budget, per block for the layer budget).
        total: the number of prunable weights.
        per_param: ``{name: fraction of that tensor pruned}``.
        scores: ``{name: post-processed DAI}``, the tensors the mask was drawn from (lower goes first).
        fisher_domain: ``{name: F_dom}``, the domain Fisher diagonal.
        fisher_general: ``{name: F_gen}``, the general Fisher diagonal.
        alignment: ``{name: a}``, the gradient alignment.
        scope: which linear weights were prunable.
        budget: ``"global"`` or ``"layer"``.
        postproc: the per-tensor post-processing of the scores.
    """

    sparsity: float
    pruned: int
    total: int
    per_param: dict[str, float]
    scores: dict[str, Tensor]
    fisher_domain: dict[str, Tensor]
    fisher_general: dict[str, Tensor]
    alignment: dict[str, Tensor]
    scope: str
    budget: str
    postproc: str


def _block(name: str) -> str:
    match = _BLOCK.search(name)
    return name[: match.end()] if match else name


def _prune_lowest(scores: dict[str, Tensor], count: int) -> dict[str, Tensor]:
    """Boolean masks (True = prune) of the ``count`` lowest scores over all tensors (ties by position)."""
    flat = torch.cat([s.reshape(-1) for s in scores.values()])  # [N]
    drop = torch.zeros(flat.numel(), dtype=torch.bool)
    drop[torch.argsort(flat, stable=True)[:count]] = True
    masks, start = {}, 0
    for name, s in scores.items():
        masks[name] = drop[start : start + s.numel()].reshape(s.shape)
        start += s.numel()
    return masks


def layer_counts(sizes: Sequence[int], sparsity: float) -> list[int]:
    """How many weights each block loses under the layer budget (official ``uniform`` allocation).

    ``k = floor(sparsity * N)``, ``N = sum(sizes)``; block ``i`` gets ``floor(n_i / N * k)``; the ``k`` left
    over go one each to the blocks in decreasing size (ties by position); each is then clamped to
    ``[floor(0.05 n_i), floor(0.95 n_i)]``.

    Args:
        sizes: weights per block, each >= 1.
        sparsity: the share to prune, in (0, 1).

    Returns:
        The count per block.
    """
    total = sum(sizes)
    target = int(sparsity * total)
    share = torch.tensor(sizes, dtype=torch.float64) / total  # [L]
    counts = (share * target).long()  # [L]
    deficit = target - int(counts.sum())
    for i in torch.argsort(-share, stable=True)[:deficit].tolist():
        counts[i] += 1
    lo, hi = RHO
    return [min(max(int(c), int(lo * n)), int(hi * n)) for c, n in zip(counts.tolist(), sizes, strict=True)]


@register(
    "gaprune",
    family="compress",
    paper=28,
    summary="Prunes by DAI: domain-minus-general Fisher·|w| times gradient alignment, plus sqrt|w|",
    example="gradinfo.compress.gaprune:CONFORMANCE",
    claim="gradinfo.claims.gaprune:check",
)
def gaprune(
    model: nn.Module,
    domain: Iterable[Batch],
    general: Iterable[Batch],
    sparsity: float = 0.5,
    *,
    loss_fn: LossFn = info_nce,
    scope: str = "mlp",
    params: Iterable[str] | None = None,
    beta: float = 1.0,
    compression_weight: float = 0.5,
    window: int = 3,
    budget: str = "global",
    postproc: str = "none",
    temperature: float = 1.0,
    chunk_size: int | None = None,
    inplace: bool = False,
) -> tuple[nn.Module, GAPruneReport]:
    """One-shot unstructured pruning by Domain Alignment Importance (GAPrune).

    Implements "GAPrune: Gradient-Alignment Pruning for Domain-Aware Embeddings" (2025):
    ``DAI = softplus((F_dom |w| - beta F_gen |w|) clamp(1 + 0.2 a, 0.8, 1.2) + c sqrt|w|)``, rescued if flat,
    post-processed per tensor (none by default, as the official command line), and the lowest ``sparsity``
    share set to 0 (module docstring).

    Caveats: the model runs in its current mode (call ``.eval()`` for deterministic scores); ``domain`` and
    ``general`` are iterated twice each (Fisher, then mean gradient), so pass lists.

    Args:
        model: returns ``[B, K, D]`` embeddings for ``[B, K, T]`` inputs (e.g. :class:`SentenceEncoder`).
        domain: ``[(inputs, targets)]`` batches of domain examples.
        general: batches of general-language examples.
        sparsity: fraction of prunable weights to zero, in (0, 1).
        loss_fn: ``loss_fn(outputs, targets) -> scalar``, separable over examples (:func:`info_nce`).
        scope: ``"mlp"`` (official default), ``"attention"`` or ``"linear"``; ignored if ``params`` is given.
        params: explicit names of the weights to prune.
        beta: weight of the general Fisher.
        compression_weight: ``c`` of the magnitude prior (0.5 as the official pruner passes).
        window: alignment averaging window (odd; 1 = none).
        budget: ``"global"`` or ``"layer"`` (official ``uniform``).
        postproc: per-tensor post-processing, one of :data:`POSTPROCS` (``"none"``, the official CLI default).
        temperature: temperature of ``postproc="zscore_sigmoid"``.
        chunk_size: examples per chunk of per-example gradients.
        inplace: prune ``model`` itself instead of a deep copy.

    Returns:
        ``(pruned_model, report)``.

    Raises:
        TypeError: ``model`` is not a module, batches are not ``(inputs, targets)`` pairs, bad types.
        ValueError: ``sparsity`` outside (0, 1), unknown ``scope``/``budget``/``postproc``, no prunable
            weights, unknown ``params`` names, negative ``beta``/``compression_weight``, ``temperature <= 0``,
            even ``window``, empty batches.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    fraction("sparsity", sparsity)
    one_of("scope", scope, SCOPES)
    one_of("budget", budget, BUDGETS)
    one_of("postproc", postproc, POSTPROCS)
    positive("temperature", temperature)
    positive("beta", beta, allow_zero=True)
    positive("compression_weight", compression_weight, allow_zero=True)
    positive_int("window", window)
    if window % 2 == 0:
        raise ValueError(f"window must be odd (a centred neighbourhood), got {window}")
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be callable (outputs, targets) -> scalar, got {type(loss_fn).__name__}"
        )
    if params is not None and (isinstance(params, str) or not all(isinstance(n, str) for n in params)):
        raise TypeError(f"params must be a list of parameter names (str), got {params!r:.80}")
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace must be a bool, got {type(inplace).__name__} {inplace!r}")
    for label, data in (("domain", domain), ("general", general)):
        if data is None or isinstance(data, (Tensor, str)) or not isinstance(data, Sequence):
            raise TypeError(f"{label} must be a list of (inputs, targets) batches, got {type(data).__name__}")
        if len(data) == 0:
            raise ValueError(f"{label} must hold at least one batch, got an empty list")
    names = prunable_weights(model, scope) if params is None else list(params)
    weights = dict(model.named_parameters())
    unknown = [n for n in names if n not in weights]
    if unknown or not names:
        raise ValueError(f"params must name parameters of the model, got unknown {unknown or names!r}")

    f_dom = {
        n: f + EPS
        for n, f in fisher_diag(model, domain, loss_fn, params=names, chunk_size=chunk_size).items()
    }
    f_gen = {
        n: f + EPS
        for n, f in fisher_diag(model, general, loss_fn, params=names, chunk_size=chunk_size).items()
    }
    g_dom = mean_grad(model, domain, loss_fn, params=names)
    g_gen = mean_grad(model, general, loss_fn, params=names)
    align = {n: gradient_alignment(g_dom[n], g_gen[n], window=window) for n in names}
    scores = {}
    for n in names:
        w = weights[n].detach()
        raw = dai(w, f_dom[n], f_gen[n], align[n], beta=beta, compression_weight=compression_weight)
        scores[n] = postprocess(rescale_low_variance(raw, w), postproc, temperature=temperature)

    if budget == "global":
        total = sum(s.numel() for s in scores.values())
        masks = _prune_lowest(scores, int(sparsity * total))
    else:
        blocks: dict[str, list[str]] = {}
        for n in names:
            blocks.setdefault(_block(n), []).append(n)
        sizes = [sum(scores[n].numel() for n in members) for members in blocks.values()]
        masks = {}
        for members, count in zip(blocks.values(), layer_counts(sizes, sparsity), strict=True):
            masks |= _prune_lowest({n: scores[n] for n in members}, count)

    pruned_model = model if inplace else copy.deepcopy(model)
    target = dict(pruned_model.named_parameters())
    with torch.no_grad():
        for n, mask in masks.items():
            target[n].masked_fill_(mask.to(target[n].device), 0.0)
    report = GAPruneReport(
        sparsity=float(sparsity),
        pruned=int(sum(int(m.sum()) for m in masks.values())),
        total=int(sum(m.numel() for m in masks.values())),
        per_param={n: float(m.float().mean()) for n, m in masks.items()},
        scores=scores,
        fisher_domain=f_dom,
        fisher_general=f_gen,
        alignment=align,
        scope=scope if params is None else "params",
        budget=budget,
        postproc=postproc,
    )
    return pruned_model, report


def _tiny_encoder(seed: int) -> SentenceEncoder:
    """A 2-layer BERT with hidden size 8 (random weights) inside a :class:`SentenceEncoder`."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=30,
        hidden_size=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return SentenceEncoder(BertModel(config, add_pooling_layer=False).eval())


def _tiny_batches(seed: int, n: int = 6) -> list[Batch]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 30, (n, 3, 5), generator=gen)  # [n, 3, 5]
    return [(ids, torch.zeros(n, dtype=torch.long))]


def _conformance(seed: int) -> tuple[dict[str, Tensor], GAPruneReport]:
    pruned, report = gaprune(_tiny_encoder(seed), _tiny_batches(seed), _tiny_batches(seed + 1), 0.5)
    return {n: p.detach() for n, p in pruned.named_parameters()}, report


CONFORMANCE = Conformance(
    call=_conformance,
    bad_calls=(
        lambda: gaprune(_tiny_encoder(0), _tiny_batches(0), _tiny_batches(1), 0.5, loss_fn="info_nce"),
        lambda: gaprune(_tiny_encoder(0), _tiny_batches(0), _tiny_batches(1), 0.5, params=["nope.weight"]),
        lambda: gaprune(_tiny_encoder(0), _tiny_batches(0), _tiny_batches(1), 1.5),
        lambda: gaprune(_tiny_encoder(0), _tiny_batches(0), _tiny_batches(1), 0.5, scope="conv"),
        lambda: gaprune(_tiny_encoder(0), _tiny_batches(0), [], 0.5),
        lambda: gaprune(_tiny_encoder(0), _tiny_batches(0), _tiny_batches(1), 0.5, window=2),
        lambda: gaprune(nn.Sequential(nn.Conv1d(1, 1, 1)), _tiny_batches(0), _tiny_batches(1), 0.5),
        lambda: gaprune("model", _tiny_batches(0), _tiny_batches(1), 0.5),
    ),
)
