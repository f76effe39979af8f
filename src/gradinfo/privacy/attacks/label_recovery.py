"""Label recovery from the last layer's shared gradient (iDLG sign rule; bias-gradient counting for batches).

With cross-entropy and softmax outputs p, the last fully-connected layer ``z = W h + b`` of a batch-mean
gradient has

    dL/db_k  = (1/B) sum_i (p_ik - y_ik)
    dL/dW_k. = (1/B) sum_i (p_ik - y_ik) h_i

- B = 1 (Zhao et al., "iDLG: Improved Deep Leakage from Gradients", 2020): p_k - y_k < 0 only for the true
  class, so the label is ``argmin_k dL/db_k``; without a bias, ``argmin_k sum_j dL/dW_kj``, which holds
  whenever the features h are non-negative (after a ReLU). Exact, whatever the weights.
- B > 1 (a count rule in the spirit of Geng et al., "Towards General Deep Leakage in Federated Learning",
  2021, and Wainakh et al., "User-Level Label Leakage from Gradients in Federated Learning", 2022): the
  count of class k is n_k = B (mean_i p_ik - dL/db_k). The attacker estimates mean_i p_ik by the model's mean
  softmax on random inputs drawn uniformly from the data range (it knows the data shape and range); without
  a bias it uses the weight-row sums divided by the mean feature sum on the same random inputs. Every class
  whose gradient is negative must occur at least once (n_k > 0); the rest of the batch is filled by the
  largest remaining estimates.

Part of the optimisation-attack toolbox surveyed in Guo et al., "Exploring the Vulnerabilities of Federated
Learning: A Deep Dive into Gradient Inversion Attacks", 2025 (paper 4).
"""

from __future__ import annotations

import copy
import time

import torch
from torch import Tensor, nn

from gradinfo.core.registry import Conformance, register
from gradinfo.core.validate import positive_int
from gradinfo.privacy.attacks._common import check_update, example_model, example_update, shape_arg
from gradinfo.privacy.threat import Reconstruction, SharedUpdate


def last_layer(model: nn.Module, layer: str | None = None) -> tuple[str, nn.Linear]:
    """The classifier: the module called ``layer``, or else the last ``nn.Linear`` in ``named_modules`` order.

    Raises:
        ValueError: no such module, or it is not an ``nn.Linear``.
    """
    if layer is not None:
        if not isinstance(layer, str):
            raise TypeError(f"layer must be a module name (str) or None, got {type(layer).__name__}")
        names = dict(model.named_modules())
        if layer not in names or not isinstance(names[layer], nn.Linear):
            linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
            raise ValueError(
                f"layer must name an nn.Linear of the model ({', '.join(linears)}), got {layer!r}"
            )
        return layer, names[layer]
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("label recovery needs a final nn.Linear classifier; the model has no nn.Linear")
    return linears[-1]


def _class_scores(grads: dict[str, Tensor], name: str, linear: nn.Linear) -> tuple[Tensor, bool]:
    """Per-class last-layer signal ``[K]``: the bias gradient, or the weight-row sums; and whether bias."""
    prefix = f"{name}." if name else ""
    if linear.bias is not None and f"{prefix}bias" in grads:
        return grads[f"{prefix}bias"].detach().double(), True  # [K]
    if f"{prefix}weight" not in grads:
        raise ValueError(
            f"the update holds no gradient for the classifier {name!r} ({prefix}weight / {prefix}bias); "
            "pass layer= naming the last fully-connected layer whose gradient is shared"
        )
    return grads[f"{prefix}weight"].detach().double().sum(dim=1), False  # [K]


def _probe(
    model: nn.Linear | nn.Module,
    linear: nn.Linear,
    input_shape: tuple[int, ...],
    box: tuple[float, float],
    probes: int,
    seed: int,
) -> tuple[Tensor, Tensor]:
    """Mean softmax ``[K]`` and mean feature sum (scalar) of the model on uniform random inputs."""
    net = copy.deepcopy(model).eval()
    feats: list[Tensor] = []
    clone = dict(zip(model.modules(), net.modules(), strict=True))[linear]
    hook = clone.register_forward_pre_hook(lambda m, args: feats.append(args[0].detach()))
    gen = torch.Generator().manual_seed(seed)
    param = next(model.parameters())
    x = box[0] + (box[1] - box[0]) * torch.rand((probes, *input_shape), generator=gen, dtype=param.dtype)
    with torch.no_grad():
        probs = net(x.to(param.device)).double().softmax(-1).mean(0)  # [K]
    hook.remove()
    return probs, feats[0].double().sum(-1).mean()


