"""Running an audit into its folder: resume, truncated and corrupt results, foreign and stale folders."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import gradinfo.privacy.audit.run as audit_run
from gradinfo.core.jobdir import JobDirError
from gradinfo.privacy.audit import AuditConfig, audit, make_config
from gradinfo.privacy.audit.grid import cells

Tiny = Callable[..., AuditConfig]
Lines = Callable[[Path], list[dict[str, Any]]]


def test_resume_after_interruption_redoes_no_finished_cell(
    tiny: Tiny, lines: Lines, tmp_path: Path, monkeypatch: Any
) -> None:
    out = tmp_path / "audit"
    config = tiny(out)
    keys = [c.key for c in cells(config)]
    assert len(keys) == 3
    real, calls = audit_run.run_cell, []

    def interrupted(setup: Any, cell: Any, folder: Path) -> dict[str, Any]:
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(cell.key)
        return real(setup, cell, folder)

    monkeypatch.setattr(audit_run, "run_cell", interrupted)
    with pytest.raises(KeyboardInterrupt):
        audit(config, progress=False)
    first = lines(out / "results.jsonl")
    assert [r["cell"] for r in first] == keys[:2]

    calls.clear()
    monkeypatch.setattr(audit_run, "run_cell", lambda s, c, f: calls.append(c.key) or real(s, c, f))
    result = audit(config, progress=False)
    assert calls == keys[2:]  # only the unfinished cell ran
    assert (result.computed, result.reused) == (tuple(keys[2:]), tuple(keys[:2]))
    assert [r["cell"] for r in lines(out / "results.jsonl")] == keys
    assert result.rows[:2] == first  # finished rows kept as they were
    assert result.out == out and result.report == out / "report.html" and result.report.is_file()

    calls.clear()
    again = audit(config, progress=False)
    assert calls == [] and again.computed == () and again.reused == tuple(keys)


def test_truncated_last_line_is_dropped_and_its_cell_redone(tiny: Tiny, lines: Lines, tmp_path: Path) -> None:
    out = tmp_path / "audit"
    config = tiny(out)
    audit(config, progress=False)
    path = out / "results.jsonl"
    text = path.read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    path.write_text(text[: len(text) - len(last) - 1 + len(last) // 2])  # kill mid-write of the last line
    result = audit(config, progress=False)
    keys = [c.key for c in cells(config)]
    assert (result.computed, result.reused) == (tuple(keys[2:]), tuple(keys[:2]))
    assert [r["cell"] for r in lines(path)] == keys


def test_corrupt_middle_line_is_an_error_and_nothing_is_overwritten(tiny: Tiny, tmp_path: Path) -> None:
    out = tmp_path / "audit"
    config = tiny(out)
    audit(config, progress=False)
    path = out / "results.jsonl"
    rows = path.read_text().splitlines()
    damaged = "\n".join([rows[0], "{not json", *rows[2:]]) + "\n"
    path.write_text(damaged)
    with pytest.raises(JobDirError, match="line 2 is corrupt"):
        audit(config, progress=False)
    assert path.read_text() == damaged


def test_progress_in_a_log_is_one_line_per_finished_cell(
    tiny: Tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny(tmp_path / "audit")
    keys = [c.key for c in cells(config)]
    audit(config, progress=True)  # stdout is pytest's capture, not a terminal
    out = capsys.readouterr().out
    for i, key in enumerate(keys, start=1):
        assert f"audit {i}/{len(keys)}: {key} (" in out


def test_foreign_folder_is_refused_untouched(tiny: Tiny, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(JobDirError, match="not empty and holds no audit"):
        audit(tiny(out), progress=False)
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]
    assert (out / "thesis.tex").read_text() == "precious"


def test_other_config_into_same_folder_names_the_difference(tiny: Tiny, tmp_path: Path) -> None:
    out = tmp_path / "audit"
    audit(tiny(out), progress=False)
    before = (out / "results.jsonl").read_text()
    with pytest.raises(JobDirError, match="iterations: 2 there, 3 now"):
        audit(tiny(out, iterations=3), progress=False)
    assert (out / "results.jsonl").read_text() == before


def test_folder_of_an_earlier_audit_revision_is_refused(tiny: Tiny, tmp_path: Path) -> None:
    out = tmp_path / "audit"
    config = tiny(out)
    audit(config, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["revision"] == audit_run.REVISION >= 2
    del manifest["revision"]  # as written before revisions existed, with Poisson-free DP cells
    (out / "manifest.json").write_text(json.dumps(manifest))
    before = (out / "results.jsonl").read_text()
    with pytest.raises(
        JobDirError,
        match=f"made by revision 1 of this job, and this gradinfo runs revision {audit_run.REVISION}",
    ):
        audit(config, progress=False)
    assert (out / "results.jsonl").read_text() == before


def test_a_config_that_is_not_an_audit_config_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="config must be an AuditConfig \\(see make_config\\), got dict"):
        audit({"defenses": "none"})  # type: ignore[arg-type]


@pytest.mark.slow
def test_default_audit_finishes_and_dp_lowers_leakage(tmp_path: Path) -> None:
    result = audit(make_config(out=tmp_path / "audit"), progress=False)
    rows = [
        r for r in result.rows if r["kind"] == "attack" and r["psnr"] is not None and r["batch_size"] == 1
    ]
    undefended = max(r["psnr"] for r in rows if r["defense"] == "none")
    dp = max(r["psnr"] for r in rows if r["defense"] == "dp-eps1")
    assert undefended > dp
    assert len(result.rows) == len(cells(make_config()))
