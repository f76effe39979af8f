"""The jobs' progress display: a line per finished unit in a log, nothing extra on a terminal."""

from __future__ import annotations

import io

from rich.console import Console

from gradinfo.core.progress import job_progress, log_done


def _run(enabled: bool, terminal: bool) -> str:
    stream = io.StringIO()
    bar = job_progress(enabled, Console(file=stream, force_terminal=terminal, width=100))
    with bar:
        task = bar.add_task("job", total=2)
        for name in ("a", "b"):
            bar.advance(task)
            log_done(bar, f"job: {name} [done]")
    return stream.getvalue()


def test_a_log_gets_one_plain_line_per_finished_unit() -> None:
    lines = _run(enabled=True, terminal=False).splitlines()
    assert lines[:2] == ["job: a [done]", "job: b [done]"]  # markup is printed as written


def test_a_terminal_gets_the_bar_and_no_extra_lines() -> None:
    out = _run(enabled=True, terminal=True)
    assert "job: a" not in out and "2/2" in out


def test_a_disabled_display_prints_nothing() -> None:
    assert _run(enabled=False, terminal=False) == ""
