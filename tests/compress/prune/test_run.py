"""The prune job: every method end to end against a direct call of the method, reload round trips,
validation before any work, resume, and foreign or mismatched output folders."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import gradinfo.compress.prune.run as run
from gradinfo import tasks
from gradinfo.compress.gaprune import SentenceEncoder, gaprune
from gradinfo.compress.llm_pruner import llm_pruner, lm_loss
from gradinfo.compress.modegpt import modegpt
from gradinfo.compress.obs_prune import obs_prune
from gradinfo.compress.prune import METHODS, PruneConfig, load_job_model, make_config, prune
from gradinfo.compress.prune import data as prune_data
from gradinfo.compress.prune import metrics as prune_metrics
from gradinfo.compress.prune.data import Task, load_task
from gradinfo.compress.prune.models import build_model, decoder_weights
from gradinfo.core.jobconfig import JobConfigError
from gradinfo.core.jobdir import JobDirError

SMALL = {
    "tiny-llama": {
        "hidden_size": 16,
        "num_layers": 3,
        "num_heads": 4,
        "num_kv_heads": 4,
        "intermediate_size": 32,
    },
    "tiny-gpt2": {"hidden_size": 16, "num_layers": 3, "num_heads": 2},
    "mlp-digits": {"in_features": 64, "num_classes": 10, "hidden": [16]},
}


def small_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The builtins' tasks with tiny models, 64 evaluation examples and 2 timed passes."""
    for name, kwargs in SMALL.items():
        monkeypatch.setitem(tasks.TASKS, name, dataclasses.replace(tasks.TASKS[name], kwargs=kwargs))
    monkeypatch.setattr(tasks, "EVAL_EXAMPLES", 64)
    monkeypatch.setattr(prune_metrics, "TIMED_PASSES", 2)


@pytest.fixture(autouse=True)
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny builtins and evaluation sets so that every run takes seconds."""
    small_builtins(monkeypatch)
    for name, value in {"BLOCK": 16, "TEXT_BYTES": 20_000, "TEXT_EVAL_WINDOWS": 4}.items():
        monkeypatch.setattr(tasks, name, value)
    monkeypatch.setattr(prune_data, "EVAL_PAIRS", 8)


def no_pruning(monkeypatch: pytest.MonkeyPatch, message: str) -> None:
    """Every method's run fails the test with ``message``."""
    for name, method in METHODS.items():
        monkeypatch.setitem(METHODS, name, dataclasses.replace(method, run=lambda *a: pytest.fail(message)))


