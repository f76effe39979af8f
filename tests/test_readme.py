"""The README stays true: its method table is generated from the registry and its example runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gradinfo.core.record import Record, SeedRun
from gradinfo.core.registry import isolated_registry, register
from gradinfo.methods import (
    README_END,
    README_START,
    all_methods,
    claims_markdown,
    markdown_table,
    status_cell,
    with_method_table,
)

ROOT = Path(__file__).resolve().parent.parent


def test_readme_method_table_is_current() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    if with_method_table(text, all_methods()) != text:
        pytest.fail(
            "README.md's method table differs from the registry; run `python scripts/update_readme.py`"
        )


def test_claims_page_is_current() -> None:
    if claims_markdown(all_methods()) != (ROOT / "docs" / "claims.md").read_text(encoding="utf-8"):
        pytest.fail("docs/claims.md differs from the claim record; run `python scripts/update_readme.py`")


def fake_method(x: float) -> float:
    """A stand-in method."""
    return x


def test_statuses_and_the_claims_page_come_from_the_record(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = {
        0: SeedRun(True, {"gap": 4.5}, 1.0),
        1: SeedRun(True, {"gap": 3.25}, 1.0),
        2: SeedRun(True, {}, 1.0),
    }
    records = {
        "fake_ok": Record("fake_ok", "gap >= 3 dB", "+5 dB (Table 2)", "d1", runs),
        "fake_short": Record("fake_short", "gap >= 3 dB", "+5 dB", "d2", {0: runs[0]}),
    }
    monkeypatch.setattr("gradinfo.core.registry.cached_records", lambda: records)
    all_methods()
    with isolated_registry(empty=True):
        for name in ("fake_ok", "fake_short", "fake_none"):
            register(name, family="optim", paper=25, summary="s", claim="x:check")(fake_method)
        register("fake_part", family="optim", paper=25, summary="s", missing="the ImageNet run")(fake_method)
        methods = {m.name: m for m in all_methods()}
        page = claims_markdown(methods.values())
    assert [methods[n].status for n in ("fake_ok", "fake_short", "fake_none", "fake_part")] == [
        "verified", "implemented", "implemented", "component"
    ]  # fmt: skip
    assert status_cell(methods["fake_ok"]) == "verified (3 of 3 recorded seeds pass)"
    assert status_cell(methods["fake_short"]) == "implemented (1 of 1 recorded seeds pass)"
    assert status_cell(methods["fake_part"]) == "component: the ImageNet run"
    assert "| 25 | `fake_ok` | verified | 3 of 3 (0, 1, 2) | gap >= 3 dB | +5 dB (Table 2) |" in page
    assert "| 25 | `fake_none` | implemented | none recorded |  |  |" in page
    assert "| 1 | yes | 3.25 |" in page and "| 2 | yes |  |" in page  # a seed without the figure
    assert "fake_part" not in page  # no claim check


def test_markdown_table_has_one_row_per_method_sorted_by_paper() -> None:
    methods = all_methods()
    lines = markdown_table(reversed(methods)).splitlines()
    assert lines[0] == "| # | method | family | paper | status |"
    rows = [line.split(" | ") for line in lines[2:]]
    assert len(rows) == len(methods)
    assert [int(r[0].lstrip("| ")) for r in rows] == sorted(m.paper for m in methods)
    m = methods[0]
    assert lines[2] == f"| {m.paper} | `{m.name}` | {m.family} | {m.title} ({m.year}) | {status_cell(m)} |"


def test_with_method_table_replaces_only_the_block() -> None:
    stale = f"intro\n{README_START}\n| old |\n{README_END}\nouter\n"
    new = with_method_table(stale, all_methods())
    assert new.startswith(f"intro\n{README_START}\n| # |") and new.endswith(f"|\n{README_END}\nouter\n")
    assert with_method_table(new, all_methods()) == new


@pytest.mark.parametrize(
    "text", ["no markers", f"{README_START}\n{README_START}\n{README_END}", f"{README_END}\n{README_START}"]
)
def test_with_method_table_needs_both_markers_in_order(text: str) -> None:
    with pytest.raises(ValueError, match="methods:"):
        with_method_table(text, all_methods())


def test_update_script_rewrites_a_stale_file(tmp_path: Path) -> None:
    readme, claims = tmp_path / "README.md", tmp_path / "claims.md"
    readme.write_text(f"# x\n{README_START}\n{README_END}\n", encoding="utf-8")
    script = ROOT / "scripts" / "update_readme.py"
    done = subprocess.run(
        [sys.executable, script, readme, claims], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert claims.read_text(encoding="utf-8") == claims_markdown(all_methods())
    assert readme.read_text(encoding="utf-8") == with_method_table(
        readme.read_text(encoding="utf-8"), all_methods()
    )
    assert "`yolov9_pgi`" in readme.read_text(encoding="utf-8")


def test_readme_python_example_runs_and_gives_what_its_comments_say() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    grads, norms, x = scope["grads"], scope["norms"], scope["x"]
    assert all(g.shape[0] == x.shape[0] for g in grads.values())
    flat = torch.cat([g.flatten(1) for g in grads.values()], dim=1)  # [B, P]
    torch.testing.assert_close(norms, flat.norm(dim=1), rtol=1e-4, atol=1e-6)
    assert isinstance(scope["opt"], torch.optim.Optimizer)
