"""A small ResNet with GroupNorm in place of BatchNorm.

He et al., "Deep Residual Learning for Image Recognition" (2016): ``out = relu(F(x) + shortcut(x))``
with ``F = norm(conv3x3(relu(norm(conv3x3(x)))))``. Normalisation is GroupNorm (Wu & He, "Group
Normalization", 2018), which normalises each example on its own, so per-example gradients and DP-SGD
are exact; BatchNorm mixes examples within a batch and would break both.
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn.functional as F
from torch import Tensor, nn

from gradinfo.core.validate import positive_int
from gradinfo.models._seed import seeded


class BasicBlock(nn.Module):
    """Two 3x3 conv + GroupNorm layers with an identity (or 1x1 conv + GroupNorm) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(groups, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.GroupNorm(groups, out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.norm1(self.conv1(x)))  # [B, C_out, H / stride, W / stride]
        out = self.norm2(self.conv2(out))  # [B, C_out, H / stride, W / stride]
        return F.relu(out + self.shortcut(x))


def resnet(
    num_classes: int,
    in_channels: int = 3,
    width: int = 16,
    blocks: tuple[int, ...] = (1, 1, 1),
    groups: int = 8,
    seed: int | None = 0,
) -> nn.Sequential:
    """Build ``stem -> stage1 .. stageK -> global average pool -> fc`` for ``[B, C, H, W]`` inputs.

    Stage ``k`` (1-based) has ``blocks[k-1]`` basic blocks with ``width * 2**(k-1)`` channels; every stage
    after the first halves the spatial size with a stride-2 first block. ``blocks=(1, 1, 1)`` is an
    8-layer network (ResNet-8); ``(3, 3, 3)`` is the CIFAR ResNet-20 layout.

    Args:
        num_classes: output logits.
        in_channels: input channels ``C``.
        width: channels of the stem and the first stage.
        blocks: blocks per stage, at least one stage.
        groups: GroupNorm groups; must divide ``width`` (then it divides every stage's channels).
        seed: initialisation seed (``None``: draw from the global RNG).

    Returns:
        An ``nn.Sequential`` with named children ``stem, stage1, ..., pool, flatten, fc``.

    Raises:
        ValueError / TypeError: a size < 1, empty ``blocks``, or ``groups`` not dividing ``width``.
    """
    positive_int("num_classes", num_classes)
    positive_int("in_channels", in_channels)
    positive_int("width", width)
    positive_int("groups", groups)
    if not isinstance(blocks, (tuple, list)) or len(blocks) == 0:
        raise ValueError(f"blocks must be a non-empty tuple of ints, got {blocks!r}")
    for i, b in enumerate(blocks):
        positive_int(f"blocks[{i}]", b)
    if width % groups:
        raise ValueError(f"groups must divide width, got groups={groups} and width={width}")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    with seeded(seed):
        layers["stem"] = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.GroupNorm(groups, width), nn.ReLU()
        )
        channels = width
        for k, n in enumerate(blocks):
            out = width * 2**k
            stage = [
                BasicBlock(out if j else channels, out, 1 if k == 0 or j else 2, groups) for j in range(n)
            ]
            layers[f"stage{k + 1}"] = nn.Sequential(*stage)
            channels = out
        layers["pool"] = nn.AdaptiveAvgPool2d(1)
        layers["flatten"] = nn.Flatten()
        layers["fc"] = nn.Linear(channels, num_classes)
    return nn.Sequential(layers)
