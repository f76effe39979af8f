"""Token-set leakage from the gradients of a transformer fine-tuned with LoRA or trainable embeddings.

The token-extraction stage of Zhang et al., "ReCIT: Reconstructing Full Private Data from Gradient in
Parameter-Efficient Fine-Tuning of Large Language Models" (2025; paper 32): the server infers which vocabulary
tokens a client's batch holds from the shared parameter-efficient gradients. The paper's exact filter is not
published; this module implements the two tests the literature establishes (the paper's memory strengthening
and PII generation need a maliciously fine-tuned LLM and are out of scope here).

``embedding`` (trainable, untied input embeddings; as in Gupta et al., "Recovering Private Text in Federated
Learning of Language Models", 2022, and Balunovic et al., "LAMP", 2022): with e_t = E[x_t],

    dL/dE[v] = sum_{t : x_t = v} dL/de_t,

so row v of the embedding gradient is non-zero exactly when token v occurs in the batch (barring an exact
cancellation). The recovered set is {v : ||dL/dE[v]|| > 0}; exact for any batch size.

``span`` (LoRA-only or full fine-tuning; the span check of Petrov et al., "DAGER: Exact Gradient Inversion for
Large Language Models", 2024): a linear map y = W z applied position-wise to the first block's inputs z_i
(i over the batch's B T token positions) has dL/dW = sum_i (dL/dy_i) z_i^T, and a LoRA adapter
y = W z + s B A z has dL/dA = s B^T sum_i (dL/dy_i) z_i^T. Either way every row of the gradient (every
column of a ``Conv1D`` weight, stored [in, out]) lies in span{z_i}. Before any attention the input z_{v,t}
depends only on the token v and its position t, so the attack probes the model with every (v, t),
computes the relative distance of z_{v,t} to the gradient's row space R (orthonormal basis from an SVD,
singular values kept above ``rank_tol`` times the largest),

    d(v, t) = ||z_{v,t} - P_R z_{v,t}|| / ||z_{v,t}||,

and recovers {v : min_t d(v, t) < tau} together with the matching (token, position) pairs. It is exact while
the gradient has full rank over the batch's distinct inputs: rank(dL/dA) <= r for a rank-r adapter and
dim R <= D (the model width), so recall falls once B T exceeds r, and precision falls once dim R nears D
(every vector then lies close to R). A LoRA adapter at its usual initialisation (B = 0) has dL/dA = 0: the
attack needs the adapter to have trained for at least one step. Weight deltas (several local steps) keep the
same row space, so ``SharedUpdate``s of either kind work.
"""

from __future__ import annotations

import time
from typing import Literal

import torch
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from gradinfo.core.registry import Conformance, register
from gradinfo.core.validate import one_of, positive, positive_int
from gradinfo.privacy.threat import Reconstruction, SharedUpdate

Method = Literal["auto", "embedding", "span"]
_METHODS = ("auto", "embedding", "span")


class _Captured(Exception):
    """Raised from the probe hook to stop the forward pass once the layer's input is captured."""


def _input_embedding(model: nn.Module) -> nn.Embedding:
    """The token embedding: ``get_input_embeddings()`` if defined, else the first ``nn.Embedding``."""
    getter = getattr(model, "get_input_embeddings", None)
    if callable(getter):
        emb = getter()
        if isinstance(emb, nn.Embedding):
            return emb
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            return module
    raise ValueError(f"model ({type(model).__name__}) has no nn.Embedding: token_leak needs a token-id model")


def _param_names(model: nn.Module) -> dict[int, str]:
    return {id(p): n for n, p in model.named_parameters()}


def _is_tied(model: nn.Module, emb: nn.Embedding) -> bool:
    """Whether another module (an output head) shares the embedding's weight tensor."""
    return any(
        module is not emb and any(p is emb.weight for p in module.parameters(recurse=False))
        for module in model.modules()
    )


