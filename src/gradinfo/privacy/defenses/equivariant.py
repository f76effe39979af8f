"""p4 group-equivariant CNNs: fewer parameters for DP-SGD to noise.

Hölzl et al., "Equivariant Differentially Private Deep Learning: Why DP-SGD Needs Sparser Models" (2023):
DP-SGD adds N(0, sigma^2 C^2 I_d) to the clipped gradient sum, whose norm grows like sqrt(d), so a model
that carries the same function with fewer parameters d gets a better signal-to-noise ratio. Group
convolutions share each filter across symmetry transforms (Cohen & Welling, "Group Equivariant
Convolutional Networks", 2016); here the group p4 of translations and rotations by multiples of 90 degrees.

With R the rotation by 90 degrees (``torch.rot90`` over the last two axes) and ``*`` cross-correlation:

- lifting conv Z2 -> p4, weight W ``[O, C, k, k]``: out[o, r] = sum_c x[c] * R^r W[o, c] + b[o];
- group conv p4 -> p4, weight W ``[O, C, 4, k, k]``:
  out[o, r] = sum_{c, s} f[c, s] * R^r W[o, c, (s - r) mod 4] + b[o].

Both are equivariant: rotating the input by R rotates every output map by R and shifts the rotation axis
by one, out(R x)[:, r] = R out(x)[:, r - 1]. Max-pooling over the rotation axis then gives rotation-
invariant maps. A group conv with C -> O fields has 4 C O k^2 parameters where an ordinary conv with the
same number of feature maps (4C -> 4O) has 16 C O k^2: four times fewer.

DP-SGD training (:func:`dp_sgd_train`): Poisson-sampled batches of expected size B, each step
theta <- theta - lr (sum_i clip_C(g_i) + N(0, sigma^2 C^2 I)) / B with the clipped sum from
:func:`gradinfo.capture.clipped_grad_sum` and sigma from :func:`gradinfo.privacy.noise_for_epsilon`
for the target (epsilon, delta) over all steps.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradinfo.capture import clipped_grad_sum
from gradinfo.core.registry import Conformance, register
from gradinfo.core.types import LossFn
from gradinfo.core.validate import positive, positive_int
from gradinfo.privacy.accounting import noise_for_epsilon


def _rot(x: Tensor, r: int) -> Tensor:
    """R^r x: rotate the last two axes by r * 90 degrees (counter-clockwise)."""
    return torch.rot90(x, r, dims=(-2, -1))


class P4LiftConv(nn.Module):
    """Lifting convolution Z2 -> p4: ``[B, C, H, W] -> [B, O, 4, H', W']`` (``padding`` as ``nn.Conv2d``).

    Computed as out[:, r] = R^r conv(R^{-r} x; W), which equals conv(x; R^r W) for a centred filter, so the
    one ``nn.Conv2d`` (parameters ``conv.weight`` ``[O, C, k, k]``, ``conv.bias`` ``[O]``) is called four
    times and per-example gradient capture keeps its fast path.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([_rot(self.conv(_rot(x, -r)), r) for r in range(4)], dim=2)  # [B, O, 4, H', W']


