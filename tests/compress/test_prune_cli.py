"""``gradinfo prune`` on the command line: a line per mistake (exit 2), a run, its resume, a foreign --out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gradinfo.compress.job as job
from gradinfo.cli import app


@pytest.fixture(autouse=True)
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = {"in_features": 64, "num_classes": 10, "hidden": [16]}
    monkeypatch.setitem(job.BUILTINS, "mlp-digits", {**job.BUILTINS["mlp-digits"], "kwargs": tiny})
    monkeypatch.setattr(job, "TIMED_PASSES", 2)


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
