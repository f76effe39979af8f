"""Tiny causal language models from ``transformers`` configs: Llama and GPT-2, randomly initialised.

Both use ``attn_implementation="eager"`` (plain matmul + softmax attention, which ``torch.func``
traces, so ``per_example_grads`` works) and ``use_cache=False``. They have no special tokens; the
default vocabulary of 256 matches the byte-level ``text`` dataset. Calling ``model(input_ids)``
returns a ``CausalLMOutputWithPast``; a loss for ``gradinfo.capture`` reads ``out.logits``
(``[B, T, V]``), for example ``lambda out, y: F.cross_entropy(out.logits.flatten(0, 1), y.flatten())``.

Architectures: Touvron et al., "LLaMA: Open and Efficient Foundation Language Models" (2023; RMSNorm,
rotary positions, SwiGLU, grouped-query attention here with ``num_kv_heads < num_heads``); Radford et
al., "Language Models are Unsupervised Multitask Learners" (2019; GPT-2, tied input/output embeddings).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradinfo.core.validate import fraction, positive_int
from gradinfo.models._seed import seeded

if TYPE_CHECKING:  # transformers takes seconds to import: the builders import it when called
    from transformers import GPT2LMHeadModel, LlamaForCausalLM


def _check_heads(hidden_size: int, num_heads: int) -> None:
    if hidden_size % num_heads:
        raise ValueError(
            f"num_heads must divide hidden_size, got num_heads={num_heads}, hidden_size={hidden_size}"
        )


def tiny_llama(
    vocab_size: int = 256,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int | None = None,
    max_positions: int = 256,
    seed: int | None = 0,
) -> LlamaForCausalLM:
    """A randomly initialised ``LlamaForCausalLM`` small enough for CPU tests (~107k parameters by default).

    Args:
        vocab_size: token vocabulary ``V``.
        hidden_size: model width ``D``; ``D / num_heads`` must be even (rotary embeddings).
        num_layers: decoder layers.
        num_heads: query heads; must divide ``hidden_size``.
        num_kv_heads: key/value heads (grouped-query attention); must divide ``num_heads``.
        intermediate_size: SwiGLU width; ``None`` gives ``2 * hidden_size``.
        max_positions: longest sequence the rotary cache is sized for.
        seed: initialisation seed (``None``: draw from the global RNG).

    Returns:
        ``LlamaForCausalLM`` mapping ``input_ids`` ``[B, T]`` to ``logits`` ``[B, T, V]``.

    Raises:
        ValueError / TypeError: a size < 1 or head counts that do not divide as described.
    """
    for name, value in [
        ("vocab_size", vocab_size),
        ("hidden_size", hidden_size),
        ("num_layers", num_layers),
        ("num_heads", num_heads),
        ("num_kv_heads", num_kv_heads),
        ("max_positions", max_positions),
    ]:
        positive_int(name, value)
    _check_heads(hidden_size, num_heads)
    if (hidden_size // num_heads) % 2:
        raise ValueError(
            f"hidden_size / num_heads must be even for rotary embeddings, got {hidden_size}/{num_heads}"
        )
    if num_heads % num_kv_heads:
        raise ValueError(
            f"num_kv_heads must divide num_heads, got num_kv_heads={num_kv_heads}, num_heads={num_heads}"
        )
    intermediate = (
        2 * hidden_size if intermediate_size is None else positive_int("intermediate_size", intermediate_size)
    )
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_positions,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        use_cache=False,
        attn_implementation="eager",
    )
    with seeded(seed):
        return LlamaForCausalLM(config)


def tiny_gpt2(
    vocab_size: int = 256,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    max_positions: int = 256,
    dropout: float = 0.0,
    seed: int | None = 0,
) -> GPT2LMHeadModel:
    """A randomly initialised ``GPT2LMHeadModel`` (tied embeddings) small enough for CPU tests.

    Args:
        vocab_size: token vocabulary ``V``.
        hidden_size: model width ``D``.
        num_layers: transformer blocks.
        num_heads: attention heads; must divide ``hidden_size``.
        max_positions: learned position embeddings (the longest sequence).
        dropout: residual, embedding and attention dropout (0 disables).
        seed: initialisation seed (``None``: draw from the global RNG).

    Returns:
        ``GPT2LMHeadModel`` mapping ``input_ids`` ``[B, T]`` to ``logits`` ``[B, T, V]``.

    Raises:
        ValueError / TypeError: a size < 1, ``num_heads`` not dividing ``hidden_size``, or ``dropout``
            outside [0, 1).
    """
    for name, value in [
        ("vocab_size", vocab_size),
        ("hidden_size", hidden_size),
        ("num_layers", num_layers),
        ("num_heads", num_heads),
        ("max_positions", max_positions),
    ]:
        positive_int(name, value)
    _check_heads(hidden_size, num_heads)
    if fraction("dropout", dropout, closed=True) == 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size,
        n_embd=hidden_size,
        n_layer=num_layers,
        n_head=num_heads,
        n_positions=max_positions,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        bos_token_id=None,
        eos_token_id=None,
        use_cache=False,
        attn_implementation="eager",
    )
    with seeded(seed):
        return GPT2LMHeadModel(config)