def _span_layer(model: nn.Module, update: SharedUpdate, layer: str | None) -> tuple[str, nn.Module]:
    """The gradient used by the span check: ``layer``, or the first Linear/Conv1D weight in the update."""
    if layer is not None:
        if layer not in update.grads:
            raise ValueError(
                f"layer={layer!r} is not in the update; its parameters are {sorted(update.grads)[:8]}..."
            )
        module = model.get_submodule(layer.rpartition(".")[0])
        if not isinstance(module, (nn.Linear, Conv1D)) or module.weight is not dict(
            model.named_parameters()
        ).get(layer):
            raise ValueError(
                f"layer={layer!r} must name the weight of an nn.Linear or transformers Conv1D module"
            )
        return layer, module
    for name, p in model.named_parameters():
        if name not in update.grads or p.dim() != 2:
            continue
        module = model.get_submodule(name.rpartition(".")[0])
        if isinstance(module, (nn.Linear, Conv1D)) and module.weight is p:
            return name, module
    raise ValueError(
        "the update holds no nn.Linear/Conv1D weight gradient (e.g. a LoRA lora_A) for the span check, and "
        "no trainable untied input embedding; share the gradient of a LoRA-adapted or trainable first layer"
    )


def _set_eval(model: nn.Module) -> dict[nn.Module, bool]:
    modes = {m: m.training for m in model.modules()}
    model.eval()
    return modes


def _probe(model: nn.Module, module: nn.Module, ids: Tensor) -> Tensor:
    """The input of ``module`` when ``model(ids)`` runs, ``[N, T, D]``; the forward stops there."""
    captured: list[Tensor] = []

    def hook(_: nn.Module, args: tuple[Tensor, ...]) -> None:
        captured.append(args[0].detach())
        raise _Captured

    handle = module.register_forward_pre_hook(hook)
    try:
        model(ids)
    except _Captured:
        pass
    finally:
        handle.remove()
    if not captured:
        raise ValueError(f"model(input_ids) never called the layer {type(module).__name__} token_leak probes")
    return captured[0]  # [N, T, D]


def _check_positionwise(model: nn.Module, module: nn.Module, vocab: int, positions: int, name: str) -> None:
    """Raise unless the layer's input at position t depends on the token at t alone (no attention before)."""
    if positions < 2:
        return
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (1, positions), generator=gen).repeat(2, 1)  # [2, T]
    ids[1, 0] = (ids[0, 0] + 1) % vocab
    z = _probe(model, module, ids.to(_device(model))).double()  # [2, T, D]
    if not torch.allclose(z[0, 1:], z[1, 1:], rtol=1e-4, atol=1e-6):
        raise ValueError(
            f"the input of {name!r} at one position depends on other positions' tokens (it follows an "
            "attention layer); the span check needs a layer of the first block before attention, e.g. the "
            "LoRA lora_A of layer 0's attention projection"
        )


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _span_distances(
    model: nn.Module, module: nn.Module, grad: Tensor, vocab: int, positions: int, rank_tol: float, chunk: int
) -> tuple[Tensor, int]:
    """``d(v, t)`` for every token and position ``[V, T]`` and the rank of the gradient's row space."""
    rows = grad.T if isinstance(module, Conv1D) else grad  # [r or out, D]: rows in span of the inputs
    rows = rows.detach().to(torch.float64)
    _, s, vh = torch.linalg.svd(rows, full_matrices=False)  # s: [k], vh: [k, D]
    rank = int((s > rank_tol * s[0]).sum()) if s.numel() and s[0] > 0 else 0
    basis = vh[:rank]  # [k, D]
    device = _device(model)
    out = []
    for start in range(0, vocab, chunk):
        tokens = torch.arange(start, min(start + chunk, vocab), device=device)  # [c]
        ids = tokens[:, None].expand(-1, positions)  # [c, T]
        z = _probe(model, module, ids).to(torch.float64).cpu()  # [c, T, D]
        resid = z - (z @ basis.T) @ basis  # [c, T, D]
        out.append(resid.norm(dim=-1) / z.norm(dim=-1).clamp_min(1e-30))  # [c, T]
    return torch.cat(out), rank  # [V, T]


