"""Every job of the command line: listed once, and refusing a folder another run holds before any work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gradinfo.core.jobdir import JobDirError, job_lock
from gradinfo.jobs import JOBS

SMALL: dict[str, dict[str, Any]] = {
    "audit": {"defenses": "none", "attacks": "label_recovery", "batch_sizes": "1", "rounds": 1, "clients": 2},
    "compare-optimizers": {"task": "mlp-digits", "optimizers": "adamw", "steps": 1},
    "prune": {"model": "mlp-digits", "method": "obs", "train_steps": 0, "examples": 8},
}


def test_every_job_is_listed_once_with_small_options_here() -> None:
    names = [job.name for job in JOBS]
    assert names == ["audit", "compare-optimizers", "prune"] and sorted(SMALL) == sorted(names)


@pytest.mark.parametrize("job", JOBS, ids=[job.name for job in JOBS])
def test_a_second_run_on_a_held_folder_is_refused_and_writes_nothing(job: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = job.config.make(out=out, **SMALL[job.name])
    with job_lock(out):
        with pytest.raises(JobDirError, match="is in use by another run"):
            job.run(config, progress=False)
        assert list(out.iterdir()) == []
    result = job.run(config, progress=False)  # free once the other run ends
    assert result.out == out and result.computed