def tiny_bert_folder(folder: Path) -> Path:
    """A 2-layer BERT (hidden 8) saved with MiniLM's tokenizer: a small Hugging Face encoder folder."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from gradinfo.models import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=64, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def direct(config: PruneConfig) -> tuple[nn.Module, nn.Module, Task]:
    """The dense model and the same method called directly on it (independent of the job's save/reload)."""
    model, tokenizer = build_model(config.model, config.seed)
    task = load_task(config.dataset(), config.seed, config.fingerprint()["examples"], tokenizer)
    if task.kind == "encoder":
        model = SentenceEncoder(model, pad_id=tokenizer.pad_token_id)
    dense = copy.deepcopy(model)
    if config.method == "llm_pruner":
        pruned, _ = llm_pruner(
            model, task.calibration, config.ratio, importance=config.importance or "taylor"
        )
    elif config.method == "modegpt":
        pruned, _ = modegpt(model, [x for x, _ in task.calibration], config.ratio)
    elif config.method == "obs":
        params = decoder_weights(model) if task.kind == "lm" else None
        pruned, _ = obs_prune(model, task.calibration, task.loss, config.ratio, params=params,
                              m=config.fingerprint()["examples"], damping=1e-5, block_size=128)  # fmt: skip
    else:
        pruned, _ = gaprune(model, task.calibration, task.general, config.ratio)
    return dense, pruned, task


def outputs(model: nn.Module, task: Task) -> torch.Tensor:
    x = task.evaluation[0][:4]
    with torch.no_grad():
        if task.kind == "lm":
            return model(input_ids=x).logits
        if task.kind == "encoder":
            encoder = model.encoder if isinstance(model, SentenceEncoder) else model
            return encoder(input_ids=x, attention_mask=(x != 0).long()).last_hidden_state
        return model(x)


CASES = [
    ("tiny-llama", "llm_pruner", {}),
    ("tiny-gpt2", "llm_pruner", {"importance": "l2"}),
    ("tiny-llama", "modegpt", {}),
    ("mlp-digits", "obs", {"examples": 16}),
    ("tiny-llama", "obs", {"examples": 4}),
]


@pytest.mark.parametrize(("model", "method", "extra"), CASES, ids=[f"{m}-{k}" for m, k, _ in CASES])
def test_each_method_runs_end_to_end_and_reloads_to_the_direct_result(
    model: str, method: str, extra: dict[str, Any], tmp_path: Path
) -> None:
    config = make_config(model=model, method=method, ratio=0.5, train_steps=0, out=tmp_path / "o", **extra)
    result = prune(config, progress=False)
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert result.rows == [report] and result.report == tmp_path / "o" / "report.md"
    assert (tmp_path / "o" / "report.md").read_text().startswith(f"# gradinfo prune: {method} on {model}")
    dense, expected, task = direct(config)
    reloaded = load_job_model(tmp_path / "o")
    torch.testing.assert_close(outputs(reloaded, task), outputs(expected, task), atol=1e-5, rtol=1e-5)
    assert report["reload_max_abs_difference"] < 1e-5
    counted = sum(p.numel() for p in dense.parameters())
    assert report["parameters_before"] == counted
    if method in ("llm_pruner", "modegpt"):
        assert report["parameters_after"] == sum(p.numel() for p in reloaded.parameters()) < counted
    else:
        nonzero = sum(int(p.count_nonzero()) for p in reloaded.parameters())
        assert report["nonzero_after"] == nonzero < report["nonzero_before"]
        assert report["groups"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    x, y = task.evaluation
    with torch.no_grad():
        if task.kind == "lm":
            assert report["perplexity_before"] == pytest.approx(
                math.exp(lm_loss(dense(input_ids=x), y)), rel=1e-5
            )
            assert report["perplexity_after"] == pytest.approx(
                math.exp(lm_loss(expected(input_ids=x), y)), rel=1e-4
            )
        else:
            accuracy = float((expected(x).argmax(-1) == y).float().mean())
            assert report["accuracy_after"] == pytest.approx(accuracy)
    assert report["latency_ms_before"] > 0 and report["latency_ms_after"] > 0
    assert report["groups"]


def test_llm_pruner_report_names_the_removed_heads_and_channels(tmp_path: Path) -> None:
    config = make_config(model="tiny-llama", method="llm_pruner", ratio=0.5, train_steps=0, out=tmp_path)
    report = prune(config, progress=False).rows[0]
    removed = report["groups"]["removed"]
    assert report["groups"]["layers_pruned"] == [1]  # first and last layers kept
    assert len(removed["layer.1.heads"]) == 2 and len(removed["layer.1.channels"]) == 16
    reloaded = load_job_model(tmp_path)
    assert reloaded.model.layers[1].self_attn.q_proj.out_features == 2 * 4
    assert reloaded.model.layers[1].mlp.gate_proj.out_features == 16
    assert reloaded.model.layers[0].mlp.gate_proj.out_features == 32


def test_gaprune_on_a_hugging_face_encoder_folder(tmp_path: Path) -> None:
    folder = tiny_bert_folder(tmp_path / "bert")
    config = make_config(model=str(folder), method="gaprune", ratio=0.5, examples=8, out=tmp_path / "o")
    report = prune(config, progress=False).rows[0]
    assert report["config"]["calibration"] == "finance" and report["metric"] == "mrr"
    _, expected, task = direct(config)
    reloaded = load_job_model(tmp_path / "o")
    torch.testing.assert_close(outputs(reloaded, task), outputs(expected, task), atol=1e-6, rtol=1e-6)
    assert (tmp_path / "o" / "model" / "tokenizer.json").is_file()
    assert report["groups"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert all(name.startswith("encoder.layer.") for name in report["groups"]["pruned_share_per_weight"])


@pytest.mark.slow
def test_gaprune_on_the_packaged_minilm(tmp_path: Path) -> None:
    config = make_config(model="minilm", method="gaprune", ratio=0.5, examples=8, out=tmp_path)
    report = prune(config, progress=False).rows[0]
    assert report["nonzero_after"] < report["nonzero_before"]
    assert 0 <= report["mrr_after"] <= 100


def test_lora_recovery_is_recorded_and_saved(tmp_path: Path) -> None:
    config = make_config(
        model="tiny-llama", method="llm_pruner", ratio=0.5, train_steps=0, lora_steps=3, out=tmp_path
    )
    report = prune(config, progress=False).rows[0]
    assert report["recovered"] is not None
    _, pruned, task = direct(config)
    reloaded = load_job_model(tmp_path)
    assert sum(p.numel() for p in reloaded.parameters()) == report["parameters_after"]
    assert not torch.allclose(outputs(reloaded, task), outputs(pruned, task))  # the LoRA update was merged


# ------------------------------------------------------------------ validation


def test_every_mistake_is_reported_at_once_one_line_each(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(JobConfigError) as caught:
        make_config(model="tiny-bert", method="sparsegpt", ratio=1.0, calibration="wiki", seed=-1, examples=0,
                    out=tmp_path / "file")  # fmt: skip
    found = caught.value.lines
    assert [line.split(":")[0] for line in found] == [
        "--model", "--method", "--ratio", "--calibration", "--examples", "--seed", "--out",
    ]  # fmt: skip
    assert "tiny-llama, tiny-gpt2, minilm, mlp-digits" in found[0]
    assert "llm_pruner, modegpt, obs, gaprune" in found[1]
    assert "(0, 1)" in found[2] and "1.0" in found[2]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"ratio": 0}, "--ratio: must be a number in (0, 1)"),
        ({"ratio": "-0.2"}, "--ratio: must be a number in (0, 1)"),
        ({"ratio": "half"}, "--ratio: must be a number in (0, 1)"),
        ({"method": "modegpt", "model": "tiny-gpt2"}, "--model: modegpt needs a Llama-style model"),
        ({"method": "llm_pruner", "model": "mlp-digits"}, "--model: llm_pruner cannot prune 'mlp-digits'"),
        ({"method": "gaprune", "model": "tiny-llama"}, "--model: gaprune cannot prune 'tiny-llama'"),
        (
            {"method": "obs", "model": "mlp-digits", "calibration": "text"},
            "--calibration: 'text' does not fit",
        ),
        (
            {"method": "llm_pruner", "calibration": "digits"},
            "--calibration: llm_pruner prunes causal language",
        ),
        ({"method": "obs", "importance": "taylor", "model": "mlp-digits"}, "--importance: only llm_pruner"),
        ({"method": "obs", "lora_steps": 5, "model": "mlp-digits"}, "--lora-steps: LoRA recovery"),
        ({"model": "minilm", "method": "gaprune", "train_steps": 3}, "--train-steps: 'minilm' is pretrained"),
        ({"importance": "hessian"}, "--importance: unknown importance 'hessian'"),
    ],
)
def test_each_bad_input_gets_its_own_clear_line(
    options: dict[str, Any], expected: str, tmp_path: Path
) -> None:
    with pytest.raises(JobConfigError) as caught:
        make_config(out=tmp_path / "o", **options)
    assert len(caught.value.lines) == 1
    assert caught.value.lines[0].startswith(expected)
    assert not (tmp_path / "o").exists()


