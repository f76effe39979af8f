"""``gradinfo audit``: generated from its config (fields are options, ``--full`` a flag); one-line errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from gradinfo.cli import app, build_app
from gradinfo.core.jobcli import field_help
from gradinfo.core.jobconfig import option_name
from gradinfo.jobs import JOBS
from gradinfo.privacy.audit import JOB, AuditConfig

runner = CliRunner()


def test_the_audit_is_the_first_job_and_its_help_lists_every_field_and_the_full_preset() -> None:
    assert JOBS[0] is JOB and JOB.name == "audit" and JOB.config is AuditConfig
    result = runner.invoke(build_app(JOBS), ["audit", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "Audit how much a model's shared gradients leak under each defense" in text
    for name, field in AuditConfig.model_fields.items():
        assert f"{option_name(name)} TEXT {field_help(field)}" in text, name
    for fragment in (
        "--batch-sizes TEXT Comma-separated victim batch sizes. (default: 1,4)",
        "--out TEXT Output folder (resumed if it holds this audit). (default: gradinfo-audit)",
        "--full The bigger grid: --batch-sizes 1,2,4,8, --iterations 400, --rounds 30, --local-steps 6, "
        "--restarts 2 (options given explicitly override these).",
    ):
        assert fragment in text, fragment


def test_cli_bad_batch_size_exits_2_with_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["audit", "--batch-sizes", "0", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    found = result.stderr.strip().splitlines()
    assert len(found) == 1 and found[0].startswith("error: --batch-sizes:"), result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "o").exists()


def test_cli_full_takes_explicit_options_over_its_own(tmp_path: Path) -> None:
    result = runner.invoke(app, ["audit", "--full", "--iterations", "0", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == ["error: --iterations: must be a positive int, got '0'"]
    assert not (tmp_path / "o").exists()


def test_cli_runs_a_tiny_audit(tiny_data: str, lines: Callable[[Path], list[Any]], tmp_path: Path) -> None:
    out = tmp_path / "o"
    args = ["audit", "--data", tiny_data, "--defenses", "none", "--attacks", "label_recovery"]
    args += [
        "--batch-sizes",
        "1,2",
        "--iterations",
        "1",
        "--rounds",
        "1",
        "--local-steps",
        "1",
        "--clients",
        "2",
    ]
    args += ["--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "audit finished in" in result.stdout
    assert "(3 cells computed, 0 reused from an earlier run); report: " in " ".join(result.stdout.split())
    assert len(lines(out / "results.jsonl")) == 3 and (out / "report.html").is_file()