class P4GroupConv(nn.Module):
    """Group convolution p4 -> p4: ``[B, C, 4, H, W] -> [B, O, 4, H', W']``.

    out[:, r] = R^r conv(R^{-r} roll(f, -r, rotation axis); W) with one ``nn.Conv2d`` over the ``4C``
    stacked maps (``conv.weight`` ``[O, 4C, k, k]`` read as W ``[O, C, 4, k, k]``), which equals
    sum_{c, s} f[c, s] * R^r W[o, c, s - r].
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4 * in_channels, out_channels, kernel_size, padding=padding)

    def forward(self, f: Tensor) -> Tensor:
        outs = [_rot(self.conv(_rot(torch.roll(f, -r, dims=2), -r).flatten(1, 2)), r) for r in range(4)]
        return torch.stack(outs, dim=2)  # [B, O, 4, H', W']


class _FlatPool(nn.Module):
    """2x2 max-pool of every map of a p4 feature ``[B, C, 4, H, W] -> [B, C, 4, H/2, W/2]``."""

    def forward(self, f: Tensor) -> Tensor:
        return F.max_pool2d(f.flatten(1, 2), 2).unflatten(1, f.shape[1:3])


class _InvariantPool(nn.Module):
    """Max over rotations, mean over space: ``[B, C, 4, H, W] -> [B, C]`` (invariant to 90-degree turns)."""

    def forward(self, f: Tensor) -> Tensor:
        return f.amax(2).mean((-2, -1))


@register(
    "equivariant_dp",
    family="privacy",
    paper=44,
    summary="DP-SGD on p4 group-equivariant CNNs: filters shared over rotations, 4x fewer params, less noise",
    claim="gradinfo.claims.equivariant_dp:check",
    example="gradinfo.privacy.defenses.equivariant:CONFORMANCE",
)
def equivariant_cnn(
    num_classes: int = 10,
    in_channels: int = 1,
    widths: tuple[int, ...] = (8, 16),
    kernel_size: int = 3,
    seed: int = 0,
) -> nn.Sequential:
    """A p4-equivariant CNN with a rotation-invariant output, for DP-SGD.

    From Hölzl et al., "Equivariant Differentially Private Deep Learning: Why DP-SGD Needs Sparser Models"
    (2023), with p4 group convolutions out[o, r] = sum_{c, s} f[c, s] * R^r W[o, c, s - r] (see the module
    docstring). Layout: ``lift`` (Z2 -> p4, ``widths[0]`` fields) -> ReLU -> 2x2 max-pool, then for every
    further width a group conv -> ReLU -> 2x2 max-pool, then max over rotations and mean over space
    (``[B, widths[-1]]``), then a linear layer. "Same" padding; every pooled side must stay even for exact
    equivariance (e.g. 8x8 inputs with two widths). ``widths[i]`` fields are ``4 * widths[i]`` feature maps.

    Args:
        num_classes: output logits.
        in_channels: input channels C.
        widths: fields per layer (>= 1 layer, each >= 1).
        kernel_size: odd filter side.
        seed: initialisation seed (the global RNG is left as it was).

    Returns:
        An ``nn.Sequential`` ``[B, C, H, W] -> [B, num_classes]``, logits invariant to rotating the input by
        multiples of 90 degrees.

    Raises:
        TypeError, ValueError: a size < 1, an even ``kernel_size`` or an empty ``widths``.
    """
    positive_int("num_classes", num_classes)
    positive_int("in_channels", in_channels)
    kernel_size = positive_int("kernel_size", kernel_size)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd (centred filters keep rotations exact), got {kernel_size}")
    if not isinstance(widths, tuple) or not widths:
        raise TypeError(f"widths must be a non-empty tuple of ints, got {widths!r}")
    for w in widths:
        positive_int("widths[i]", w)
    seed = positive_int("seed", seed, minimum=0)
    pad = kernel_size // 2
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            lift=P4LiftConv(in_channels, widths[0], kernel_size, pad), act0=nn.ReLU(), pool0=_FlatPool()
        )
        for i, (a, b) in enumerate(itertools.pairwise(widths), start=1):
            layers[f"gconv{i}"] = P4GroupConv(a, b, kernel_size, pad)
            layers[f"act{i}"] = nn.ReLU()
            layers[f"pool{i}"] = _FlatPool()
        layers["invariant"] = _InvariantPool()
        layers["fc"] = nn.Linear(widths[-1], num_classes)
        return nn.Sequential(layers)


def dp_sgd_train(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    epsilon: float,
    delta: float,
    epochs: int,
    batch_size: int,
    max_norm: float = 1.0,
    lr: float = 1.0,
    momentum: float = 0.9,
    loss_fn: LossFn = F.cross_entropy,
    seed: int = 0,
) -> float:
    """Train ``model`` in place with DP-SGD at (``epsilon``, ``delta``); return the noise multiplier used.

    Abadi et al., "Deep Learning with Differential Privacy" (2016): ``steps = epochs * N / B`` steps; each
    draws a Poisson sample (rate q = B / N), forms g = (sum_i clip_C(g_i) + N(0, sigma^2 C^2 I)) / B and
    takes an SGD step with momentum (post-processing, free of privacy cost). sigma is the smallest noise
    multiplier whose RDP epsilon over all steps is at most ``epsilon``.

    Args:
        model: any model :func:`gradinfo.capture.clipped_grad_sum` supports (trained in train mode).
        inputs: ``[N, ...]``; targets: ``[N]``.
        epsilon, delta: the privacy target, epsilon > 0 and delta in (0, 1).
        epochs: passes over the data in expectation, >= 1.
        batch_size: expected batch size B, 1 <= B <= N.
        max_norm: clipping bound C > 0.
        lr: learning rate > 0; momentum: in [0, 1).
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` (mean reduction).
        seed: seeds sampling and noise (the global RNG is left as it was).

    Returns:
        The noise multiplier sigma.

    Raises:
        TypeError, ValueError: bad arguments, before any training.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not (isinstance(inputs, Tensor) and isinstance(targets, Tensor)) or len(inputs) != len(targets):
        raise ValueError("inputs and targets must be tensors with the same number of examples")
    n = len(inputs)
    batch_size = positive_int("batch_size", batch_size)
    if batch_size > n:
        raise ValueError(f"batch_size must be <= the {n} examples, got {batch_size}")
    epochs = positive_int("epochs", epochs)
    max_norm, lr = positive("max_norm", max_norm), positive("lr", lr)
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")
    seed = positive_int("seed", seed, minimum=0)
    rate = batch_size / n
    steps = math.ceil(epochs * n / batch_size)
    sigma = noise_for_epsilon(epsilon, rate, steps, delta)
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.SGD(params.values(), lr=lr, momentum=momentum)
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(steps):
            take = torch.rand(n) < rate  # [N] Poisson sample
            total = (
                clipped_grad_sum(model, loss_fn, inputs[take], targets[take], max_norm)
                if take.any()
                else {k: torch.zeros_like(p) for k, p in params.items()}
            )
            for k, p in params.items():
                p.grad = (total[k] + sigma * max_norm * torch.randn_like(p)) / batch_size
            opt.step()
    return sigma


CONFORMANCE = Conformance(
    call=lambda seed: equivariant_cnn(widths=(2, 3), seed=seed)(torch.linspace(0, 1, 64).view(1, 1, 8, 8)),
    bad_calls=(
        lambda: equivariant_cnn(widths=()),
        lambda: equivariant_cnn(kernel_size=4),
        lambda: equivariant_cnn(num_classes=0),
    ),
)
