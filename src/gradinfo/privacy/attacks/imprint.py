"""The imprint (binning) module a malicious server inserts, and a check that finds one.

Fowl et al., "Robbing the Fed: Directly Obtaining Private Data in Federated Learning with Modified Models"
(2022) prepend a linear layer whose ``n`` rows all measure one scalar statistic of the input,
``h(x) = v . x`` (mean brightness: ``v = 1/d``; or a fixed random direction), with biases at ``n``
thresholds ``t_1 < ... < t_n`` taken from the statistic's quantiles on public data:

    a_k(x) = relu(gain (v . x - t_k)),      out = x + readout * sum_k a_k(x).

Every row feeds the model through the same readout, so the loss gradient at row ``k`` for example ``j``
is one number ``c_j`` for every row that ``x_j`` switches on (``h(x_j) > t_k``). The shared gradient of
row ``k`` is then ``dL/dW_k = sum_{j: h(x_j) > t_k} c_j x_j`` and ``dL/db_k = sum_{j: h(x_j) > t_k} c_j``,
so the difference of consecutive rows holds exactly the examples with ``t_k < h(x_j) <= t_{k+1}``; an
example alone in its bin is ``x_j = (dW_k - dW_{k+1}) / (db_k - db_{k+1})``
(:func:`gradinfo.privacy.attacks.analytic_linear` does this).

The survey (Guo et al., "Exploring the Vulnerabilities of Federated Learning: A Deep Dive into Gradient
Inversion Attacks", 2025) stresses that such analytic attacks are detectable: an imprint layer has many
weight rows that are collinear (identical up to scale), which trained or randomly initialised layers of
more than a few inputs never have. :func:`detect_imprint` flags a model with such a layer.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradinfo.core.validate import fraction, one_of, positive, positive_int

STATISTICS: tuple[str, ...] = ("mean", "random")

_CHUNK_ROWS = 2048  # rows of the cosine matrix formed at once in detect_imprint


class Imprint(nn.Module):
    """``out = x + readout * sum_k relu(linear(flatten(x)))_k``: the binning layer of Fowl et al. (2022).

    Build it with :func:`imprint_model`; ``linear`` holds the bins (rows ``gain * v``, biases
    ``-gain * t_k``).
    """

    def __init__(self, num_features: int, bins: int, readout: float) -> None:
        super().__init__()
        self.linear = nn.Linear(num_features, bins)
        self.readout = readout

    def forward(self, x: Tensor) -> Tensor:
        active = F.relu(self.linear(x.flatten(1)))  # [B, bins]
        bump = self.readout * active.sum(1)  # [B]
        return x + bump.view(-1, *([1] * (x.dim() - 1)))  # [B, ...]


def _check_shape(input_shape: object) -> tuple[int, ...]:
    if not isinstance(input_shape, Sequence) or isinstance(input_shape, str) or not input_shape:
        raise TypeError(f"input_shape must be a non-empty tuple of ints (one example), got {input_shape!r}")
    for i, side in enumerate(input_shape):
        positive_int(f"input_shape[{i}]", side)
    return tuple(int(s) for s in input_shape)


def imprint_model(
    model: nn.Module,
    bins: int,
    input_shape: tuple[int, ...],
    *,
    public_inputs: Tensor,
    statistic: str = "mean",
    gain: float = 1.0,
    readout: float = 1e-3,
    seed: int = 0,
) -> nn.Sequential:
    """The model a malicious server sends: an :class:`Imprint` layer of ``bins`` rows, then ``model``.

    Thresholds: ``t_1`` lies one statistic range below the smallest public value (so row 1 is active for
    almost every input), ``t_2 .. t_n`` at the public quantiles ``1/n, ..., (n-1)/n``; bins then hold equal
    shares of inputs distributed like the public data.

    Args:
        model: the honest model ``[B, *input_shape] -> outputs``; it is deep-copied, not modified.
        bins: the number of rows ``n >= 2`` (at most one example per bin is recovered exactly).
        input_shape: the shape of one input, e.g. ``(1, 8, 8)``.
        public_inputs: ``[N, *input_shape]`` data the server holds, distributed like the clients' (N >= 2).
        statistic: ``"mean"`` (mean brightness, ``v = 1/d``) or ``"random"`` (``v ~ N(0, I/d)``, seeded).
        gain: scale of the bin rows, > 0 (the rows are ``gain * v``).
        readout: how strongly the bins feed the model, > 0 (small keeps the model's function nearly
            unchanged; the recovered inputs do not depend on it).
        seed: int >= 0 seeding the random direction.

    Returns:
        ``nn.Sequential(OrderedDict(imprint=Imprint, model=copy))``, in the dtype of ``public_inputs``;
        the bins are ``imprint.linear`` (parameters ``imprint.linear.weight`` ``[n, d]``,
        ``imprint.linear.bias`` ``[n]``).

    Raises:
        TypeError / ValueError: a bad argument (named in the message), before any work.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    bins = positive_int("bins", bins, minimum=2)
    shape = _check_shape(input_shape)
    if not isinstance(public_inputs, Tensor) or not public_inputs.is_floating_point():
        raise TypeError(
            f"public_inputs must be a floating-point tensor [N, *input_shape], got "
            f"{public_inputs.dtype if isinstance(public_inputs, Tensor) else type(public_inputs).__name__}"
        )
    if tuple(public_inputs.shape[1:]) != shape or public_inputs.shape[0] < 2:
        raise ValueError(
            f"public_inputs must have shape [N >= 2, {', '.join(map(str, shape))}], "
            f"got {tuple(public_inputs.shape)}"
        )
    one_of("statistic", statistic, STATISTICS)
    gain = positive("gain", gain)
    readout = positive("readout", readout)
    positive_int("seed", seed, minimum=0)

    dtype = public_inputs.dtype
    d = math.prod(shape)
    if statistic == "mean":
        v = torch.full((d,), 1.0 / d, dtype=dtype)  # [d]
    else:
        gen = torch.Generator().manual_seed(seed)
        v = torch.randn(d, generator=gen, dtype=dtype) / math.sqrt(d)  # [d]
    h = public_inputs.detach().flatten(1).cpu() @ v  # [N]
    quantiles = torch.arange(1, bins, dtype=dtype) / bins  # [n - 1]
    inner = torch.quantile(h, quantiles)  # [n - 1]
    low = h.min() - (h.max() - h.min()).clamp_min(1e-3)
    thresholds = torch.cat([low.view(1), inner])  # [n]
    layer = Imprint(d, bins, readout).to(dtype)
    with torch.no_grad():
        layer.linear.weight.copy_(gain * v.expand(bins, d))
        layer.linear.bias.copy_(-gain * thresholds)
    return nn.Sequential(OrderedDict(imprint=layer, model=copy.deepcopy(model)))


