"""What an optimisation attack searches: the inputs, the inputs and the dropout masks, or a decoder's latents.

Each parameterisation is a small frozen value, checked when built, that the engine
(:func:`gradinfo.privacy.attacks.matching.match_gradients`) asks four things: the shape of one example
(``input_shape``), a seeded start for ``R`` restarts of a batch of ``B`` (``initial``), the inputs those
variables stand for (``inputs``), and the constraint applied after every step (``clip_``).

- :class:`Inputs`: the dummy batch ``x`` itself (Zhu et al., 2019; Geiping et al., 2020).
- :class:`InputsAndDropoutMasks`: ``x`` and one mask per ``nn.Dropout`` (the Dropout Inversion Attack,
  Scheliga et al., "Dropout is NOT All You Need to Prevent Gradient Leakage", 2023): every dropout with
  ``p > 0`` of a copy of the model becomes ``x * m / (1 - p)`` with ``m`` of the activation's shape,
  initialised from Bernoulli(1 - p), clipped to [0, 1] after every step and pulled towards the rate ``p``
  by ``mask_reg sum_l |(1 - mean m_l) - p_l|``.
- :class:`DecoderLatents`: latents ``z`` of a decoder ``G`` with ``x = G(z)`` (a generative prior, GEN-GIA in
  Guo et al., "Exploring the Vulnerabilities of Federated Learning: A Deep Dive into Gradient Inversion
  Attacks", 2025).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from gradinfo.core.validate import positive
from gradinfo.privacy.attacks._common import shape_arg


def _box_arg(box: object) -> tuple[float, float] | None:
    """``box`` as ``(low, high)`` floats with ``low < high``, or None."""
    if box is not None and (len(box) != 2 or not float(box[0]) < float(box[1])):  # type: ignore[arg-type]
        raise ValueError(f"box must be (low, high) with low < high, or None; got {box!r}")
    return None if box is None else (float(box[0]), float(box[1]))  # type: ignore[index]


@dataclass(frozen=True)
class Inputs:
    """Search the dummy batch itself: ``x`` ``[B, *shape]``, uniform in ``box`` and clipped to it.

    Attributes:
        shape: one example's shape (public: the attacker knows the data format).
        box: the valid input range ``(low, high)``; inputs start uniform in it and are clipped to it after
            every step. None: inputs start from N(0, 1), unclipped.

    Raises:
        TypeError, ValueError: a bad shape or box.
    """

    shape: tuple[int, ...]
    box: tuple[float, float] | None = (0.0, 1.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", shape_arg("input_shape", self.shape))
        object.__setattr__(self, "box", _box_arg(self.box))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape."""
        return self.shape

    def initial(
        self, gen: torch.Generator, restarts: int, batch: int, dtype: torch.dtype, device: torch.device
    ) -> Tensor:
        """The start ``[R, B, *shape]``, drawn on the CPU from ``gen`` and moved to ``device``."""
        shape = (restarts, batch, *self.shape)
        if self.box is None:
            return torch.randn(shape, generator=gen, dtype=dtype).to(device)
        low, high = self.box
        return low + (high - low) * torch.rand(shape, generator=gen, dtype=dtype).to(device)

    def inputs(self, z: Tensor) -> Tensor:
        """The inputs the variables stand for: ``z`` itself ``[R, B, *shape]``."""
        return z

    def clip_(self, z: Tensor) -> None:
        """Clip ``z`` to the box in place (nothing without one)."""
        if self.box is not None:
            z.clamp_(self.box[0], self.box[1])


@dataclass(frozen=True)
class InputsAndDropoutMasks(Inputs):
    """Search the dummy batch and one mask per ``nn.Dropout`` with ``p > 0`` (the Dropout Inversion Attack).

    The inputs are searched as by :class:`Inputs`; the engine draws the masks (after the labels) and clips
    them to [0, 1] after every step.

    Attributes:
        shape: one example's shape.
        box: as in :class:`Inputs`.
        mask_reg: weight of ``sum_l |(1 - mean m_l) - p_l|``, >= 0.

    Raises:
        TypeError, ValueError: a bad shape, box or ``mask_reg``.
    """

    mask_reg: float = 1e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "mask_reg", positive("mask_reg", self.mask_reg, allow_zero=True))


