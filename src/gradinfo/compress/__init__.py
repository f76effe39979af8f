"""Compression from gradient information: importance scores, structural and unstructured pruning.

The shared scores live in :mod:`gradinfo.compress.scores` and are re-exported here
(``gradinfo.compress.importance`` is the element-importance function). Each method lives in its own module,
imported below so its registration runs.
"""

from gradinfo.compress.gaprune import GAPruneReport, SentenceEncoder, gaprune
from gradinfo.compress.gm_nas import EdgeSplit, gm_nas, split_ops
from gradinfo.compress.llm_pruner import PruneReport, llm_pruner, load_pruned, lora_recover
from gradinfo.compress.modegpt import ModeGPTReport, ModularAttention, modegpt
from gradinfo.compress.obs_prune import OBSReport, obs_prune
from gradinfo.compress.scores import aggregate, fisher_diag, group_taylor, importance, mean_grad
from gradinfo.compress.snella import SnellaController, SnellaLinear, lora, snella

__all__ = [
    "EdgeSplit",
    "GAPruneReport",
    "ModeGPTReport",
    "ModularAttention",
    "OBSReport",
    "PruneReport",
    "SentenceEncoder",
    "SnellaController",
    "SnellaLinear",
    "aggregate",
    "fisher_diag",
    "gaprune",
    "gm_nas",
    "group_taylor",
    "importance",
    "llm_pruner",
    "load_pruned",
    "lora",
    "lora_recover",
    "mean_grad",
    "modegpt",
    "obs_prune",
    "snella",
    "split_ops",
]