def collinear_rows(weight: Tensor, cos_threshold: float) -> Tensor:
    """Indices of the largest set of rows of ``weight`` collinear with one row (``|cos| >= cos_threshold``).

    Rows of norm 0 are never collinear with anything.

    Args:
        weight: ``[m, n]`` a linear layer's weight.
        cos_threshold: the |cosine| at which two rows count as collinear, in (0, 1).

    Returns:
        ``[k]`` int64 row indices (the anchor row included; ``k == 1`` when no two rows are collinear).
    """
    w = weight.detach().to(torch.float64)  # [m, n]
    norms = w.norm(dim=1)  # [m]
    unit = w / norms.clamp_min(torch.finfo(w.dtype).tiny).unsqueeze(1)  # [m, n]
    unit[norms == 0] = 0
    best_count, best_row = 0, 0
    for start in range(0, w.shape[0], _CHUNK_ROWS):
        cos = unit[start : start + _CHUNK_ROWS] @ unit.T  # [chunk, m]
        counts = (cos.abs() >= cos_threshold).sum(1)  # [chunk]
        count, row = counts.max(0)
        if int(count) > best_count:
            best_count, best_row = int(count), start + int(row)
    members = (unit @ unit[best_row]).abs() >= cos_threshold  # [m]
    members[best_row] = True
    return members.nonzero().squeeze(1)  # [k]


@dataclass(frozen=True)
class ImprintDetection:
    """What :func:`detect_imprint` found.

    Attributes:
        flagged: whether some layer looks like an imprint (``bool(layers)``).
        layers: names of the suspicious linear or convolution modules, in module order.
        group_sizes: for every layer examined, the size of its largest collinear row group.
    """

    flagged: bool
    layers: tuple[str, ...]
    group_sizes: dict[str, int]


def detect_imprint(
    model: nn.Module, *, cos_threshold: float = 0.99, min_rows: int = 2, min_inputs: int = 16
) -> ImprintDetection:
    """Flag linear or convolution layers with ``min_rows`` or more collinear weight rows, an imprint's mark.

    An imprint (Fowl et al., "Robbing the Fed", 2022) needs several rows measuring one statistic, i.e.
    rows identical up to scale. It can as well be built as a convolution whose kernel covers the input
    (each output channel one bin), so ``nn.Conv1d/2d/3d`` layers are examined too, one row per output
    channel (``weight.flatten(1)``, ``in_channels / groups x kernel`` inputs). For independent random
    directions in ``n`` dimensions,
    ``P(|cos| >= 0.99) ~ (1 - 0.99^2)^((n - 1) / 2)``: about 1e-6 per pair at ``n = 8`` and 1e-13 at
    ``n = 16`` (measured: among 64 random rows in 8 dimensions a pair this close shows up once in a
    thousand layers, in 16 never), and training briefly does not align rows. Layers with fewer than
    ``min_inputs`` inputs are skipped: they cannot imprint an input of any size, and their rows are
    collinear by chance.

    Args:
        model: any ``nn.Module``; every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` in it is examined.
        cos_threshold: |cosine| above which two rows count as collinear, in (0, 1).
        min_rows: the group size that flags a layer, >= 2 (an imprint has at least 2 bins).
        min_inputs: layers with fewer input features are skipped, >= 2.

    Returns:
        An :class:`ImprintDetection`.

    Raises:
        TypeError / ValueError: a bad argument.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    cos_threshold = fraction("cos_threshold", cos_threshold)
    min_rows = positive_int("min_rows", min_rows, minimum=2)
    min_inputs = positive_int("min_inputs", min_inputs, minimum=2)
    sizes: dict[str, int] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
            rows = module.weight.flatten(1)  # [out, in] or [out_channels, in_channels / groups * kernel]
            if rows.shape[1] >= min_inputs:
                sizes[name] = int(collinear_rows(rows, cos_threshold).numel())
    layers = tuple(name for name, size in sizes.items() if size >= min_rows)
    return ImprintDetection(flagged=bool(layers), layers=layers, group_sizes=sizes)