@dataclass(frozen=True)
class DecoderLatents:
    """Search latents ``z`` ``[B, *latent_shape]`` (from N(0, 1), unconstrained) with inputs ``decoder(z)``.

    Attributes:
        decoder: ``G``, called on ``[N, *latent_shape]`` and returning ``[N, *input_shape]``
            (e.g. :func:`gradinfo.privacy.attacks.fit_decoder`); the engine calls it on ``R * B`` latents.
        latent_shape: one latent's shape.
        input_shape: one example's shape.

    Raises:
        TypeError, ValueError: a decoder that is not callable, or a bad shape.
    """

    decoder: Callable[[Tensor], Tensor]
    latent_shape: tuple[int, ...]
    input_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if not callable(self.decoder):
            raise TypeError(
                f"decoder must be callable as decoder(z) -> inputs, got {type(self.decoder).__name__}"
            )
        object.__setattr__(self, "latent_shape", shape_arg("latent_shape", self.latent_shape))
        object.__setattr__(self, "input_shape", shape_arg("input_shape", self.input_shape))

    def initial(
        self, gen: torch.Generator, restarts: int, batch: int, dtype: torch.dtype, device: torch.device
    ) -> Tensor:
        """The latents' start ``[R, B, *latent_shape]`` from N(0, 1), drawn on the CPU from ``gen``."""
        return torch.randn((restarts, batch, *self.latent_shape), generator=gen, dtype=dtype).to(device)

    def inputs(self, z: Tensor) -> Tensor:
        """``decoder(z)``: ``[R, B, *latent_shape] -> [R, B, *input_shape]``."""
        restarts, batch = z.shape[:2]
        x = self.decoder(z.reshape(restarts * batch, *self.latent_shape))  # [R * B, *input]
        return x.reshape(restarts, batch, *self.input_shape)

    def clip_(self, z: Tensor) -> None:
        """Latents are unconstrained."""


Search = Inputs | InputsAndDropoutMasks | DecoderLatents
"""What the engine optimises (besides soft labels): one of the three parameterisations."""


class MaskDropout(nn.Module):
    """Dropout with an explicit mask buffer: ``x * mask / (1 - p)`` (the mask is passed in by the engine)."""

    def __init__(self, p: float, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.p = p
        self.register_buffer("mask", torch.ones(shape))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask / (1.0 - self.p)


class Network(NamedTuple):
    """The attacker's copy of the model (see :func:`eval_copy`)."""

    net: nn.Module
    rates: dict[str, float]
    """``{dropout module name: p}`` of the masked dropouts (empty without masks)."""
    mask_shapes: dict[str, tuple[int, ...]]
    """``{dropout module name: its activation's shape [B, ...]}``."""
    classes: int


def eval_copy(model: nn.Module, search: Search, batch_size: int) -> Network:
    """An eval-mode copy of ``model``, its dropouts masked when ``search`` has dropout masks.

    Raises:
        ValueError: the model cannot take a batch ``[batch_size, *search.input_shape]``, or does not output
            class logits ``[B, K]``.
    """
    net = copy.deepcopy(model).eval()
    param = next(model.parameters())
    shapes: dict[str, tuple[int, ...]] = {}
    rates: dict[str, float] = {}
    hooks = []
    if isinstance(search, InputsAndDropoutMasks):
        for name, mod in net.named_modules():
            if isinstance(mod, nn.Dropout) and mod.p > 0:
                rates[name] = float(mod.p)

                def record(m: nn.Module, args: tuple[Tensor, ...], name: str = name) -> None:
                    shapes[name] = tuple(args[0].shape)

                hooks.append(mod.register_forward_pre_hook(record))
    with torch.no_grad():
        probe = torch.zeros(batch_size, *search.input_shape, dtype=param.dtype, device=param.device)
        try:
            out = net(probe)  # [B, K]
        except RuntimeError as err:
            raise ValueError(
                f"the model cannot take a batch of shape {tuple(probe.shape)} (batch_size, *input_shape): "
                f"{err}; pass the input_shape one example has"
            ) from err
    for hook in hooks:
        hook.remove()
    if out.dim() != 2:
        raise ValueError(f"the model must output class logits [B, K], got shape {tuple(out.shape)}")
    for name, p in rates.items():
        parent, _, child = name.rpartition(".")
        net.get_submodule(parent).register_module(child, MaskDropout(p, shapes[name]))
    return Network(net, rates, shapes, int(out.shape[1]))
