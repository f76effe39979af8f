"""LLM-Pruner: group structure vs torch-pruning's dependency graph, scores vs a direct sum, shapes, reload."""

from __future__ import annotations

import copy

import pytest
import torch
import torch_pruning as tp
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.pytorch_utils import Conv1D

from gradinfo.compress import fisher_diag, llm_pruner, load_pruned, lora_recover, mean_grad
from gradinfo.compress.llm_pruner import Member, Unit, _architecture, _bert_units, _llama_units, lm_loss
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


# --- coupled groups against references ----------------------------------------------------
# torch-pruning's DependencyGraph traces which output rows / input columns must go together; gradinfo's
# unit builders must give exactly those groups. torch-pruning is no reference for GPT-2's heads (its split of
# the fused c_attn maps c_proj input j to c_attn output j, a query channel, where the value channel is
# 2 * hidden + j) nor for grouped-query heads (get_pruning_group does not finish through repeat_kv), so the
# heads of every architecture are also checked functionally: zeroing a unit's slices of every member must
# equal zeroing only its columns of the output projection, which holds exactly when every other member's
# slice feeds those columns alone.


class _Conv1DGraphPruner(tp.pruner.function.BasePruningFunc):
    """Lets torch-pruning trace through GPT-2's Conv1D (weight ``[in, out]``); the graph is only read."""

    TARGET_MODULES = Conv1D

    def prune_out_channels(self, layer: Conv1D, idxs: list[int]) -> Conv1D:
        raise NotImplementedError("the tests only read the dependency graph")

    def prune_in_channels(self, layer: Conv1D, idxs: list[int]) -> Conv1D:
        raise NotImplementedError("the tests only read the dependency graph")

    def get_out_channels(self, layer: Conv1D) -> int:
        return layer.nf

    def get_in_channels(self, layer: Conv1D) -> int:
        return layer.nx


CONV1D_PRUNER = _Conv1DGraphPruner()
OUT_FN = {torch.nn.Linear: tp.prune_linear_out_channels, Conv1D: CONV1D_PRUNER.prune_out_channels}
IN_FN = {torch.nn.Linear: tp.prune_linear_in_channels, Conv1D: CONV1D_PRUNER.prune_in_channels}


