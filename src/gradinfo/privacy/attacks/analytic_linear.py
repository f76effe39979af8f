"""ANA-GIA: closed-form recovery of the input of a fully connected layer with bias from its gradients.

For ``y = W x + b`` and one example, ``dL/dW = (dL/dy) x^T`` and ``dL/db = dL/dy``, so every row ``i`` with
``dL/db_i != 0`` gives the input exactly (Phong et al., "Privacy-Preserving Deep Learning via Additively
Homomorphic Encryption", 2017; Geiping et al., "Inverting Gradients", 2020):

    x = (dL/dW_i) / (dL/db_i),      here in least squares over all rows: x = sum_i gb_i gW_i / sum_i gb_i^2.

After K local SGD steps on one example the delta is ``(lr sum_k dL/dy^(k)) x^T``, so the same ratio of the
delta is still exact. For a batch each row mixes the examples it is active for. Rows active for one example
only give that example exactly; the attack collects the ratios of all rows and returns the ``B`` values
that the most rows agree on. Against a model carrying an imprint layer
(:func:`gradinfo.privacy.attacks.imprint.imprint_model`; Fowl et al., "Robbing the Fed", 2022), whose rows
are collinear, it sorts the rows by threshold and divides differences of consecutive rows instead, which
isolate the examples of one bin each. Such a layer is easy to spot (:func:`detect_imprint`), the survey's
point about analytic attacks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from gradinfo.core.registry import Conformance, register
from gradinfo.core.validate import fraction, positive_int
from gradinfo.models import mlp
from gradinfo.privacy.attacks.imprint import collinear_rows
from gradinfo.privacy.threat import Reconstruction, SharedUpdate, share

_COLLINEAR = 0.99  # |cos| at which rows count as one imprint group (as in detect_imprint)
_SAME = 1e-4  # relative distance under which two row ratios count as the same recovered input


def _find_layer(model: nn.Module, update: SharedUpdate, layer: str | None) -> tuple[str, nn.Linear]:
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and m.bias is not None}
    shared = {n for n in linears if f"{n}.weight" in update.grads and f"{n}.bias" in update.grads}
    if layer is None:
        if not shared:
            raise ValueError(
                "the update holds no gradient of an nn.Linear with bias of the model "
                f"(update keys: {sorted(update.grads)[:6]}); analytic_linear needs the raw gradient or delta "
                "of a fully connected layer with bias"
            )
        name = next(n for n in linears if n in shared)
        return name, linears[name]
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module name (str) or None, got {type(layer).__name__}")
    if layer not in shared:
        raise ValueError(
            f"layer {layer!r} is not an nn.Linear with bias whose gradients the update holds; "
            f"candidates: {sorted(shared)}"
        )
    return layer, linears[layer]


def _bin_differences(weight: Tensor, bias: Tensor, gw: Tensor, gb: Tensor) -> tuple[Tensor, Tensor] | None:
    """Imprint rows (a collinear group) sorted by threshold and differenced; None if the rows are not one."""
    group = collinear_rows(weight, _COLLINEAR)  # [k]
    if group.numel() < 2:
        return None
    w = weight.detach().to(gw.dtype)  # [m, n]
    anchor = w[group[w[group].norm(dim=1).argmax()]]  # [n]
    scale = w[group] @ anchor / anchor.norm()  # [k]  row i is active iff scale_i h + b_i > 0
    group = group[scale > 0]
    thresholds = -bias.detach().to(gw.dtype)[group] / scale[scale > 0]  # [k]
    rows = group[thresholds.argsort()]  # ascending: row k's active set contains row k+1's
    cw, cb = gw[rows], gb[rows]  # [k, n], [k]
    dw = cw - torch.cat([cw[1:], torch.zeros_like(cw[:1])])  # [k, n]  examples of bin k only
    db = cb - torch.cat([cb[1:], torch.zeros_like(cb[:1])])  # [k]
    return dw, db


def _pick(dw: Tensor, db: Tensor, batch: int, rel_tol: float) -> Tensor:
    """Up to ``batch`` inputs: least squares for B = 1, else the row ratios most rows agree on."""
    keep = db.abs() > rel_tol * db.abs().max()  # [r]
    dw, db = dw[keep], db[keep]
    if batch == 1:
        return (db @ dw / (db @ db)).unsqueeze(0)  # [1, n]
    ratios = dw / db.unsqueeze(1)  # [r, n]
    norms = ratios.norm(dim=1)  # [r]
    dist = torch.cdist(ratios, ratios)  # [r, r]
    same = dist <= _SAME * torch.maximum(norms.unsqueeze(0), norms.unsqueeze(1))  # [r, r]
    support = same.sum(1)  # [r]  how many rows give (nearly) this ratio
    order = sorted(range(len(db)), key=lambda i: (-int(support[i]), -float(db[i].abs())))
    picked: list[int] = []
    for i in order:
        if len(picked) == batch:
            break
        if not any(bool(same[i, j]) for j in picked):
            picked.append(i)
    return ratios[picked]  # [<= B, n]


@register(
    "analytic_linear",
    family="privacy",
    paper=4,
    summary="Closed-form input recovery from a linear layer's shared gradients: x = (dL/dW_i) / (dL/db_i)",
    claim="gradinfo.claims.analytic_linear:check",
    example="gradinfo.privacy.attacks.analytic_linear:CONFORMANCE",
)
def analytic_linear(
    model: nn.Module,
    update: SharedUpdate,
    *,
    layer: str | None = None,
    input_shape: Sequence[int] | None = None,
    iterations: int = 0,
    seed: int = 0,
    rel_tol: float = 1e-5,
) -> Reconstruction:
    """Recover the inputs of a fully connected layer with bias in closed form (ANA-GIA).

    Implements the analytic attack of the survey "Exploring the Vulnerabilities of Federated Learning: A
    Deep Dive into Gradient Inversion Attacks" (Guo et al., 2025): ``x = (dL/dW_i) / (dL/db_i)`` for one
    example (least squares over every row), row ratios agreed on by several rows for a batch, and
    consecutive-row differences ``x_j = (dW_k - dW_{k+1}) / (db_k - db_{k+1})`` against an imprint layer
    whose rows are collinear (Fowl et al., 2022). Exact up to rounding for B = 1 (gradient or K-step
    delta) and for every example alone in its imprint bin; examples sharing a bin come back mixed.

    Args:
        model: the round-start model (the attacker reads the layer's weights to spot an imprint).
        update: the shared update; must hold the undefended gradient or delta of ``layer``.
        layer: name of the ``nn.Linear`` (with bias) to invert; None picks the first such module whose
            gradients the update holds. If it is not the model's first layer, its input features come back.
        input_shape: shape of one input to reshape the result to, e.g. ``(1, 8, 8)``; None keeps
            ``[B, in_features]``.
        iterations: ignored (the attack is closed-form); accepted so every attack takes the same arguments.
        seed: ignored likewise; an int >= 0.
        rel_tol: rows (or bin differences) with ``|dL/db| <= rel_tol * max |dL/db|`` count as empty,
            in (0, 1).

    Returns:
        A ``Reconstruction`` with ``inputs`` ``[B, *input_shape]`` (rows not recovered are zero), ``labels``
        None, an empty ``loss_trace``; ``extras``: ``layer``, ``mode`` (``"imprint"`` or ``"rows"``) and
        ``recovered`` (how many inputs were found).

    Raises:
        TypeError / ValueError: a bad argument, or an update that lacks the layer's gradients.
    """
    start = time.perf_counter()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(update, SharedUpdate):
        raise TypeError(f"update must be a gradinfo.privacy.SharedUpdate, got {type(update).__name__}")
    positive_int("iterations", iterations, minimum=0)
    positive_int("seed", seed, minimum=0)
    rel_tol = fraction("rel_tol", rel_tol)
    name, linear = _find_layer(model, update, layer)
    shape = (linear.in_features,) if input_shape is None else tuple(input_shape)
    if (
        not all(isinstance(s, int) and s > 0 for s in shape)
        or torch.Size(shape).numel() != linear.in_features
    ):
        raise ValueError(
            f"input_shape must be ints whose product is {name}'s in_features {linear.in_features}, "
            f"got {input_shape!r}"
        )
    gw = update.grads[f"{name}.weight"]  # [m, n]
    gb = update.grads[f"{name}.bias"]  # [m]
    binned = _bin_differences(linear.weight, linear.bias, gw, gb)
    dw, db = binned if binned is not None else (gw, gb)  # [r, n], [r]
    found = _pick(dw, db, update.batch_size, rel_tol)  # [k, n]
    inputs = torch.zeros(update.batch_size, linear.in_features, dtype=gw.dtype, device=gw.device)  # [B, n]
    inputs[: found.shape[0]] = found
    return Reconstruction(
        inputs=inputs.reshape(update.batch_size, *shape),
        labels=None,
        loss_trace=[],
        seconds=time.perf_counter() - start,
        extras={"layer": name, "mode": "rows" if binned is None else "imprint", "recovered": found.shape[0]},
    )


def _victim(seed: int) -> tuple[nn.Module, SharedUpdate]:
    gen = torch.Generator().manual_seed(seed)
    model = mlp(6, 3, hidden=(5,), seed=seed)
    x, y = torch.rand(1, 6, generator=gen), torch.randint(0, 3, (1,), generator=gen)  # [1, 6], [1]
    return model, share(model, nn.functional.cross_entropy, x, y)


CONFORMANCE = Conformance(
    call=lambda seed: analytic_linear(*_victim(seed), seed=seed).inputs,
    bad_calls=(
        lambda: analytic_linear(_victim(0)[0], "not an update"),  # type: ignore[arg-type]
        lambda: analytic_linear(*_victim(0), layer="missing"),
        lambda: analytic_linear(*_victim(0), rel_tol=2.0),
        lambda: analytic_linear(*_victim(0), input_shape=(4, 4)),
        lambda: analytic_linear(*_victim(0), iterations=-1),
    ),
)