def _allocate(estimate: Tensor, present: Tensor, batch: int) -> Tensor:
    """Integer counts ``[K]`` summing to ``batch``: 1 for each present class, then greedy on the estimate."""
    counts = torch.zeros_like(estimate, dtype=torch.long)
    if int(present.sum()) <= batch:
        counts[present] = 1
    residual = estimate.clone()
    for _ in range(batch - int(counts.sum())):
        k = int((residual - counts).argmax())
        counts[k] += 1
    return counts


@register(
    "label_recovery",
    family="privacy",
    paper=4,
    summary="Labels from the last layer's gradient: iDLG sign rule at B=1, bias-gradient counts for batches",
    claim="gradinfo.claims.label_recovery:check",
    example="gradinfo.privacy.attacks.label_recovery:CONFORMANCE",
)
def label_recovery(
    model: nn.Module,
    update: SharedUpdate,
    *,
    input_shape: tuple[int, ...] | None = None,
    box: tuple[float, float] = (0.0, 1.0),
    layer: str | None = None,
    probes: int = 64,
    seed: int = 0,
) -> Reconstruction:
    """Recover the labels of the batch behind ``update`` from its last-layer gradient.

    Implements the label attacks of the optimisation-based inversion family surveyed in "Exploring the
    Vulnerabilities of Federated Learning: A Deep Dive into Gradient Inversion Attacks" (2025): at B = 1 the
    iDLG rule ``y = argmin_k dL/db_k`` (or ``argmin_k sum_j dL/dW_kj`` without a bias), exact for
    cross-entropy; at B > 1 the counts ``n_k = B (mean_i p_ik - dL/db_k)``, rounded so that they sum to B
    and every class with a negative gradient appears.

    Args:
        model: the round-start model; its classifier is its last ``nn.Linear`` (or ``layer``).
        update: the shared gradient (``kind == "gradient"``) of a batch-mean cross-entropy loss.
        input_shape: one example's shape, needed for B > 1 (random probes estimate mean softmax); ignored
            at B = 1.
        box: the data range ``(low, high)`` the probes are drawn from.
        layer: the classifier's module name, if not the last ``nn.Linear``.
        probes: random inputs used to estimate the mean softmax and feature sum, >= 1.
        seed: seeds the probes.

    Returns:
        A ``Reconstruction`` with ``labels`` ``[B]`` (sorted by class: the batch order is not recoverable),
        ``inputs`` an empty ``[B, 0]`` tensor (no inputs are recovered), and ``extras`` holding
        ``counts`` ``[K]``, the per-class gradient signal ``scores`` ``[K]`` and the rule used.

    Raises:
        TypeError, ValueError: a bad argument, an update of another kind, or no classifier gradient.
    """
    start = time.perf_counter()
    batch = check_update(model, update)
    name, linear = last_layer(model, layer)
    probes = positive_int("probes", probes)
    positive_int("seed", seed, minimum=0)
    scores, has_bias = _class_scores(update.grads, name, linear)  # [K]
    if batch == 1:
        counts = torch.zeros(scores.shape[0], dtype=torch.long)
        counts[int(scores.argmin())] = 1
        rule = "idlg-bias-sign" if has_bias else "idlg-weight-sign"
    else:
        if input_shape is None:
            raise ValueError(f"input_shape is needed to count labels of a batch of {batch}; got None")
        input_shape = shape_arg("input_shape", input_shape)
        if len(box) != 2 or not float(box[0]) < float(box[1]):
            raise ValueError(f"box must be (low, high) with low < high; got {box!r}")
        mean_prob, feature_sum = _probe(model, linear, input_shape, box, probes, seed)
        signal = scores if has_bias else scores / feature_sum.clamp_min(1e-12)  # [K] ~ mean_i (p_ik - y_ik)
        estimate = batch * (mean_prob - signal)  # [K]
        counts = _allocate(estimate, scores < 0, batch)
        rule = "bias-count" if has_bias else "weight-count"
    labels = torch.repeat_interleave(torch.arange(counts.shape[0]), counts)  # [B]
    return Reconstruction(
        inputs=torch.empty(batch, 0),
        labels=labels,
        loss_trace=[],
        seconds=time.perf_counter() - start,
        extras={"counts": counts, "scores": scores.float(), "rule": rule},
    )


CONFORMANCE = Conformance(
    call=lambda seed: (
        label_recovery(
            example_model(seed), example_update(seed, batch=3), input_shape=(3, 8, 8), seed=seed
        ).labels
    ),
    bad_calls=(
        lambda: label_recovery(example_model(0), example_update(0), probes=0),
        lambda: label_recovery(example_model(0), "gradient"),
        lambda: label_recovery(example_model(0), example_update(0, batch=3)),
        lambda: label_recovery(example_model(0), example_update(0), layer="conv1"),
    ),
)
