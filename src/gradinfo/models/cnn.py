"""A LeNet-style CNN: two 5x5 conv + ReLU + 2x2 max-pool stages, then two fully connected layers.

After LeCun et al., "Gradient-Based Learning Applied to Document Recognition" (1998), with ReLU,
max-pooling and "same" padding so any ``image_size >= 4`` works (8x8 digits as well as 28x28).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from gradinfo.core.validate import fraction, positive_int
from gradinfo.models._seed import seeded


def cnn(
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int = 28,
    width: int = 16,
    hidden: int = 128,
    dropout: float = 0.0,
    seed: int | None = 0,
) -> nn.Sequential:
    """Build ``conv1 -> pool -> conv2 -> pool -> fc1 -> dropout -> fc2`` for ``[B, C, S, S]`` inputs.

    Shapes: ``[B, C, S, S] -> conv1 [B, w, S, S] -> pool [B, w, S/2, S/2] -> conv2 [B, 2w, S/2, S/2]
    -> pool [B, 2w, S/4, S/4] -> fc1 [B, hidden] -> fc2 [B, num_classes]`` (``/`` rounds down).

    Args:
        num_classes: output logits.
        in_channels: input channels ``C``.
        image_size: input side ``S`` (square inputs), >= 4.
        width: channels of the first conv; the second has ``2 * width``.
        hidden: units of the first fully connected layer.
        dropout: drop probability before the last layer (``nn.Dropout`` named ``dropout``; 0 disables).
        seed: initialisation seed (``None``: draw from the global RNG).

    Returns:
        An ``nn.Sequential`` with named children ``conv1, act1, pool1, conv2, act2, pool2, flatten, fc1,
        act3, dropout, fc2``.

    Raises:
        ValueError / TypeError: a size < 1 (``image_size`` < 4) or ``dropout`` outside [0, 1).
    """
    positive_int("num_classes", num_classes)
    positive_int("in_channels", in_channels)
    positive_int("image_size", image_size, minimum=4)
    positive_int("width", width)
    positive_int("hidden", hidden)
    if fraction("dropout", dropout, closed=True) == 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
    side = image_size // 4
    with seeded(seed):
        return nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(in_channels, width, 5, padding=2),
                act1=nn.ReLU(),
                pool1=nn.MaxPool2d(2),
                conv2=nn.Conv2d(width, 2 * width, 5, padding=2),
                act2=nn.ReLU(),
                pool2=nn.MaxPool2d(2),
                flatten=nn.Flatten(),
                fc1=nn.Linear(2 * width * side * side, hidden),
                act3=nn.ReLU(),
                dropout=nn.Dropout(dropout),
                fc2=nn.Linear(hidden, num_classes),
            )
        )
