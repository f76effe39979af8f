"""Optimizers that run on gradient information: GradTransform chains and torch.optim.Optimizers."""

from gradinfo.optim.diffgrad import DiffGrad, diffgrad_transform
from gradinfo.optim.fedzo import FederatedResult, fedzo
from gradinfo.optim.fzoos import fzoos
from gradinfo.optim.galore import (
    GaLoreAdamW,
    Int8Linear,
    QGaLoreAdamW,
    galore_transform,
    memory_bytes,
    quantize_linears,
    svd_calls,
)
from gradinfo.optim.gns_newton import GNSNewton, GNSResult, gns_newton
from gradinfo.optim.grouped import GroupTransformOptimizer
from gradinfo.optim.mfac import MFAC, mfac_transform
from gradinfo.optim.sinkgd import SinkGD, sinkgd_param_groups, sinkgd_transform, sinkhorn_normalize

__all__ = [
    "MFAC",
    "DiffGrad",
    "FederatedResult",
    "GNSNewton",
    "GNSResult",
    "GaLoreAdamW",
    "GroupTransformOptimizer",
    "Int8Linear",
    "QGaLoreAdamW",
    "SinkGD",
    "diffgrad_transform",
    "fedzo",
    "fzoos",
    "galore_transform",
    "gns_newton",
    "memory_bytes",
    "mfac_transform",
    "quantize_linears",
    "sinkgd_param_groups",
    "sinkgd_transform",
    "sinkhorn_normalize",
    "svd_calls",
]