def _positions(model: nn.Module, positions: int | None) -> int:
    if positions is not None:
        return positive_int("positions", positions)
    config = getattr(model, "config", None)
    for key in ("n_positions", "max_position_embeddings"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(
        f"positions=None but the model ({type(model).__name__}) has no config.n_positions or "
        "config.max_position_embeddings; pass positions=<the padded sequence length the server set>"
    )


def _check(model: object, update: object, tau: object, rank_tol: object, chunk: object, seed: object) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module (the round-start model), got {type(model).__name__}"
        )
    if not isinstance(update, SharedUpdate):
        raise TypeError(
            f"update must be a gradinfo.privacy.SharedUpdate (from share(...)), got {type(update).__name__}"
        )
    tau = positive("tau", tau)
    if tau >= 1:
        raise ValueError(f"tau must lie in (0, 1) (a relative distance), got {tau!r}")
    rank_tol = positive("rank_tol", rank_tol)
    if rank_tol >= 1:
        raise ValueError(
            f"rank_tol must lie in (0, 1) (relative to the largest singular value), got {rank_tol!r}"
        )
    positive_int("chunk", chunk)
    positive_int("seed", seed, minimum=0)


@register(
    "token_leak",
    family="privacy",
    paper=32,
    summary="Recovers a batch's token set from embedding-gradient rows or a span check on LoRA-A gradients",
    claim="gradinfo.claims.token_leak:check",
    example="gradinfo.privacy.attacks.token_leak:CONFORMANCE",
    missing="ReCIT's attack itself (malicious fine-tuning of a pretrained LLM on Personal Notes, its token "
    "filter and token pairing rebuilding prefixes and PII); only the token-set leak is built",
)
def token_leak(
    model: nn.Module,
    update: SharedUpdate,
    *,
    method: Method = "auto",
    layer: str | None = None,
    positions: int | None = None,
    tau: float = 0.05,
    rank_tol: float = 1e-6,
    chunk: int = 1024,
    seed: int = 0,
) -> Reconstruction:
    """Recover the set of token ids in the client's batch from its shared update.

    Implements the token-extraction idea of "ReCIT: Reconstructing Full Private Data from Gradient in
    Parameter-Efficient Fine-Tuning of Large Language Models" (2025): ``embedding`` takes the non-zero rows of
    the input-embedding gradient, {v : ||dL/dE[v]|| > 0}; ``span`` keeps the tokens whose first-block input
    z_{v,t} lies in the row space R of a first-layer gradient, {v : min_t ||z - P_R z|| / ||z|| < tau}
    (see the module docstring for the derivation and its limits).

    The server knows the round-start ``model`` (with its adapters) and the update; ``positions``, the padded
    sequence length, is public too (the server configures the fine-tuning). The model is probed with
    ``model(input_ids)`` (``[N, T]``, the call ``share`` makes) in eval mode, stopped at the probed layer;
    its modes are restored afterwards and its parameters are not touched. The attack is deterministic.

    Args:
        model: the round-start model taking ``input_ids`` ``[N, T]`` (a ``transformers`` model, a ``peft``
            model, or a wrapper around one); its token embedding is ``get_input_embeddings()`` or else its
            first ``nn.Embedding``.
        update: the client's ``SharedUpdate`` (a gradient or a multi-step delta).
        method: ``"embedding"``, ``"span"``, or ``"auto"``: ``embedding`` when the update holds the gradient
            of an input embedding not tied to an output head (a tied head makes every row non-zero), else
            ``span``.
        layer: for ``span``, the update key of the ``nn.Linear``/``Conv1D`` weight to use; None takes the
            first such weight in the model's parameter order (a LoRA ``lora_A`` of layer 0, or the first
            attention projection under full fine-tuning). It must act before any attention.
        positions: the sequence length to probe (``span`` only); None reads ``config.n_positions`` or
            ``config.max_position_embeddings``.
        tau: ``span``'s distance threshold, in (0, 1).
        rank_tol: singular values of the gradient below ``rank_tol`` times the largest are dropped, in (0, 1)
            (float32 gradients carry rounding noise near 1e-7 of the largest).
        chunk: tokens probed per forward pass.
        seed: accepted for the common attack signature, an int >= 0; unused (the attack is deterministic).

    Returns:
        ``Reconstruction`` with ``inputs`` the recovered token ids ``[K]`` (int64, sorted), ``labels`` None,
        an empty loss trace, and ``extras``: ``"tokens"`` (the ids as a sorted list), ``"scores"`` ``[V]``
        (``embedding``: the row norms; ``span``: ``1 - min_t d(v, t)``; higher means present), ``"method"``,
        ``"layer"`` (the gradient used) and, for ``span``, ``"pairs"`` ``[P, 2]`` (token, position) with
        ``d < tau`` (for B = 1 the sequence itself) and ``"rank"`` (dim R).

    Raises:
        TypeError: ``model`` or ``update`` of the wrong type.
        ValueError: a bad threshold, ``positions`` or ``layer``; an update with neither an embedding nor a
            Linear/Conv1D gradient; or a layer whose input mixes positions.
    """
    _check(model, update, tau, rank_tol, chunk, seed)
    method = one_of("method", method, _METHODS)  # type: ignore[assignment]
    start = time.perf_counter()
    emb = _input_embedding(model)
    emb_name = _param_names(model).get(id(emb.weight))
    if method == "auto":
        usable = emb_name in update.grads and not _is_tied(model, emb)
        method = "embedding" if usable else "span"
    if method == "embedding":
        if emb_name not in update.grads:
            raise ValueError(
                f"method='embedding' needs the input embedding's gradient ({emb_name!r}) in the update; "
                "it is frozen: use method='span'"
            )
        scores = update.grads[emb_name].detach().to(torch.float64).norm(dim=1).cpu()  # [V]
        tokens = torch.nonzero(scores > 0).flatten()  # [K]
        extras = {"tokens": tokens.tolist(), "scores": scores, "method": "embedding", "layer": emb_name}
        return Reconstruction(tokens, None, [], time.perf_counter() - start, extras)

    name, module = _span_layer(model, update, layer)
    length = _positions(model, positions)
    vocab = emb.num_embeddings
    modes = _set_eval(model)
    try:
        with torch.no_grad():
            _check_positionwise(model, module, vocab, length, name)
            dist, rank = _span_distances(model, module, update.grads[name], vocab, length, rank_tol, chunk)
    finally:
        for m, training in modes.items():
            m.train(training)
    best = dist.min(dim=1).values  # [V]
    tokens = torch.nonzero(best < tau).flatten()  # [K]
    pairs = torch.nonzero(dist < tau)  # [P, 2] (token, position)
    extras = {
        "tokens": tokens.tolist(),
        "scores": 1.0 - best,
        "method": "span",
        "layer": name,
        "pairs": pairs,
        "rank": rank,
    }
    return Reconstruction(tokens, None, [], time.perf_counter() - start, extras)


