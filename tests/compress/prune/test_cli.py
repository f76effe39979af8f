"""``gradinfo prune`` on the command line: a line per mistake (exit 2), a run, its resume, a foreign --out;
the generated options' help and the end-of-run summary."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from gradinfo import tasks
from gradinfo.cli import app
from gradinfo.compress.llm_pruner import IMPORTANCES
from gradinfo.compress.prune import CALIBRATIONS, METHODS, PruneConfig, metrics
from gradinfo.compress.prune.config import TRAIN_STEPS
from gradinfo.compress.prune.report import summary
from gradinfo.core.job import JobResult
from gradinfo.core.jobconfig import option_name


@pytest.fixture(autouse=True)
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = {"in_features": 64, "num_classes": 10, "hidden": [16]}
    small_mlp = dataclasses.replace(tasks.TASKS["mlp-digits"], kwargs=tiny)
    monkeypatch.setitem(tasks.TASKS, "mlp-digits", small_mlp)
    monkeypatch.setattr(metrics, "TIMED_PASSES", 2)


def test_bad_input_exits_2_with_one_line_per_mistake(tmp_path: Path) -> None:
    args = [
        "prune",
        "--model",
        "tiny-gpt2",
        "--method",
        "modegpt",
        "--ratio",
        "1.2",
        "--out",
        str(tmp_path / "o"),
    ]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "--ratio: must be a number in (0, 1)" in result.output
    fixed = CliRunner().invoke(app, [*args[:-3], "0.3", "--out", str(tmp_path / "o")], env={"COLUMNS": "300"})
    assert fixed.exit_code == 2 and "--model: modegpt needs a Llama-style model" in fixed.output
    unknown = CliRunner().invoke(
        app,
        ["prune", "--model", "bert", "--method", "magnitude", "--calibration", "wiki"],
        env={"COLUMNS": "300"},
    )
    assert unknown.exit_code == 2
    lines = unknown.output.removeprefix("error:").strip().splitlines()
    assert [line.split(":")[0].strip() for line in lines] == [
        "--model", "--method", "--calibration",
    ]  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_runs_resumes_and_refuses_a_foreign_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["prune", "--model", "mlp-digits", "--method", "obs", "--ratio", "0.5", "--train-steps", "3",
            "--examples", "8", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["ratio"] == 0.5 and report["nonzero_after"] < report["nonzero_before"]
    assert "prune finished" in result.output and "0 stages reused" in result.output
    again = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert again.exit_code == 0 and "3 stages reused" in again.output
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    foreign = CliRunner().invoke(app, [*args[:-1], str(tmp_path / "other")], env={"COLUMNS": "300"})
    assert foreign.exit_code == 2 and "holds no prune run" in foreign.output
    assert [p.name for p in (tmp_path / "other").iterdir()] == ["notes.txt"]


def test_help_lists_every_option_with_its_default_and_the_tables_names() -> None:
    result = CliRunner().invoke(app, ["prune", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "Prune a model with one method; save it (safetensors, reloadable) and report what it cost." in text
    for name in PruneConfig.model_fields:
        assert option_name(name) in text, name
    for fragment in (
        "(default: tiny-llama)",
        f"{', '.join(METHODS)}. (default: llm_pruner)",
        "Share removed, in (0, 1). (default: 0.3)",
        ", ".join(CALIBRATIONS),
        f"llm_pruner only: {', '.join(IMPORTANCES)} (default: taylor).",
        "LoRA recovery steps after llm_pruner or modegpt (0: none). (default: 0)",
        f"(default: {TRAIN_STEPS}; 0: random init)",
        "llm_pruner 10, modegpt 32, obs 64, gaprune 32",
        "(default: 0)",
        "(default: gradinfo-prune)",
    ):
        assert fragment in text, fragment


def test_summary_shows_the_dense_and_pruned_rows_and_where_things_are(tmp_path: Path) -> None:
    row = {
        "metric": "accuracy", "latency_unit": "example", "parameters_before": 1234, "nonzero_before": 1234,
        "accuracy_before": 0.91, "latency_ms_before": 0.5, "parameters_after": 1234, "nonzero_after": 600,
        "pruned": {"accuracy": 0.85}, "recovered": None, "latency_ms_after": 0.4,
    }  # fmt: skip
    result = JobResult(tmp_path, tmp_path / "report.md", [row], ("report",), ("dense", "pruned"), 3.2)
    console = Console(width=200, record=True)
    for item in summary(result):
        console.print(item)
    text = " ".join(console.export_text().split())
    assert "dense" in text and "1,234" in text and "0.91" in text and "600" in text and "0.85" in text
    assert "ms per example" in text and "+ LoRA" not in text
    assert f"prune finished in 3 s (2 stages reused from an earlier run); model: {tmp_path / 'model'}" in text
    assert f"report: {tmp_path / 'report.md'}" in text
