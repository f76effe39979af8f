"""token_leak: the recovered token set against the true set of the victim's batch (the reference)."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from peft import LoraConfig, get_peft_model
from torch import Tensor

from gradinfo.models import tiny_gpt2, tiny_llama
from gradinfo.privacy import share
from gradinfo.privacy.attacks.token_leak import token_leak

V, T = 64, 8


def _loss(out: object, y: Tensor) -> Tensor:
    return F.cross_entropy(out.logits.flatten(0, 1), y.flatten())  # type: ignore[attr-defined]


def _batch(b: int, seed: int = 0) -> Tensor:
    return torch.randint(0, V, (b, T), generator=torch.Generator().manual_seed(seed))  # [B, T]


def _gpt2() -> torch.nn.Module:
    return tiny_gpt2(vocab_size=V, hidden_size=32, num_layers=2, num_heads=2, max_positions=T, seed=0)


def _lora(init: bool) -> torch.nn.Module:
    config = LoraConfig(
        r=T,
        lora_alpha=T,
        target_modules=["c_attn"],
        layers_to_transform=[0],
        fan_in_fan_out=True,
        init_lora_weights=init,
    )
    torch.manual_seed(0)
    return get_peft_model(_gpt2(), config)


def _pairs(x: Tensor) -> set[tuple[int, int]]:
    return {(int(v), t) for row in x for t, v in enumerate(row)}


@functools.cache
def _llama() -> torch.nn.Module:
    return tiny_llama(vocab_size=V, hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1, seed=0)


@settings(max_examples=6, deadline=None)
@given(b=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_embedding_rows_recover_exact_set_untied(b: int, seed: int) -> None:
    model = _llama()
    assert not model.config.tie_word_embeddings
    x = _batch(b, seed)
    rec = token_leak(model, share(model, _loss, x, x.roll(-1, 1)))
    assert rec.extras["method"] == "embedding"
    assert rec.extras["tokens"] == sorted(set(x.flatten().tolist()))
    assert rec.labels is None and rec.inputs.dtype == torch.int64


def test_tied_full_finetuning_uses_span_on_first_projection_and_recovers_sequence() -> None:
    model = _gpt2()
    x = _batch(1, 3)
    rec = token_leak(model, share(model, _loss, x, x.roll(-1, 1)))
    assert rec.extras["method"] == "span"
    assert rec.extras["layer"] == "transformer.h.0.attn.c_attn.weight"  # a Conv1D: columns span the inputs
    assert rec.extras["tokens"] == sorted(set(x.flatten().tolist()))
    assert {tuple(p) for p in rec.extras["pairs"].tolist()} == _pairs(x)


def test_lora_span_exact_at_b1_and_delta_updates() -> None:
    model = _lora(init=False)  # random B: the adapter is already "warm"
    x = _batch(1, 5)
    for steps in (1, 3):
        update = share(model, _loss, x, x.roll(-1, 1), local_steps=steps, lr=0.05)
        rec = token_leak(model, update)
        assert "lora_A" in rec.extras["layer"]
        assert rec.extras["rank"] == T
        assert rec.extras["tokens"] == sorted(set(x.flatten().tolist()))
        assert {tuple(p) for p in rec.extras["pairs"].tolist()} == _pairs(x)
        scores = rec.extras["scores"]  # [V]
        assert scores.shape == (V,)
        absent = torch.ones(V, dtype=torch.bool)
        absent[x.flatten()] = False
        assert scores[absent].max() < 1 - 0.05 <= scores[~absent].min()


def test_lora_rank_below_token_count_loses_recall() -> None:
    model = _lora(init=False)
    x = _batch(4, 6)  # 32 token positions, adapter rank 8
    rec = token_leak(model, share(model, _loss, x, x.roll(-1, 1)))
    assert rec.extras["rank"] == T
    assert len(set(rec.extras["tokens"])) < len(set(x.flatten().tolist()))


def test_lora_at_zero_init_leaks_nothing() -> None:
    model = _lora(init=True)  # B = 0, so dL/dA = 0
    x = _batch(1)
    rec = token_leak(model, share(model, _loss, x, x.roll(-1, 1)))
    assert rec.extras["rank"] == 0 and rec.extras["tokens"] == []


def test_model_left_untouched() -> None:
    model = _gpt2().train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = _batch(1)
    token_leak(model, share(model, _loss, x, x.roll(-1, 1)))
    assert all(m.training for m in model.modules())
    for n, p in model.named_parameters():
        torch.testing.assert_close(p, before[n], rtol=0, atol=0)


def test_layer_after_attention_is_rejected() -> None:
    model = _gpt2()
    x = _batch(1)
    update = share(model, _loss, x, x.roll(-1, 1))
    with pytest.raises(ValueError, match="depends on other positions"):
        token_leak(model, update, layer="transformer.h.1.attn.c_attn.weight")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"tau": 0.0}, ValueError),
        ({"tau": 1.0}, ValueError),
        ({"rank_tol": 2.0}, ValueError),
        ({"method": "rows"}, ValueError),
        ({"method": "embedding", "layer": None}, None),
        ({"layer": "nope"}, ValueError),
        ({"layer": "transformer.ln_f.weight"}, ValueError),
        ({"positions": 0}, ValueError),
        ({"seed": -1}, ValueError),
        ({"chunk": 1.5}, TypeError),
    ],
)
def test_bad_arguments(kwargs: dict, error: type[Exception] | None) -> None:
    model = _gpt2()
    for p in model.transformer.h[0].parameters():
        p.requires_grad_(False)  # the first projection's gradient is absent, the tied embedding's present
    x = _batch(1)
    update = share(model, _loss, x, x.roll(-1, 1))
    if error is None:  # a tied embedding still counts for an explicit method="embedding" request
        assert token_leak(model, update, **kwargs).extras["method"] == "embedding"
        return
    with pytest.raises(error):
        token_leak(model, update, **kwargs)


def test_wrong_types() -> None:
    model = _gpt2()
    with pytest.raises(TypeError, match="SharedUpdate"):
        token_leak(model, {"w": torch.zeros(1)})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"nn\.Module"):
        token_leak("gpt2", None)  # type: ignore[arg-type]
