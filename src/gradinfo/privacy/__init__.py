"""Gradient leakage: the threat model, attacks, defenses, privacy accounting and reconstruction metrics."""

from gradinfo.privacy import attacks, defenses
from gradinfo.privacy.accounting import epsilon, noise_for_epsilon
from gradinfo.privacy.fedavg import FedHistory, fedavg, split_non_iid
from gradinfo.privacy.metrics import TokenScores, label_accuracy, psnr, ssim, token_precision_recall
from gradinfo.privacy.threat import (
    DPSGD,
    Reconstruction,
    SharedUpdate,
    describe_defense,
    share,
    split_defense,
)

__all__ = [
    "DPSGD",
    "FedHistory",
    "Reconstruction",
    "SharedUpdate",
    "TokenScores",
    "attacks",
    "defenses",
    "describe_defense",
    "epsilon",
    "fedavg",
    "label_accuracy",
    "noise_for_epsilon",
    "psnr",
    "share",
    "split_defense",
    "split_non_iid",
    "ssim",
    "token_precision_recall",
]
