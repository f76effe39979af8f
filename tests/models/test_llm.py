"""tiny_llama / tiny_gpt2: shapes, seeding, causality, per-example gradients through torch.func."""

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from gradinfo.capture import per_example_grads
from gradinfo.models import tiny_gpt2, tiny_llama


def lm_loss(out: object, targets: Tensor) -> Tensor:
    return F.cross_entropy(out.logits.flatten(0, 1), targets.flatten())


BUILDERS = {"llama": tiny_llama, "gpt2": tiny_gpt2}


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_logits_shape_and_seeding(kind: str) -> None:
    build = BUILDERS[kind]
    a, b, c = build(vocab_size=50, seed=1), build(vocab_size=50, seed=1), build(vocab_size=50, seed=2)
    ids = torch.randint(0, 50, (3, 9))
    assert a(ids).logits.shape == (3, 9, 50)
    torch.testing.assert_close(a(ids).logits, b(ids).logits, rtol=0, atol=0)
    assert not torch.equal(a(ids).logits, c(ids).logits)
    assert a.config._attn_implementation == "eager" and a.config.use_cache is False


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_is_causal(kind: str) -> None:
    model = BUILDERS[kind]()
    ids = torch.randint(0, 256, (1, 10))
    changed = ids.clone()
    changed[0, 6] = (ids[0, 6] + 1) % 256
    before, after = model(ids).logits, model(changed).logits  # [1, 10, 256]
    torch.testing.assert_close(before[:, :6], after[:, :6], rtol=0, atol=1e-6)
    assert not torch.allclose(before[:, 6:], after[:, 6:])


def test_llama_grouped_query_attention_sizes() -> None:
    model = tiny_llama(hidden_size=64, num_heads=4, num_kv_heads=2, intermediate_size=96)
    attn = model.model.layers[0].self_attn
    assert attn.q_proj.out_features == 64 and attn.k_proj.out_features == 2 * 16
    assert model.model.layers[0].mlp.gate_proj.out_features == 96


def test_gpt2_ties_input_and_output_embeddings() -> None:
    model = tiny_gpt2()
    assert model.lm_head.weight is model.transformer.wte.weight


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_per_example_gradients_match_a_float64_loop(kind: str) -> None:
    model = BUILDERS[kind](hidden_size=32, num_layers=1, num_heads=2, vocab_size=40).double()
    ids, targets = torch.randint(0, 40, (3, 6)), torch.randint(0, 40, (3, 6))
    grads = per_example_grads(model, lm_loss, ids, targets)
    names = [n for n, _ in model.named_parameters()]
    assert sorted(grads) == sorted(names)
    for i in range(3):
        model.zero_grad()
        lm_loss(model(ids[i : i + 1]), targets[i : i + 1]).backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(grads[name][i], p.grad, rtol=1e-10, atol=1e-12)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_kv_heads"):
        tiny_llama(num_heads=4, num_kv_heads=3)
    with pytest.raises(ValueError, match="num_heads must divide hidden_size"):
        tiny_gpt2(hidden_size=30, num_heads=4)
    with pytest.raises(ValueError, match="even"):
        tiny_llama(hidden_size=12, num_heads=4, num_kv_heads=2)
    with pytest.raises(ValueError, match="dropout"):
        tiny_gpt2(dropout=1.0)