FACTORIES = """
from torch import nn
from gradinfo.models import tiny_llama, mlp

def biased_llama():
    model = tiny_llama(hidden_size=16, num_layers=3, num_heads=2, num_kv_heads=2, intermediate_size=32)
    q_proj = model.model.layers[0].self_attn.q_proj
    q_proj.bias = nn.Parameter(q_proj.weight[:, 0].detach().clone())
    return model

def two_layer_llama():
    return tiny_llama(hidden_size=16, num_layers=2, num_heads=2, num_kv_heads=2)

def digits_mlp():
    return mlp(64, 10, hidden=(8,))

def wrong_width():
    return mlp(40, 10, hidden=(8,))
"""


@pytest.mark.parametrize(
    ("factory", "options", "expected"),
    [
        ("biased_llama", {"method": "modegpt"}, "--model: modegpt cannot prune biased projections"),
        ("two_layer_llama", {"method": "llm_pruner"}, "--model: llm_pruner keeps the first and last layers"),
        ("digits_mlp", {"method": "llm_pruner"}, "--model: llm_pruner cannot prune Sequential"),
        ("digits_mlp", {"method": "modegpt"}, "--model: modegpt cannot prune Sequential"),
        ("wrong_width", {"method": "obs", "calibration": "digits"}, "--model: on 'digits' inputs (1, 8, 8)"),
        ("nothing", {"method": "obs", "calibration": "digits"}, "--model: model spec"),
    ],
)
def test_models_a_method_cannot_prune_are_refused_before_any_work(
    factory: str, options: dict[str, Any], expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "user_models_prune.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    no_pruning(monkeypatch, "pruning started")
    config = make_config(model=f"user_models_prune:{factory}", ratio=0.3, out=tmp_path / "o", **options)
    with pytest.raises(JobConfigError) as caught:
        prune(config, progress=False)
    assert len(caught.value.lines) == 1 and caught.value.lines[0].startswith(expected), caught.value.lines
    assert not (tmp_path / "o").exists()


def test_a_users_factory_model_is_pruned_and_rebuilt_from_its_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "user_models_prune.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = make_config(model="user_models_prune:digits_mlp", method="obs", ratio=0.5, calibration="digits",
                         examples=8, out=tmp_path / "o")  # fmt: skip
    prune(config, progress=False)
    rebuild = json.loads((tmp_path / "o" / "model" / "rebuild.json").read_text())
    assert rebuild["model"] == "user_models_prune:digits_mlp" and rebuild["kwargs"] is None
    _, expected, task = direct(config)
    torch.testing.assert_close(outputs(load_job_model(tmp_path / "o"), task), outputs(expected, task))