def _graph(model: torch.nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    return tp.DependencyGraph().build_dependency(
        model, example_inputs=example, verbose=False, customized_pruners={Conv1D: CONV1D_PRUNER}
    )


def _layer_deps(group: object) -> set[tuple[torch.nn.Module, str, int]]:
    """``{(Linear or Conv1D, "out"/"in", index)}`` of a torch-pruning group."""
    axis = {"prune_out_channels": "out", "prune_in_channels": "in"}
    return {
        (dep.target.module, axis[dep.handler.__name__], int(j))
        for dep, idxs in group
        if isinstance(dep.target.module, (torch.nn.Linear, Conv1D))
        for j in idxs
    }


def _assert_unit_matches_graph(graph: tp.DependencyGraph, unit: Unit, start: torch.nn.Module) -> None:
    """Each of ``unit``'s groups is the union of torch-pruning's groups of its positions in ``start``."""
    member = next(m for m in unit.members if m.module is start)
    fn = (OUT_FN if member.axis == "out" else IN_FN)[type(start)]
    for u in range(len(member.indices)):
        found = set()
        for j in member.indices[u].tolist():
            found |= _layer_deps(graph.get_pruning_group(start, fn, idxs=[j]))
        expected = {(m.module, m.axis, int(j)) for m in unit.members for j in m.indices[u]}
        assert found == expected, (unit.layer, unit.kind, u)


@pytest.mark.parametrize("arch", list(MODELS))
def test_mlp_groups_match_torch_pruning_dependency_graph(arch):
    model = MODELS[arch]()
    graph = _graph(model, _tokens(1, 8))
    units = _architecture(model)(model)
    assert [[u.kind for u in layer] for layer in units] == [["heads", "channels"]] * 3
    for _heads, channels in units:
        _assert_unit_matches_graph(graph, channels, channels.members[0].module)  # gate_proj / c_fc


def test_llama_head_groups_match_torch_pruning_dependency_graph():
    model = MODELS["llama"]()
    graph = _graph(model, _tokens(1, 8))
    for i, (heads, _channels) in enumerate(_llama_units(model)):
        assert heads.members[-1].module is model.model.layers[i].self_attn.o_proj
        _assert_unit_matches_graph(graph, heads, heads.members[-1].module)


def _weight_axis(module: torch.nn.Module, axis: str) -> int:
    """The weight axis of the output ("out") or input ("in") positions.

    Linear weights are ``[out, in]``, Conv1D weights ``[in, out]``.
    """
    return int((axis == "out") == isinstance(module, Conv1D))


def _zero(model: torch.nn.Module, member: Member, unit: int) -> None:
    """Zero ``unit``'s slice of ``member`` in ``model`` (a copy holding a module of the same name)."""
    module = dict(model.named_modules())[member.name]
    idx = member.indices[unit]  # [k]
    with torch.no_grad():
        module.weight.index_fill_(_weight_axis(module, member.axis), idx, 0.0)
        if member.axis == "out" and module.bias is not None:
            module.bias[idx] = 0.0


@pytest.mark.parametrize("arch", list(MODELS))
def test_head_groups_feed_only_their_output_columns(arch):
    model = MODELS[arch]().double().eval()
    tokens = _tokens(2, 8)
    with torch.no_grad():
        dense = model(tokens).logits  # [B, T, V]
    for layer in _architecture(model)(model):
        heads = layer[0]
        output = heads.members[-1]
        assert output.axis == "in" and all(m.axis == "out" for m in heads.members[:-1])
        for m in heads.members:
            size = m.module.weight.shape[_weight_axis(m.module, m.axis)]
            assert sorted(m.indices.flatten().tolist()) == list(range(size)), m.name  # a partition
        for u in range(len(output.indices)):
            only_output, whole = copy.deepcopy(model), copy.deepcopy(model)
            _zero(only_output, output, u)
            for m in heads.members:
                _zero(whole, m, u)
            with torch.no_grad():
                want, got = only_output(tokens).logits, whole(tokens).logits  # [B, T, V]
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12, msg=f"{heads.layer} head {u}")
            assert not torch.allclose(want, dense, atol=1e-6)  # the unit matters


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


# --- BERT adapter (_bert_units) ------------------------------------------------------------
# References: torch-pruning's DependencyGraph for the coupled groups, a float64 dense model with the
# removed heads/channels zeroed for the outputs, direct autograd loops for the scores, closed forms
# for the parameter counts.

BERT_HIDDEN, BERT_HEADS, BERT_HEAD_DIM, BERT_FF, BERT_VOCAB, BERT_LAYERS = 32, 4, 8, 64, 50, 2
BERT_CLASSES = {
    "model": transformers.BertModel,
    "seqcls": transformers.BertForSequenceClassification,
    "mlm": transformers.BertForMaskedLM,
}


