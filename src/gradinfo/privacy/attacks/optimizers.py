"""How an optimisation attack descends: Adam (optionally signed, with a step-size schedule) or L-BFGS.

The engine (:func:`gradinfo.privacy.attacks.matching.match_gradients`) takes one of two frozen values,
checked when built:

- :class:`Adam`: elementwise Adam with a per-restart step size, so batched restarts follow exactly the
  paths they would follow alone; ``signed`` descends the sign of the input gradient (Geiping et al.,
  "Inverting Gradients", 2020), labels and masks get the plain gradient. Its ``schedule`` says after
  which steps a restart's step size is multiplied by ``gamma``: :class:`Constant` (never),
  :class:`MultiStep` (at fixed fractions of the run, as Inverting Gradients) or :class:`Plateau` (after
  ``patience`` steps without improvement, as ``ReduceLROnPlateau`` in the Dropout Inversion Attack).
- :class:`LBFGS`: ``torch.optim.LBFGS``, one step per iteration with a strong-Wolfe line search (Zhu et al.,
  "Deep Leakage from Gradients", 2019); restarts run one after the other, since a shared line search would
  couple them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from gradinfo.core.validate import positive, positive_int

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
LBFGS_MAX_EVAL = 20
"""Objective evaluations per L-BFGS step (its line search)."""
LBFGS_HISTORY = 100


@dataclass(frozen=True)
class Constant:
    """Keep the step size: never cut it."""

    per_restart: ClassVar[bool] = False
    gamma: ClassVar[float] = 1.0

    def __call__(self, step: int, iterations: int, stalled: Tensor) -> bool:
        """False: no cut after any step."""
        return False


@dataclass(frozen=True)
class MultiStep:
    """Cut every restart's step size by ``gamma`` after step ``int(iterations * f) - 1`` for each fraction f.

    Inverting Gradients' schedule (Geiping et al., 2020): x0.1 at 3/8, 5/8 and 7/8 of the run. Fractions
    that land on the same step cut once.

    Attributes:
        fractions: the points of the run, each in (0, 1].
        gamma: the factor, in (0, 1].
    """

    fractions: tuple[float, ...] = (3 / 8, 5 / 8, 7 / 8)
    gamma: float = 0.1
    per_restart: ClassVar[bool] = False

    def __post_init__(self) -> None:
        for f in self.fractions:
            if not 0 < f <= 1:
                raise ValueError(f"fractions must lie in (0, 1], got {self.fractions!r}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must lie in (0, 1], got {self.gamma!r}")

    def __call__(self, step: int, iterations: int, stalled: Tensor) -> bool:
        """Whether the step size is cut after ``step`` (0-based) of ``iterations``."""
        return step + 1 in {int(iterations * f) for f in self.fractions}


@dataclass(frozen=True)
class Plateau:
    """Cut a restart's step size by ``gamma`` once it has gone ``patience`` steps without improving.

    The count of steps without improvement restarts at each cut (``ReduceLROnPlateau``), so restarts get
    their own step sizes.

    Attributes:
        patience: steps without improvement before a cut, >= 1.
        gamma: the factor, in (0, 1].
    """

    patience: int = 800
    gamma: float = 0.1
    per_restart: ClassVar[bool] = True

    def __post_init__(self) -> None:
        positive_int("patience", self.patience)
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must lie in (0, 1], got {self.gamma!r}")

    def __call__(self, step: int, iterations: int, stalled: Tensor) -> Tensor:
        """Which restarts are cut, ``[R]`` bool, given each one's steps since it last improved ``stalled``."""
        return stalled >= self.patience


Schedule = Constant | MultiStep | Plateau
"""When Adam's step size is cut: ``schedule(step, iterations, stalled [R]) -> bool or [R] bool``."""


@dataclass(frozen=True)
class Adam:
    """Elementwise Adam (betas 0.9, 0.999; eps 1e-8) with a per-restart step size.

    Attributes:
        lr: the initial step size, > 0.
        signed: descend the sign of the input (or latent) gradient (Inverting Gradients); labels and masks
            get the plain gradient.
        schedule: when the step size is cut (:class:`Constant`, :class:`MultiStep` or :class:`Plateau`).

    Raises:
        TypeError, ValueError: a bad value.
    """

    lr: float = 0.1
    signed: bool = False
    schedule: Schedule = Constant()

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", positive("lr", self.lr))
        if not isinstance(self.signed, bool):
            raise TypeError(f"signed must be a bool, got {type(self.signed).__name__} {self.signed!r}")
        if not isinstance(self.schedule, (Constant, MultiStep, Plateau)):
            raise TypeError(
                f"schedule must be Constant(), MultiStep(...) or Plateau(...), got {self.schedule!r}"
            )


@dataclass(frozen=True)
class LBFGS:
    """``torch.optim.LBFGS``: one step per iteration, strong-Wolfe line search of at most 20 evaluations.

    Attributes:
        lr: the learning rate, > 0.

    Raises:
        TypeError, ValueError: a bad ``lr``.
    """

    lr: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", positive("lr", self.lr))

    def build(self, variables: list[Tensor]) -> torch.optim.LBFGS:
        """The torch optimiser over ``variables``."""
        return torch.optim.LBFGS(
            variables,
            lr=self.lr,
            max_iter=1,
            max_eval=LBFGS_MAX_EVAL,
            history_size=LBFGS_HISTORY,
            line_search_fn="strong_wolfe",
        )