def _conformance_call(seed: int) -> tuple[Tensor, Tensor, Tensor]:
    from gradinfo.models import tiny_gpt2
    from gradinfo.privacy.threat import share

    model = tiny_gpt2(vocab_size=32, hidden_size=16, num_layers=1, num_heads=2, max_positions=8, seed=seed)
    ids = torch.randint(0, 32, (1, 5), generator=torch.Generator().manual_seed(seed))  # [1, 5]

    def loss(out: object, y: Tensor) -> Tensor:
        return nn.functional.cross_entropy(out.logits.flatten(0, 1), y.flatten())  # type: ignore[attr-defined]

    update = share(model, loss, ids, ids.roll(-1, dims=1), seed=seed)
    rec = token_leak(model, update, positions=5, seed=seed)
    return rec.inputs, rec.extras["scores"], rec.extras["pairs"]


def _bad_update() -> SharedUpdate:
    return SharedUpdate(grads={}, kind="gradient", batch_size=1, local_steps=1, lr=0.1, defense="none")


CONFORMANCE = Conformance(
    call=_conformance_call,
    bad_calls=(
        lambda: token_leak("model", _bad_update()),  # type: ignore[arg-type]
        lambda: token_leak(nn.Embedding(4, 2), {}),  # type: ignore[arg-type]
        lambda: token_leak(nn.Embedding(4, 2), _bad_update(), tau=1.5),
        lambda: token_leak(nn.Embedding(4, 2), _bad_update(), method="rows"),  # type: ignore[arg-type]
        lambda: token_leak(nn.Embedding(4, 2), _bad_update(), method="embedding"),
    ),
)
