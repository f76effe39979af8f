"""LLM-Pruner: group structure vs torch-pruning's dependency graph, scores vs a direct sum, shapes, reload."""

from __future__ import annotations

import pytest
import torch
import torch_pruning as tp

from gradinfo.compress import fisher_diag, llm_pruner, load_pruned, lora_recover, mean_grad
from gradinfo.compress.llm_pruner import lm_loss
from gradinfo.models import tiny_gpt2, tiny_llama


def _tokens(n: int = 4, t: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.randint(256, (n, t), generator=torch.Generator().manual_seed(seed))  # [B, T]


MODELS = {
    "llama": lambda: tiny_llama(
        hidden_size=32, num_layers=3, num_heads=4, num_kv_heads=4, intermediate_size=40
    ),
    "llama_gqa": lambda: tiny_llama(
        hidden_size=32, num_layers=3, num_heads=8, num_kv_heads=4, intermediate_size=40
    ),
    "gpt2": lambda: tiny_gpt2(hidden_size=32, num_layers=3, num_heads=4),
}


@pytest.mark.parametrize("arch", list(MODELS))
@pytest.mark.parametrize("kind", ["taylor", "param_mix", "l2", "random", "vectorize"])
def test_removed_groups_score_lowest_ratio_and_shapes(arch, kind):
    model = MODELS[arch]().eval()
    tokens = _tokens()
    pruned, report = llm_pruner(model, tokens, 0.5, importance=kind)
    assert report.layers == (1,)  # first and last kept
    for key, removed in report.removed.items():
        scores = report.scores[key]
        kept = [s for i, s in enumerate(scores) if i not in removed]
        assert len(removed) == int(0.5 * len(scores))
        assert max(scores[i] for i in removed) <= min(kept)
    logits = pruned(tokens).logits  # [B, T, V]
    assert logits.shape == (4, 10, 256) and torch.isfinite(logits).all()
    assert report.params_after < report.params_before == sum(p.numel() for p in MODELS[arch]().parameters())
    assert report.params_after == sum(p.numel() for p in pruned.parameters())


def test_llama_shapes_and_gqa_keeps_queries_per_kv():
    model = MODELS["llama_gqa"]().eval()
    pruned, report = llm_pruner(model, _tokens(), 0.5)
    att, mlp = pruned.model.layers[1].self_attn, pruned.model.layers[1].mlp
    assert report.removed["layer.1.heads"] and len(report.removed["layer.1.heads"]) == 2  # 2 of 4 KV groups
    assert att.k_proj.out_features == att.v_proj.out_features == 2 * att.head_dim
    assert att.q_proj.out_features == att.o_proj.in_features == 2 * 2 * att.head_dim  # 2 queries per KV head
    assert mlp.gate_proj.out_features == mlp.up_proj.out_features == mlp.down_proj.in_features == 20
    whole = pruned.model.layers[0].self_attn
    assert whole.q_proj.out_features == 32 and pruned.model.layers[2].mlp.down_proj.in_features == 40


def test_taylor_group_score_is_direct_sum_of_w_times_g():
    model = MODELS["llama"]().eval()
    tokens = _tokens()
    batches = [(tokens[:, :-1], tokens[:, 1:])]
    g = mean_grad(model, batches, lm_loss)
    w = dict(model.named_parameters())
    pre, hd = "model.layers.1", 8
    ref = []
    for h in range(4):
        rows = slice(h * hd, (h + 1) * hd)
        total = sum(
            (w[f"{pre}.self_attn.{p}_proj.weight"] * g[f"{pre}.self_attn.{p}_proj.weight"])[rows].abs().sum()
            for p in "qkv"
        )
        total = (
            total
            + (w[f"{pre}.self_attn.o_proj.weight"] * g[f"{pre}.self_attn.o_proj.weight"])[:, rows].abs().sum()
        )
        ref.append(float(total))
    _, report = llm_pruner(model, batches, 0.25, prune=("heads",))
    torch.testing.assert_close(
        torch.tensor(report.scores["layer.1.heads"]), torch.tensor(ref), rtol=1e-5, atol=1e-9
    )


def test_param_mix_channel_score_uses_per_example_fisher():
    model = MODELS["llama"]().eval()
    tokens = _tokens()
    batches = [(tokens[:, :-1], tokens[:, 1:])]
    g, f = mean_grad(model, batches, lm_loss), fisher_diag(model, batches, lm_loss)
    w = dict(model.named_parameters())
    pre = "model.layers.1.mlp"
    mix = {n: (w[n] * g[n] - 0.5 * w[n] ** 2 * f[n]).abs().detach() for n in w if n.startswith(pre)}
    ref = (
        mix[f"{pre}.gate_proj.weight"].sum(1)
        + mix[f"{pre}.up_proj.weight"].sum(1)
        + mix[f"{pre}.down_proj.weight"].sum(0)
    )
    _, report = llm_pruner(model, batches, 0.25, importance="param_mix", prune=("channels",))
    torch.testing.assert_close(torch.tensor(report.scores["layer.1.channels"]), ref, rtol=1e-5, atol=1e-9)


def test_mlp_groups_match_torch_pruning_dependency_graph():
    model = MODELS["llama"]()
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=_tokens(1, 8), verbose=False)
    layer = model.model.layers[1].mlp
    group = graph.get_pruning_group(layer.gate_proj, tp.prune_linear_out_channels, idxs=[3])
    found = {
        (dep.target.module, dep.handler.__name__, tuple(idxs))
        for dep, idxs in group
        if isinstance(dep.target.module, torch.nn.Linear)
    }
    assert found == {
        (layer.gate_proj, "prune_out_channels", (3,)),
        (layer.up_proj, "prune_out_channels", (3,)),
        (layer.down_proj, "prune_in_channels", (3,)),
    }


