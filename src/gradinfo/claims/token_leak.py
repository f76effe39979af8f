"""Claim: the gradients of parameter-efficient fine-tuning reveal which tokens a client's batch holds.

Zhang et al., "ReCIT: Reconstructing Full Private Data from Gradient in Parameter-Efficient Fine-Tuning of
Large Language Models" (2025) extract the batch's tokens from PEFT gradients before completing private data,
and report up to 10x higher PII recovery than gradient-inversion and memorisation attacks (abstract). That
full attack is out of reach here (``token_leak`` is a component): it needs a pretrained LLM maliciously
fine-tuned on "Personal Notes", a token filter the paper does not specify and a token-pairing stage. This
checks the generic component the paper's digest defines in its place (a DAGER-style span check; pass:
token-set precision and recall >= 0.9 at B = 1, with the decay over B reported).
The reachable part, :func:`gradinfo.privacy.attacks.token_leak`, runs in three seeded settings, each on
victim batches of B in {1, 2, 4, 8} distinct windows of the byte-level ``text`` corpus (the victims' train
split; the warm-up step uses the test split):

- ``gpt2_lora``: a random tiny GPT-2 (width 64, 2 layers, byte vocabulary 256) with a rank-32 LoRA adapter on
  layer 0's attention projection ``c_attn`` (rank >= the sequence length T = 16); one warm-up SGD step
  (lr 1) on public text makes the adapter's B non-zero. Attack: the span check on ``lora_A``'s gradient.
- ``minilm_lora``: the packaged MiniLM encoder (width 384, WordPiece vocabulary 30522) under a mean-pooled
  linear classification head (random labels), with a rank-32 LoRA adapter on layer 0's ``query``; text
  decoded from the same bytes, tokenised by MiniLM's tokenizer, cut into windows of 14 tokens between
  [CLS] and [SEP] (T = 16); one warm-up step (lr 1). Attack: the span check.
- ``minilm_embedding``: the same encoder and head with trainable word embeddings (everything else frozen).
  Attack: the non-zero rows of the embedding gradient.

Figures: token precision and recall per setting and B (``<setting>_{precision,recall}_b<B>``). Pass:
precision and recall >= 0.9 at B = 1 in every setting. The span check is expected to lose recall once B T
exceeds the adapter's rank; the embedding rule stays exact at every B.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from torch import Tensor, nn

from gradinfo.claims import ClaimResult
from gradinfo.datasets import load
from gradinfo.models import minilm, tiny_gpt2
from gradinfo.privacy import share, token_precision_recall
from gradinfo.privacy.attacks.token_leak import token_leak

PAPER_EFFECT = (
    "ReCIT: up to 10x PII recovery (abstract; out of reach); digest's component: P, R >= 0.9 at B=1"
)
CLAIM = "token precision and recall >= 0.9 at B=1 (LoRA span check on GPT-2 and MiniLM; embedding rows)"
BATCHES = (1, 2, 4, 8)
T = 16
RANK = 32
WARM_LR = 1.0
MAX_BYTES = 24_000
SLOW = True


class _Classifier(nn.Module):
    """An encoder with a mean-pooled linear head: ``ids [B, T] -> logits [B, C]``."""

    def __init__(self, encoder: nn.Module, classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(384, classes)

    def forward(self, ids: Tensor) -> Tensor:
        hidden = self.encoder(input_ids=ids).last_hidden_state  # [B, T, 384]
        return self.head(hidden.mean(dim=1))  # [B, C]


def _lm_loss(out: object, y: Tensor) -> Tensor:
    logits = out.logits  # type: ignore[attr-defined]  # [B, T, V]
    return F.cross_entropy(logits.flatten(0, 1), y.flatten())


def _warm(model: nn.Module, loss_fn: Callable[..., Tensor], x: Tensor, y: Tensor) -> None:
    """One SGD step on public data, so a freshly initialised LoRA adapter (B = 0) has a non-zero B."""
    step = share(model, loss_fn, x, y, lr=WARM_LR)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in step.grads:
                p.sub_(WARM_LR * step.grads[name])


def _measure(
    figures: dict[str, float],
    setting: str,
    model: nn.Module,
    loss_fn: Callable[..., Tensor],
    x: Tensor,
    y: Tensor,
    seed: int,
) -> None:
    for b in BATCHES:
        update = share(model, loss_fn, x[:b], y[:b], seed=seed)
        found = token_leak(model, update, positions=T, seed=seed).inputs  # [K]
        scores = token_precision_recall(found, x[:b])
        figures[f"{setting}_precision_b{b}"] = scores.precision
        figures[f"{setting}_recall_b{b}"] = scores.recall


def _gpt2(figures: dict[str, float], seed: int) -> None:
    train = load("text", seed=seed, block_size=T, max_bytes=MAX_BYTES)
    public = load("text", split="test", seed=seed, block_size=T, max_bytes=MAX_BYTES)
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(train), generator=gen)[: max(BATCHES)]
    warm = torch.randperm(len(public), generator=gen)[:8]
    config = LoraConfig(
        r=RANK, lora_alpha=RANK, target_modules=["c_attn"], layers_to_transform=[0], fan_in_fan_out=True
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # peft draws lora_A's initialisation from the global RNG
        model = get_peft_model(tiny_gpt2(seed=seed), config)
    _warm(model, _lm_loss, public.x[warm], public.y[warm])
    _measure(figures, "gpt2_lora", model, _lm_loss, train.x[pick], train.y[pick], seed)


def _windows(ids: list[int], cls: int, sep: int, count: int) -> Tensor:
    body = torch.tensor(ids[: count * (T - 2)]).view(count, T - 2)  # [N, T - 2]
    return torch.cat([torch.full((count, 1), cls), body, torch.full((count, 1), sep)], dim=1)  # [N, T]


def _minilm(figures: dict[str, float], seed: int) -> None:
    encoder = minilm()
    tok = encoder.tokenizer
    gen = torch.Generator().manual_seed(seed)

    def tokens(split: str, count: int) -> Tensor:
        raw = load("text", split=split, seed=seed, max_bytes=MAX_BYTES).x  # [L]
        text = bytes(raw.tolist()).decode("utf-8", errors="replace")
        ids = tok(text, add_special_tokens=False, verbose=False)["input_ids"]
        windows = _windows(ids, tok.cls_token_id, tok.sep_token_id, len(ids) // (T - 2))  # [N, T]
        return windows[torch.randperm(len(windows), generator=gen)[:count]]

    x, warm_x = tokens("train", max(BATCHES)), tokens("test", 8)  # [8, T], [8, T]
    y = torch.randint(0, 2, (len(x),), generator=gen)  # [8]
    warm_y = torch.randint(0, 2, (len(warm_x),), generator=gen)  # [8]

    config = LoraConfig(r=RANK, lora_alpha=RANK, target_modules=["query"], layers_to_transform=[0])
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # lora_A's and the head's initialisation come from the global RNG
        lora = _Classifier(get_peft_model(encoder.model, config), classes=2)
    _warm(lora, F.cross_entropy, warm_x, warm_y)
    _measure(figures, "minilm_lora", lora, F.cross_entropy, x, y, seed)

    base = minilm().model
    for p in base.parameters():
        p.requires_grad_(False)
    base.get_input_embeddings().weight.requires_grad_(True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        head = _Classifier(base, classes=2)
    _measure(figures, "minilm_embedding", head, F.cross_entropy, x, y, seed)


def check(seed: int = 0) -> ClaimResult:
    figures: dict[str, float] = {}
    _gpt2(figures, seed)
    _minilm(figures, seed)
    at_one = [v for k, v in figures.items() if k.endswith("_b1")]
    return ClaimResult(
        method="token_leak", claim=CLAIM, passed=bool(min(at_one) >= 0.9), figures=figures, seed=seed
    )
