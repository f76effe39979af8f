"""A toy job added to the app gets its command, options, defaults, presets and help from its config alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import Field
from typer.testing import CliRunner

from gradinfo.cli import build_app
from gradinfo.core.job import Job, JobResult
from gradinfo.core.jobconfig import JobConfig, OutDir, Preset, choice_field, int_field, names_field
from gradinfo.jobs import JOBS

COLOURS = {"red": "the colour red", "blue": "the colour blue", "green": "the colour green"}


class ToyConfig(JobConfig):
    job = "toy-job"
    presets: ClassVar[dict[str, Preset]] = {
        "big": Preset("The big toy", {"steps": 50, "colours": ("red", "green")})
    }

    steps: int = Field(3, description="Steps to take.")
    colours: tuple[str, ...] = Field(("red",), description=f"Comma-separated: {', '.join(COLOURS)}.")
    shape: str | None = Field(None, description="round or square (default: the toy's own).")
    loud: bool = Field(False, description="Shout the summary.")
    out: OutDir = Field(Path("toy-out"), description="Output folder.")

    _check_steps = int_field("steps", minimum=1)
    _check_colours = names_field("colours", COLOURS, kind="colour")
    _check_shape = choice_field("shape", ("round", "square"), kind="shape")

    def cross_checks(self) -> list[str]:
        return (
            ["--shape: a square toy takes at most 10 steps"]
            if self.shape == "square" and self.steps > 10
            else []
        )


def run_toy(config: ToyConfig, *, progress: bool = True) -> JobResult:
    config.out.mkdir(parents=True, exist_ok=True)
    report = config.out / "report.json"
    report.write_text(json.dumps(config.fingerprint()))
    return JobResult(config.out, report, [config.fingerprint()], ("all",), (), 0.0)


def summary(result: JobResult) -> list[Any]:
    row = result.rows[0]
    text = f"toy: {row['steps']} steps, {','.join(row['colours'])}, shape {row['shape']}"
    return [text.upper() if row["loud"] else text]


TOY = Job(ToyConfig, run_toy, summary, "Run the toy job.\n\nWrites report.json into --out.")
runner = CliRunner()


def _invoke(*args: str) -> Any:
    return runner.invoke(build_app([*JOBS, TOY]), list(args), env={"COLUMNS": "200"})


def test_the_toy_command_lists_every_field_its_default_and_preset() -> None:
    result = _invoke("toy-job", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for fragment in (
        "Run the toy job.",
        "--steps TEXT Steps to take. (default: 3)",
        "--colours TEXT Comma-separated: red, blue, green. (default: red)",
        "--shape TEXT round or square (default: the toy's own).",
        "--loud --no-loud Shout the summary.",
        "--out TEXT Output folder. (default: toy-out)",
        "--big The big toy: --steps 50, --colours red,green (options given explicitly override these).",
    ):
        assert fragment in text, fragment
    listing = " ".join(_invoke("--help").output.split())
    assert "toy-job Run the toy job." in listing


def test_the_toy_command_runs_with_typed_options_and_presets(tmp_path: Path) -> None:
    result = _invoke("toy-job", "--steps", "7", "--colours", "blue, green", "--loud", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert result.output == "TOY: 7 STEPS, BLUE,GREEN, SHAPE NONE\n"
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved == {"steps": 7, "colours": ["blue", "green"], "shape": None, "loud": True}
    preset = _invoke("toy-job", "--big", "--steps", "9", "--out", str(tmp_path / "b"))
    assert preset.output == "toy: 9 steps, red,green, shape None\n"


@pytest.mark.parametrize(
    ("args", "lines"),
    [
        (
            ["--steps", "0", "--colours", "red,pink,red", "--shape", "oval"],
            [
                "error: --steps: must be an int >= 1, got '0'",
                "--colours: unknown colour 'pink'; valid: red, blue, green",
                "--shape: unknown shape 'oval'; valid: round, square",
            ],
        ),
        (["--shape", "square", "--steps", "11"], ["error: --shape: a square toy takes at most 10 steps"]),
        (["--big", "--colours", "red,red"], ["error: --colours: colours repeat: red, red"]),
    ],
)
def test_bad_options_exit_2_with_one_line_each(args: list[str], lines: list[str], tmp_path: Path) -> None:
    result = _invoke("toy-job", *args, "--out", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == lines
    assert not (tmp_path / "report.json").exists()


def test_python_callers_get_the_same_schema_and_presets(tmp_path: Path) -> None:
    config = ToyConfig.make(preset="big", colours=["blue"], out=tmp_path)
    assert (config.steps, config.colours, config.out) == (50, ("blue",), tmp_path)
    assert TOY.name == "toy-job"
