"""Optimizers that run on gradient information: GradTransform chains and torch.optim.Optimizers."""

from gradinfo.optim.diffgrad import DiffGrad, diffgrad_transform
from gradinfo.optim.grouped import GroupTransformOptimizer
from gradinfo.optim.mfac import MFAC, mfac_transform

__all__ = ["MFAC", "DiffGrad", "GroupTransformOptimizer", "diffgrad_transform", "mfac_transform"]
