"""The 51 papers gradinfo implements: number, title, year (arXiv or first public version).

Numbering follows ``shared/papers/abstracts.md``; issues and the method registry refer to papers by it.
"""

from __future__ import annotations

from typing import NamedTuple


class Paper(NamedTuple):
    title: str
    year: int


PAPERS: dict[int, Paper] = {
    1: Paper("YOLOv9: Learning What You Want to Learn Using Programmable Gradient Information", 2024),
    2: Paper("Dropout is NOT All You Need to Prevent Gradient Leakage", 2023),
    3: Paper("Exploring Gradient-based Multi-directional Controls in GANs", 2022),
    4: Paper(
        "Exploring the Vulnerabilities of Federated Learning: A Deep Dive into Gradient Inversion Attacks",
        2025,
    ),
    5: Paper("Generalizing Few-Shot NAS with Gradient Matching", 2022),
    6: Paper(
        "Sketching for First Order Method: Efficient Algorithm for Low-Bandwidth Channel and Vulnerability",
        2023,
    ),
    7: Paper(
        "GReaTer: Gradients over Reasoning Makes Smaller Language Models Strong Prompt Optimizers", 2025
    ),
    8: Paper("Federated Zeroth-Order Optimization using Trajectory-Informed Surrogate Gradients", 2024),
    9: Paper("Kernelized Sparse Fine-Tuning with Bi-level Parameter Competition for Vision Models", 2025),
    10: Paper("Semantic Probabilistic Control of Language Models", 2025),
    11: Paper("SADA: Stability-guided Adaptive Diffusion Acceleration", 2025),
    12: Paper(
        "MHAF-YOLO: Multi-Branch Heterogeneous Auxiliary Fusion YOLO for accurate object detection", 2025
    ),
    13: Paper("Q-GaLore: Quantized GaLore with INT4 Projection and Layer-Adaptive Low-Rank Gradients", 2024),
    14: Paper("SITTA: A Semantic Image-Text Alignment for Image Captioning", 2023),
    15: Paper("AdvPrompter: Fast Adaptive Adversarial Prompting for LLMs", 2024),
    16: Paper(
        "SocialGPT: Prompting LLMs for Social Relation Reasoning via Greedy Segment Optimization", 2024
    ),
    17: Paper("LLM-Pruner: On the Structural Pruning of Large Language Models", 2023),
    18: Paper(
        "GORACS: Group-level Optimal Transport-guided Coreset Selection for LLM-based Recommender Systems",
        2025,
    ),
    19: Paper("MoDeGPT: Modular Decomposition for Large Language Model Compression", 2024),
    20: Paper("LocalStyleFool: Regional Video Style Transfer Attack Using Segment Anything Model", 2024),
    21: Paper("Learning Meta Representations for Agents in Multi-Agent Reinforcement Learning", 2021),
    22: Paper("Certifying LLM Safety against Adversarial Prompting", 2023),
    23: Paper(
        "Hard No-Box Adversarial Attack on Skeleton-Based Human Action Recognition with Skeleton-Motion-Informed Gradient",
        2023,
    ),
    24: Paper("Scaling Multimodal Pre-Training via Cross-Modality Gradient Harmonization", 2022),
    25: Paper("diffGrad: An Optimization Method for Convolutional Neural Networks", 2019),
    26: Paper("Gradient-Normalized Smoothness for Optimization with Approximate Hessians", 2025),
    27: Paper("Multi-Modal Interpretability for Enhanced Localization in Vision-Language Models", 2025),
    28: Paper("GAPrune: Gradient-Alignment Pruning for Domain-Aware Embeddings", 2025),
    29: Paper("Robust-Multi-Task Gradient Boosting", 2025),
    30: Paper("A New Federated Learning Framework Against Gradient Inversion Attacks", 2024),
    31: Paper("Gradient Multi-Normalization for Stateless and Scalable LLM Training", 2025),
    32: Paper(
        "ReCIT: Reconstructing Full Private Data from Gradient in Parameter-Efficient Fine-Tuning of Large Language Models",
        2025,
    ),
    33: Paper("Modeling Multi-Task Model Merging as Adaptive Projective Gradient Descent", 2025),
    34: Paper(
        "Recoding latent sentence representations -- Dynamic gradient-based activation modification in RNNs",
        2019,
    ),
    35: Paper("Learning to Focus: Causal Attention Distillation via Gradient-Guided Token Pruning", 2025),
    36: Paper("Long Text Generation via Adversarial Training with Leaked Information", 2017),
    37: Paper(
        "Stochastic Policy Gradient Methods: Improved Sample Complexity for Fisher-non-degenerate Policies",
        2023,
    ),
    38: Paper("Opening the Black Box of Deep Neural Networks via Information", 2017),
    39: Paper("Enhancing High-Resolution 3D Generation through Pixel-wise Gradient Clipping", 2023),
    40: Paper(
        "Unlearning Concepts in Diffusion Model via Concept Domain Correction and Concept Preserving Gradient",
        2023,
    ),
    41: Paper("Dynamic Prompt Learning via Policy Gradient for Semi-structured Mathematical Reasoning", 2022),
    42: Paper(
        "CoDiEmb: A Collaborative yet Distinct Framework for Unified Representation Learning in Information Retrieval and Semantic Textual Similarity",
        2025,
    ),
    43: Paper("M-FAC: Efficient Matrix-Free Approximations of Second-Order Information", 2021),
    44: Paper("Equivariant Differentially Private Deep Learning: Why DP-SGD Needs Sparser Models", 2023),
    45: Paper("EVODiff: Entropy-aware Variance Optimized Diffusion Inference", 2025),
    46: Paper("Towards Metamerism via Foveated Style Transfer", 2017),
    47: Paper(
        "Video Adverse-Weather-Component Suppression Network via Weather Messenger and Adversarial Backpropagation",
        2023,
    ),
    48: Paper("Do Input Gradients Highlight Discriminative Features?", 2021),
    49: Paper("Few-Shot Image Quality Assessment via Adaptation of Vision-Language Models", 2024),
    50: Paper("How new data permeates LLM knowledge and how to dilute it", 2025),
    51: Paper(
        "DreamSalon: A Staged Diffusion Framework for Preserving Identity-Context in Editable Face Generation",
        2024,
    ),
}
