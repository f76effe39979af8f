"""One audit cell: the utility run through Flower's engine equals the in-process one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from gradinfo.privacy.audit import AuditConfig, audit


@pytest.mark.slow  # Ray start-up: about a minute on 2 shared cores
def test_flower_engine_gives_the_in_process_utility(tiny: Callable[..., AuditConfig], tmp_path: Path) -> None:
    options = {"attacks": "label_recovery", "defenses": "none,topk-90", "rounds": 2, "local_steps": 2}
    flower = audit(tiny(tmp_path / "flower", engine="flower", **options), progress=False)
    local = audit(tiny(tmp_path / "local", **options), progress=False)
    got = {r["defense"]: r for r in flower.rows if r["kind"] == "utility"}
    want = {r["defense"]: r for r in local.rows if r["kind"] == "utility"}
    for defense in ("none", "topk-90"):
        assert got[defense]["engine"] == "flower simulation" and want[defense]["engine"] == "in-process"
        np.testing.assert_allclose(got[defense]["accuracy_curve"], want[defense]["accuracy_curve"], atol=0.05)
    assert "flower simulation" in flower.report.read_text()