def test_progress_in_a_log_is_one_line_per_stage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config(
        model="mlp-digits", method="obs", ratio=0.5, train_steps=2, examples=16, out=tmp_path
    )
    prune(config, progress=True)  # stdout is not a terminal
    out = capsys.readouterr().out
    for line in ("prune 1/4: mlp-digits trained, 2 steps (", "prune 2/4: dense model measured (",
                 "prune 3/4: obs pruned, saved and reloaded ("):  # fmt: skip
        assert line in out


# ------------------------------------------------------------------ resume and output folders


def test_rerun_returns_the_finished_result_without_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(model="mlp-digits", method="obs", ratio=0.5, train_steps=2, examples=8, out=tmp_path)
    first = prune(config, progress=False)
    assert first.computed == ("dense", "pruned", "report") and first.reused == ()
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    no_pruning(monkeypatch, "pruned again")
    monkeypatch.setattr(run, "build_model", lambda *a: pytest.fail("model rebuilt"))
    again = prune(make_config(model="mlp-digits", method="obs", ratio=0.5, train_steps=2, examples=8,
                              out=tmp_path), progress=False)  # fmt: skip
    assert again.computed == () and again.rows == first.rows and again.report == first.report
    assert stamps == {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}


def test_an_interrupted_run_reuses_its_finished_stages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(model="mlp-digits", method="obs", ratio=0.5, train_steps=2, examples=8, out=tmp_path)
    first = prune(config, progress=False).rows[0]
    os.remove(tmp_path / "report.json")  # killed after the pruned stage
    no_pruning(monkeypatch, "pruned again")
    resumed = prune(config, progress=False)
    assert resumed.reused == ("dense", "pruned") and resumed.rows == [first]
    monkeypatch.undo()
    self_small = pytest.MonkeyPatch()
    small_builtins(self_small)
    os.remove(tmp_path / "report.json")
    os.remove(tmp_path / "pruned.json")  # killed while saving: model/ may be partial, pruned.json absent
    calls = []
    original = run.measure
    self_small.setattr(run, "measure", lambda *a: calls.append(1) or original(*a))
    redone = prune(config, progress=False)
    self_small.undo()
    assert redone.reused == ("dense",) and redone.computed == ("pruned", "report")
    assert len(calls) == 1  # the dense model was not measured again
    assert redone.rows[0]["dense"] == first["dense"]
    assert redone.rows[0]["nonzero_after"] == first["nonzero_after"]


def test_foreign_folder_and_other_config_are_refused_untouched(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    config = make_config(model="mlp-digits", method="obs", ratio=0.5, train_steps=0, examples=8, out=tmp_path)
    with pytest.raises(JobDirError, match="holds no prune run"):
        prune(config, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
    out = tmp_path / "run"
    prune(make_config(model="mlp-digits", method="obs", ratio=0.5, train_steps=0, examples=8, out=out),
          progress=False)  # fmt: skip
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    other = make_config(model="mlp-digits", method="obs", ratio=0.25, train_steps=0, examples=8, out=out)
    with pytest.raises(JobDirError, match=r"ratio: 0\.5 there, 0\.25 now"):
        prune(other, progress=False)
    assert before == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(JobDirError, match="corrupt"):
        prune(config.model_copy(update={"out": out}), progress=False)


def test_load_job_model_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds no model saved by gradinfo prune"):
        load_job_model(tmp_path)
