"""Defenses against gradient leakage that are not plain gradient transforms (model-level defenses).

- :mod:`~gradinfo.privacy.defenses.hyperfl`: HyperFL (paper 30), a hypernetwork generates each client's
  feature extractor from a private embedding, and only the hypernetwork is shared.
"""

from gradinfo.privacy.defenses.hyperfl import HyperFLNet, hyperfl_model, hyperfl_share, hyperfl_train

__all__ = ["HyperFLNet", "hyperfl_model", "hyperfl_share", "hyperfl_train"]
