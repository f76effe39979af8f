"""A multi-layer perceptron: flatten, then Linear + activation (+ dropout) per hidden layer, then Linear."""

from __future__ import annotations

from collections import OrderedDict
from itertools import pairwise

from torch import nn

from gradinfo.core.validate import fraction, one_of, positive_int
from gradinfo.models._seed import seeded

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


def mlp(
    in_features: int,
    num_classes: int,
    hidden: tuple[int, ...] = (64,),
    activation: str = "relu",
    dropout: float = 0.0,
    seed: int | None = 0,
) -> nn.Sequential:
    """Build an MLP mapping ``[B, *shape]`` (flattened to ``[B, in_features]``) to ``[B, num_classes]``.

    Args:
        in_features: number of input features after flattening (64 for 8x8 digits, 40 for mnist1d).
        num_classes: output logits.
        hidden: width of each hidden layer; ``()`` gives a linear (logistic regression) model.
        activation: ``"relu"`` or ``"tanh"`` (tanh keeps the network smooth, useful for curvature).
        dropout: drop probability after every hidden activation (0 disables).
        seed: initialisation seed (``None``: draw from the global RNG).

    Returns:
        An ``nn.Sequential`` with named children ``flatten, fc1, act1, drop1, ..., fc{len(hidden)+1}``.

    Raises:
        ValueError / TypeError: a size < 1, an unknown ``activation`` or ``dropout`` outside [0, 1).
    """
    positive_int("in_features", in_features)
    positive_int("num_classes", num_classes)
    if not isinstance(hidden, (tuple, list)):
        raise TypeError(f"hidden must be a tuple of ints, got {type(hidden).__name__} {hidden!r}")
    for i, h in enumerate(hidden):
        positive_int(f"hidden[{i}]", h)
    one_of("activation", activation, tuple(_ACTIVATIONS))
    if fraction("dropout", dropout, closed=True) == 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    sizes = [in_features, *hidden]
    with seeded(seed):
        for i, (a, b) in enumerate(pairwise(sizes), start=1):
            layers[f"fc{i}"] = nn.Linear(a, b)
            layers[f"act{i}"] = _ACTIVATIONS[activation]()
            layers[f"drop{i}"] = nn.Dropout(dropout)
        layers[f"fc{len(sizes)}"] = nn.Linear(sizes[-1], num_classes)
    return nn.Sequential(layers)
