"""Optimizers that run on gradient information: GradTransform chains and torch.optim.Optimizers."""

from gradinfo.optim.diffgrad import DiffGrad, diffgrad_transform
from gradinfo.optim.grouped import GroupTransformOptimizer

__all__ = ["DiffGrad", "GroupTransformOptimizer", "diffgrad_transform"]
