"""The gradinfo command line, through typer's CliRunner and once as ``python -m gradinfo``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gradinfo import __version__
from gradinfo.claims import ClaimResult
from gradinfo.cli import app
from gradinfo.core.registry import isolated_registry, plan, register
from gradinfo.methods import all_methods, markdown_table

runner = CliRunner()


def fake_method(x: float) -> float:
    """A stand-in method."""
    return x


def check_pass(seed: int = 0) -> ClaimResult:
    return ClaimResult("fake_pass", "gap >= 3 dB", True, {"gap_db": 4.25}, seed=seed)


def check_fail(seed: int = 0) -> ClaimResult:
    return ClaimResult("fake_fail", "gap >= 3 dB", False, {"gap_db": 0.5}, seed=seed)


@pytest.fixture
def fakes() -> Iterator[None]:
    all_methods()
    with isolated_registry(empty=True):
        for name in ("pass", "fail"):
            register(
                f"fake_{name}", family="optim", paper=25, summary="fake", claim=f"{__name__}:check_{name}"
            )(fake_method)
        yield


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"gradinfo {__version__}\n"


def test_methods_table_lists_every_method() -> None:
    result = runner.invoke(app, ["methods"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for m in all_methods():
        assert m.name in result.stdout


def test_methods_json_rows() -> None:
    result = runner.invoke(app, ["methods", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [m.as_row() for m in all_methods()]


def test_methods_markdown_is_the_readme_table() -> None:
    result = runner.invoke(app, ["methods", "--markdown"])
    assert result.exit_code == 0 and result.stdout == markdown_table(all_methods()) + "\n"


@pytest.fixture
def planned_fake() -> Iterator[None]:
    """A scratch registry holding the real methods plus one planned fake in the optim family."""
    all_methods()
    with isolated_registry():
        plan("fake_planned", family="optim", paper=25, summary="a planned method for the CLI tests")
        yield


def test_methods_filters(planned_fake: None) -> None:
    result = runner.invoke(app, ["methods", "--json", "--family", "optim", "--status", "planned"])
    rows = json.loads(result.stdout)
    expected = [m.name for m in all_methods() if m.family == "optim" and m.status == "planned"]
    assert [r["name"] for r in rows] == expected and "fake_planned" in expected


def test_methods_with_no_match_says_so() -> None:
    all_methods()
    with isolated_registry(empty=True):
        result = runner.invoke(app, ["methods", "--status", "verified"])
    assert result.exit_code == 0 and result.stdout == "no methods match these filters\n"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["methods", "--family", "optimizers"], "--family 'optimizers' is not one of"),
        (["methods", "--status", "done"], "--status 'done' is not one of"),
        (["methods", "--json", "--markdown"], "exclude each other"),
        (["reproduce", "dgl"], "no method named 'dgl'; did you mean dlg"),
        (["reproduce", "zzzzzz"], "gradinfo methods"),
        (["reproduce", "fake_planned"], "'fake_planned' is planned and has no claim check"),
        (["reproduce", "fake_planned", "--seeds", "-1"], "--seeds must be comma-separated ints >= 0"),
        (["reproduce", "fake_planned", "--seeds", "1,1"], "--seeds repeat"),
        (["reproduce"], "give a method name, or --all"),
        (["reproduce", "dlg", "--all"], "give a method name or --all, not both"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(args: list[str], fragment: str, planned_fake: None) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert fragment in _one_error_line(result.stderr)
    assert result.stdout == ""


def test_reproduce_passing_claim_exits_0_with_figures(fakes: None) -> None:
    result = runner.invoke(app, ["reproduce", "fake_pass", "--seeds", "3"])
    assert result.exit_code == 0, result.output
    for fragment in (
        "PASS",
        "gap >= 3 dB",
        "gap_db",
        "4.25",
        "seed 3",
        "1 of 1 recorded seeds pass (incomplete)",
    ):
        assert fragment in result.stdout


def test_reproduce_seeds_and_all_write_the_record(fakes: None, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr("gradinfo.cli.RECORD", tmp_path / "record.json")
    three = runner.invoke(app, ["reproduce", "fake_pass", "--seeds", "0,1,2"])
    assert three.exit_code == 0 and three.stdout.count("PASS") == 3
    assert "3 of 3 recorded seeds pass (verified)" in three.stdout
    assert not (tmp_path / "record.json").exists()  # a named run records only with --record
    recorded = runner.invoke(app, ["reproduce", "fake_fail", "--seeds", "0", "--record"])
    assert recorded.exit_code == 1 and "0 of 1 recorded seeds pass (failing)" in recorded.stdout
    every = runner.invoke(app, ["reproduce", "--all", "--seeds", "0,1"])
    assert every.exit_code == 1  # fake_fail fails its seeds
    assert "fake_pass: 2 of 2 recorded seeds pass (incomplete)" in every.stdout
    assert "fake_fail: 0 of 2 recorded seeds pass (failing)" in every.stdout
    again = runner.invoke(app, ["reproduce", "--all", "--seeds", "0,1"])
    assert "fake_pass: record up to date" in again.stdout and "PASS" not in again.stdout


def test_reproduce_failing_claim_exits_1(fakes: None) -> None:
    result = runner.invoke(app, ["reproduce", "fake_fail"])
    assert result.exit_code == 1
    assert "FAIL" in result.stdout and "0.5" in result.stdout


@pytest.mark.parametrize("args", [[], ["methods"], ["reproduce"]])
def test_help_on_every_command(args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0 and "Usage" in result.stdout


def test_python_dash_m() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gradinfo", "reproduce", "dgl"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "did you mean dlg" in _one_error_line(done.stderr)
