"""Defenses against gradient leakage that are not plain gradient transforms (model-level defenses).

- :mod:`~gradinfo.privacy.defenses.hyperfl`: HyperFL (paper 30), a hypernetwork generates each client's
  feature extractor from a private embedding, and only the hypernetwork is shared.
- :mod:`~gradinfo.privacy.defenses.equivariant`: p4 group-equivariant CNNs (paper 44), filters shared over
  90-degree rotations so DP-SGD noises fewer parameters; :func:`dp_sgd_train` trains any model at a target
  (epsilon, delta).
"""

from gradinfo.privacy.defenses.equivariant import P4GroupConv, P4LiftConv, dp_sgd_train, equivariant_cnn
from gradinfo.privacy.defenses.hyperfl import HyperFLNet, hyperfl_model, hyperfl_share, hyperfl_train

__all__ = [
    "HyperFLNet",
    "P4GroupConv",
    "P4LiftConv",
    "dp_sgd_train",
    "equivariant_cnn",
    "hyperfl_model",
    "hyperfl_share",
    "hyperfl_train",
]