def _bert(arch: str, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    config = transformers.BertConfig(
        vocab_size=BERT_VOCAB,
        hidden_size=BERT_HIDDEN,
        num_hidden_layers=BERT_LAYERS,
        num_attention_heads=BERT_HEADS,
        intermediate_size=BERT_FF,
        max_position_embeddings=16,
        num_labels=3,
        attn_implementation="eager",
    )
    torch.manual_seed(seed)
    return BERT_CLASSES[arch](config).to(dtype).eval()


def _bert_head(out: object) -> torch.Tensor:
    """The tensor each BERT head class returns: logits, or the last hidden state of the bare encoder."""
    return out.logits if hasattr(out, "logits") else out.last_hidden_state  # [B, T, V] / [B, C] / [B, T, D]


def _bert_batch(arch: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, object]:
    """``(input_ids [B, T], targets, loss_fn)`` suited to the head of ``arch``."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(BERT_VOCAB, (4, 9), generator=gen)  # [B, T]
    if arch == "seqcls":
        labels = torch.randint(3, (4,), generator=gen)  # [B]
        return ids, labels, lambda out, y: torch.nn.functional.cross_entropy(out.logits, y)
    if arch == "mlm":
        return ids, torch.randint(BERT_VOCAB, (4, 9), generator=gen), lm_loss
    target = torch.randn(4, 9, BERT_HIDDEN, generator=gen, dtype=torch.float64)  # [B, T, D]
    return ids, target, lambda out, y: (out.last_hidden_state - y).square().mean()


def _encoder(model: torch.nn.Module) -> torch.nn.Module:
    return model.bert.encoder if hasattr(model, "bert") else model.encoder


def _masked_dense(model: torch.nn.Module, removed: dict[str, tuple[int, ...]]) -> torch.nn.Module:
    """A copy of the dense ``model`` in which every removed head and MLP channel is zeroed, by hand."""
    dense = copy.deepcopy(model)
    hd = BERT_HEAD_DIM
    with torch.no_grad():
        for i, layer in enumerate(_encoder(dense).layer):
            sa = layer.attention.self
            for h in removed.get(f"layer.{i}.heads", ()):
                rows = slice(h * hd, (h + 1) * hd)
                for lin in (sa.query, sa.key, sa.value):
                    lin.weight[rows] = 0.0
                    lin.bias[rows] = 0.0
                layer.attention.output.dense.weight[:, rows] = 0.0
            for c in removed.get(f"layer.{i}.channels", ()):
                layer.intermediate.dense.weight[c] = 0.0
                layer.intermediate.dense.bias[c] = 0.0
                layer.output.dense.weight[:, c] = 0.0
    return dense


def test_bert_groups_match_torch_pruning_dependency_graph():
    model = _bert("model", dtype=torch.float32)
    graph = _graph(model, torch.randint(BERT_VOCAB, (1, 8)))
    units = _bert_units(model)
    assert [[u.kind for u in layer] for layer in units] == [["heads", "channels"]] * BERT_LAYERS
    for i, (heads, channels) in enumerate(units):
        layer = model.encoder.layer[i]
        assert heads.members[-1].module is layer.attention.output.dense
        assert channels.members[0].module is layer.intermediate.dense
        _assert_unit_matches_graph(graph, heads, layer.attention.output.dense)
        _assert_unit_matches_graph(graph, channels, layer.intermediate.dense)


def _removed_params(n_heads: int, n_channels: int) -> int:
    """Closed form: a head takes ``hd`` rows (+ bias) of q, k, v and ``hd`` columns of the output dense; an
    MLP channel one row (+ bias) of the intermediate dense and one column of the output dense."""
    d, hd = BERT_HIDDEN, BERT_HEAD_DIM
    return n_heads * (3 * hd * (d + 1) + d * hd) + n_channels * (d + 1 + d)


@pytest.mark.parametrize("arch", list(BERT_CLASSES))
def test_bert_pruned_equals_masked_dense_counts_and_config(arch):
    model = _bert(arch)
    ids, target, loss_fn = _bert_batch(arch)
    dense = copy.deepcopy(model)
    # one head of four: a wrongly mapped head cannot land on itself (as {0, 3} would under a reversal)
    pruned, report = llm_pruner(model, [(ids, target)], 0.25, keep_first_last=False, loss_fn=loss_fn)
    assert report.layers == (0, 1)
    n_heads = n_channels = 0
    for i, layer in enumerate(_encoder(pruned).layer):
        heads, channels = report.removed[f"layer.{i}.heads"], report.removed[f"layer.{i}.channels"]
        assert len(heads) == BERT_HEADS // 4 and len(channels) == BERT_FF // 4
        n_heads, n_channels = n_heads + len(heads), n_channels + len(channels)
        sa, kept = layer.attention.self, BERT_HEADS - len(heads)
        assert sa.num_attention_heads == kept and sa.attention_head_size == BERT_HEAD_DIM
        assert sa.all_head_size == kept * BERT_HEAD_DIM
        assert sa.query.out_features == sa.key.out_features == sa.value.out_features == sa.all_head_size
        assert layer.attention.output.dense.in_features == sa.all_head_size
        assert layer.attention.output.dense.out_features == BERT_HIDDEN
        assert (
            layer.intermediate.dense.out_features == layer.output.dense.in_features == BERT_FF - len(channels)
        )
    # the global config keeps describing the dense model (head size = hidden / heads must not change); the
    # per-layer widths live in pruned_shapes/pruned_attrs
    assert pruned.config.num_attention_heads == BERT_HEADS and pruned.config.intermediate_size == BERT_FF
    before = sum(p.numel() for p in dense.parameters())
    assert report.params_before == before
    assert report.params_after == sum(p.numel() for p in pruned.parameters())
    assert before - report.params_after == _removed_params(n_heads, n_channels)
    reference = _masked_dense(dense, report.removed)
    with torch.no_grad():
        got, want = _bert_head(pruned(ids)), _bert_head(reference(ids))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    with torch.no_grad():  # the zeroing matters: the dense model's outputs differ
        assert not torch.allclose(_bert_head(dense(ids)), want, atol=1e-6)


def _naive_bert_taylor(
    model: torch.nn.Module, ids: torch.Tensor, target: torch.Tensor, loss_fn: object, layer: int
) -> tuple[list[float], list[float]]:
    """``sum |w g|`` over each head's and each MLP channel's weights and biases, one group at a time."""
    names = dict(model.named_parameters())
    loss = loss_fn(model(ids), target)
    grads = dict(zip(names, torch.autograd.grad(loss, list(names.values()), allow_unused=True), strict=True))
    pre = f"{'bert.' if hasattr(model, 'bert') else ''}encoder.layer.{layer}"

    def wg(name: str) -> torch.Tensor:
        return (names[name].detach() * grads[name]).abs()  # [*shape]

    heads = []
    for h in range(BERT_HEADS):
        rows = slice(h * BERT_HEAD_DIM, (h + 1) * BERT_HEAD_DIM)
        total = torch.zeros((), dtype=torch.float64)
        for p in ("query", "key", "value"):
            total += wg(f"{pre}.attention.self.{p}.weight")[rows].sum()
            total += wg(f"{pre}.attention.self.{p}.bias")[rows].sum()
        total += wg(f"{pre}.attention.output.dense.weight")[:, rows].sum()
        heads.append(float(total))
    channels = []
    for c in range(BERT_FF):
        total = wg(f"{pre}.intermediate.dense.weight")[c].sum() + wg(f"{pre}.intermediate.dense.bias")[c]
        total += wg(f"{pre}.output.dense.weight")[:, c].sum()
        channels.append(float(total))
    return heads, channels


@pytest.mark.parametrize("arch", list(BERT_CLASSES))
def test_bert_taylor_scores_and_ranks_match_naive_loop(arch):
    model = _bert(arch, seed=1)
    ids, target, loss_fn = _bert_batch(arch, seed=1)
    ref = {i: _naive_bert_taylor(model, ids, target, loss_fn, i) for i in range(BERT_LAYERS)}
    _, report = llm_pruner(model, [(ids, target)], 0.25, layers=[0, 1], loss_fn=loss_fn)
    for i, (heads, channels) in ref.items():
        for kind, want in (("heads", heads), ("channels", channels)):
            got = torch.tensor(report.scores[f"layer.{i}.{kind}"], dtype=torch.float64)
            want_t = torch.tensor(want, dtype=torch.float64)
            torch.testing.assert_close(got, want_t, rtol=1e-10, atol=1e-14)
            assert torch.equal(torch.argsort(got, stable=True), torch.argsort(want_t, stable=True))
            lowest = sorted(torch.argsort(want_t, stable=True)[: int(0.25 * len(want))].tolist())
            assert list(report.removed[f"layer.{i}.{kind}"]) == lowest


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    ratio=st.sampled_from([0.25, 0.5, 0.75]),
    kind=st.sampled_from(["taylor", "param_mix", "vectorize", "l2", "random"]),
    prune=st.sampled_from([("heads",), ("channels",), ("heads", "channels")]),
)
def test_bert_any_pruning_equals_masked_dense(seed, ratio, kind, prune):
    model = _bert("mlm", seed=seed)
    ids, target, loss_fn = _bert_batch("mlm", seed=seed)
    dense = copy.deepcopy(model)
    pruned, report = llm_pruner(
        model, [(ids, target)], ratio, importance=kind, layers=[0, 1], prune=prune, loss_fn=loss_fn, seed=seed
    )
    assert {k.rsplit(".", 1)[1] for k in report.removed} == set(prune)
    removed_heads = sum(len(v) for k, v in report.removed.items() if k.endswith("heads"))
    removed_channels = sum(len(v) for k, v in report.removed.items() if k.endswith("channels"))
    assert report.params_before - report.params_after == _removed_params(removed_heads, removed_channels)
    with torch.no_grad():
        got, want = pruned(ids).logits, _masked_dense(dense, report.removed)(ids).logits  # [B, T, V]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_bert_save_pretrained_reload_gives_equal_outputs(tmp_path):
    model = _bert("seqcls")
    ids, target, loss_fn = _bert_batch("seqcls")
    pruned, _ = llm_pruner(model, [(ids, target)], 0.5, keep_first_last=False, loss_fn=loss_fn)
    pruned.save_pretrained(tmp_path)
    again = load_pruned(tmp_path, attn_implementation="eager").eval()
    assert type(again).__name__ == "PrunedBertForSequenceClassification"
    assert again.bert.encoder.layer[1].attention.self.num_attention_heads == 2
    state = pruned.state_dict()
    assert again.state_dict().keys() == state.keys()
    for name, tensor in again.state_dict().items():
        assert torch.equal(tensor, state[name]), name
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, pruned(ids).logits, rtol=0, atol=0)


def test_bert_param_mix_channel_scores_match_per_example_loop():
    model = _bert("seqcls", seed=2)
    ids, target, loss_fn = _bert_batch("seqcls", seed=2)
    pre = "bert.encoder.layer.1"
    names = [
        f"{pre}.intermediate.dense.weight",
        f"{pre}.intermediate.dense.bias",
        f"{pre}.output.dense.weight",
    ]
    params = dict(model.named_parameters())
    per_example = [
        torch.autograd.grad(loss_fn(model(ids[b : b + 1]), target[b : b + 1]), [params[n] for n in names])
        for b in range(len(ids))
    ]
    g = [torch.stack(gs).mean(0) for gs in zip(*per_example, strict=True)]  # mean gradient
    f = [torch.stack(gs).square().mean(0) for gs in zip(*per_example, strict=True)]  # empirical Fisher
    mix = [
        (params[n].detach() * g[k] - 0.5 * params[n].detach() ** 2 * f[k]).abs() for k, n in enumerate(names)
    ]
    want = mix[0].sum(1) + mix[1] + mix[2].sum(0)  # [F]
    _, report = llm_pruner(
        model, [(ids, target)], 0.5, importance="param_mix", layers=[1], prune=("channels",), loss_fn=loss_fn
    )
    got = torch.tensor(report.scores["layer.1.channels"], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize(("arch", "error"), [("model", TypeError), ("seqcls", ValueError)])
def test_bert_without_lm_head_needs_a_loss_fn(arch, error):
    with pytest.raises(error, match="loss_fn"):
        llm_pruner(_bert(arch), torch.randint(BERT_VOCAB, (2, 6)), 0.5, keep_first_last=False)
