"""The audit's report: every defense named, its figures linked; the end-of-run summary line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gradinfo.core.job import JobResult
from gradinfo.privacy.audit import DEFENSES, AuditConfig, audit
from gradinfo.privacy.audit.report import summary


def test_report_names_every_defense_and_links_its_figures(
    tiny: Callable[..., AuditConfig], tmp_path: Path
) -> None:
    out = tmp_path / "audit"
    config = tiny(out, defenses=",".join(DEFENSES), attacks="inverting_gradients,sketched_inversion")
    result = audit(config, progress=False)
    report = result.report.read_text()
    for defense in DEFENSES:
        assert f'<td class="l">{defense}</td>' in report
        assert (out / "figures" / f"recon-{defense}.png").is_file()
    assert "figures/privacy-utility.png" in report and (out / "figures" / "privacy-utility.png").is_file()
    assert "LPIPS is not reported" in report and "90% of the coordinates are dropped" in report
    utility = {r["defense"]: r for r in result.rows if r["kind"] == "utility"}
    assert utility["dp-eps1"]["noise_multiplier"] > utility["dp-eps8"]["noise_multiplier"] > 0
    assert utility["dp-eps8"]["epsilon"] <= 8.0 and utility["dp-eps1"]["epsilon"] <= 1.0
    assert utility["none"]["epsilon"] is None
    sketched = [r["defense"] for r in result.rows if r.get("attack") == "sketched_inversion"]
    assert sorted(sketched) == ["sketch-d10", "sketch-dp"]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in utility.values())


def test_summary_counts_the_cells_computed_and_reused_and_names_the_report(tmp_path: Path) -> None:
    result = JobResult(tmp_path, tmp_path / "report.html", [], ("a", "b", "c"), ("d",), 12.4)
    report = tmp_path / "report.html"
    assert summary(result) == [
        f"audit finished in 12 s (3 cells computed, 1 reused from an earlier run); report: {report}"
    ]
