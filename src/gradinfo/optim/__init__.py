"""Optimizers that run on gradient information: GradTransform chains and torch.optim.Optimizers."""

from gradinfo.optim.diffgrad import DiffGrad, diffgrad_transform
from gradinfo.optim.envs import LQR, CartPole, Trajectory
from gradinfo.optim.fedzo import FederatedResult, fedzo
from gradinfo.optim.fzoos import fzoos
from gradinfo.optim.galore import (
    GaLoreAdamW,
    Int8Linear,
    QGaLoreAdamW,
    Quantization,
    galore_transform,
    memory_bytes,
    quantize_linears,
    svd_calls,
)
from gradinfo.optim.gns_newton import GNSNewton, GNSResult, gns_newton
from gradinfo.optim.harpg import HARPG, harpg
from gradinfo.optim.mfac import MFAC, mfac_transform
from gradinfo.optim.n_pg_igt import NPGIGT, n_pg_igt, normalized_pg
from gradinfo.optim.policy_gradient import (
    CategoricalPolicy,
    GaussianPolicy,
    PGHistory,
    gpomdp_grad,
    hessian_aided_product,
    lqr_policy,
)
from gradinfo.optim.sinkgd import SinkGD, sinkgd_param_groups, sinkgd_transform, sinkhorn_normalize

__all__ = [
    "HARPG",
    "LQR",
    "MFAC",
    "NPGIGT",
    "CartPole",
    "CategoricalPolicy",
    "DiffGrad",
    "FederatedResult",
    "GNSNewton",
    "GNSResult",
    "GaLoreAdamW",
    "GaussianPolicy",
    "Int8Linear",
    "PGHistory",
    "QGaLoreAdamW",
    "Quantization",
    "SinkGD",
    "Trajectory",
    "diffgrad_transform",
    "fedzo",
    "fzoos",
    "galore_transform",
    "gns_newton",
    "gpomdp_grad",
    "harpg",
    "hessian_aided_product",
    "lqr_policy",
    "memory_bytes",
    "mfac_transform",
    "n_pg_igt",
    "normalized_pg",
    "quantize_linears",
    "sinkgd_param_groups",
    "sinkgd_transform",
    "sinkhorn_normalize",
    "svd_calls",
]
