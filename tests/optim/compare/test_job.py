"""The compare-optimizers job on the command line: its generated options, its summary, bad input, a resumed
run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from typer.testing import CliRunner

from gradinfo.cli import app, build_app
from gradinfo.core.job import JobResult
from gradinfo.core.jobconfig import option_name
from gradinfo.jobs import JOBS
from gradinfo.optim.compare import (
    DEFAULT_BATCH,
    DEFAULT_LR,
    JOB,
    OPTIMIZERS,
    TASK_NAMES,
    CompareConfig,
    compare,
)
from gradinfo.optim.compare.report import summary


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_job_is_listed_with_its_config_run_and_help() -> None:
    assert JOB in JOBS and JOB.name == "compare-optimizers"
    assert (JOB.config, JOB.run, JOB.summary) == (CompareConfig, compare, summary)
    assert JOB.help.startswith("Train one seeded model with each optimizer")


def test_help_lists_every_field_with_its_default_and_the_tables_names() -> None:
    result = CliRunner().invoke(build_app(JOBS), ["compare-optimizers", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())  # the help's lines joined, box borders dropped
    for name in CompareConfig.model_fields:
        assert f"{option_name(name)} TEXT" in text, name
    for fragment in (
        f"The task: {', '.join(TASK_NAMES)}. (default: tiny-lm)",
        f"Comma-separated: {','.join(OPTIMIZERS)}. (default: {','.join(OPTIMIZERS)})",
        "Optimizer steps per optimizer. (default: 200)",
        "Seed of model, data and batches. (default: 0)",
        "Output folder (resumed if it holds this comparison). (default: gradinfo-compare)",
        f"(default per task: {'; '.join(f'{t} {b}' for t, b in DEFAULT_BATCH.items())})",
    ):
        assert fragment in text, fragment
    rates = ",".join(f"{n}={lr:g}" for n, lr in DEFAULT_LR["cnn-photos"].items())
    assert f"cnn-photos {rates}" in text


def test_summary_is_a_table_of_the_optimizers_and_one_line(tmp_path: Path) -> None:
    row = {"test_loss": 0.51234, "test_accuracy": 0.875, "state_and_projector_bytes": 2.5e6, "step_ms": 1.234}
    diverged = {**row, "optimizer": "mfac", "test_loss": None, "test_accuracy": None}
    rows = [{"optimizer": "adamw", **row}, diverged]
    result = JobResult(tmp_path, tmp_path / "report.html", rows, ("mfac",), ("adamw",), 12.4)
    console = Console(record=True, width=200)
    for item in summary(result):
        console.print(item)
    text = console.export_text()
    cells = [[c.strip() for c in line.strip("│").split("│")] for line in text.splitlines() if line[0] == "│"]
    assert cells == [
        ["adamw", "0.5123", "0.875", "2.500", "1.23"],
        ["mfac", "diverged", "-", "2.500", "1.23"],
    ]
    assert (
        f"comparison finished in 12 s (1 optimizers trained, 1 reused from an earlier run); report: "
        f"{tmp_path / 'report.html'}" in text
    )


def test_cli_bad_input_exits_2_one_line_per_mistake(tmp_path: Path) -> None:
    args = ["compare-optimizers", "--task", "mnist", "--optimizers", "adamw,lion", "--steps", "0"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    found = result.stderr.strip().splitlines()
    assert len(found) == 3 and found[0].startswith("error: --task: unknown task 'mnist'"), result.stderr
    assert found[1].startswith("--optimizers:") and found[2].startswith("--steps:")
    assert "Traceback" not in result.stderr and not (tmp_path / "o").exists()


def test_cli_runs_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "o"
    args = ["compare-optimizers", "--task", "mlp-digits", "--optimizers", "adamw,diffgrad", "--steps", "2"]
    args += ["--batch-size", "8", "--lr", "diffgrad=0.01", "--out", str(out)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "2 optimizers trained, 0 reused" in result.stdout and (out / "report.html").is_file()
    assert [r["lr"] for r in lines(out / "results.jsonl")] == [DEFAULT_LR["mlp-digits"]["adamw"], 0.01]
    again = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert again.exit_code == 0 and "0 optimizers trained, 2 reused" in again.stdout
