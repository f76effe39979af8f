"""The README stays true: its method table is generated from the registry and its example runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gradinfo.methods import README_END, README_START, all_methods, markdown_table, with_method_table

ROOT = Path(__file__).resolve().parent.parent


def test_readme_method_table_is_current() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    if with_method_table(text, all_methods()) != text:
        pytest.fail(
            "README.md's method table differs from the registry; run `python scripts/update_readme.py`"
        )


def test_markdown_table_has_one_row_per_method_sorted_by_paper() -> None:
    methods = all_methods()
    lines = markdown_table(reversed(methods)).splitlines()
    assert lines[0] == "| # | method | family | paper | status |"
    rows = [line.split(" | ") for line in lines[2:]]
    assert len(rows) == len(methods)
    assert [int(r[0].lstrip("| ")) for r in rows] == sorted(m.paper for m in methods)
    m = methods[0]
    assert lines[2] == f"| {m.paper} | `{m.name}` | {m.family} | {m.title} ({m.year}) | {m.status} |"


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
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{README_START}\n{README_END}\n", encoding="utf-8")
    script = ROOT / "scripts" / "update_readme.py"
    done = subprocess.run([sys.executable, script, readme], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
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