@pytest.mark.parametrize("arch", list(MODELS))
def test_save_pretrained_reload_gives_equal_logits(arch, tmp_path):
    model = MODELS[arch]().eval()
    tokens = _tokens()
    pruned, _ = llm_pruner(model, tokens, 0.5)
    pruned.save_pretrained(tmp_path)
    again = load_pruned(tmp_path, attn_implementation="eager").eval()
    assert type(again) is type(pruned)
    with torch.no_grad():
        torch.testing.assert_close(again(tokens).logits, pruned(tokens).logits, rtol=0, atol=0)


def test_lora_recover_keeps_shapes_and_lowers_loss():
    model = MODELS["llama"]().eval()
    tokens = _tokens(16, 12, seed=3)
    pruned, _ = llm_pruner(model, tokens, 0.5)
    shapes = {n: p.shape for n, p in pruned.named_parameters()}
    with torch.no_grad():
        before = lm_loss(pruned(tokens[:, :-1]), tokens[:, 1:]).item()
    recovered = lora_recover(pruned, tokens, 20, lr=1e-2)
    assert {n: p.shape for n, p in recovered.named_parameters()} == shapes
    with torch.no_grad():
        assert lm_loss(recovered(tokens[:, :-1]), tokens[:, 1:]).item() < before


def test_dataset_calibration_and_no_prunable_layer():
    model = tiny_llama(hidden_size=16, num_layers=3, num_heads=2, num_kv_heads=2, intermediate_size=16)
    _, report = llm_pruner(model, "text", 0.5, num_examples=2, seq_len=8)
    assert report.removed["layer.1.heads"] and len(report.removed["layer.1.channels"]) == 8
    two = tiny_llama(hidden_size=16, num_layers=2, num_heads=2, num_kv_heads=2)
    with pytest.raises(ValueError, match="keep_first_last"):
        llm_pruner(two, _tokens(), 0.3)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ratio": 0.0},
        {"ratio": 1.0},
        {"importance": "hessian"},
        {"aggregation": "median"},
        {"layers": [5]},
        {"prune": ("rows",)},
        {"calibration": 3},
        {"calibration": [torch.zeros(2, 4)]},
    ],
)
def test_bad_arguments_raise(kwargs):
    args = {"calibration": _tokens(), "ratio": 0.3, **kwargs}
    with pytest.raises((ValueError, TypeError)):
        llm_pruner(MODELS["llama"](), args.pop("calibration"), args.pop("ratio"), **args)
