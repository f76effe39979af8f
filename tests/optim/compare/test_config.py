"""The compare-optimizers config: every mistake at once, one line each; learning rates and batch sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gradinfo.core.jobconfig import JobConfigError
from gradinfo.optim.compare import DEFAULT_BATCH, DEFAULT_LR, OPTIMIZERS, make_config

# ------------------------------------------------------------------ validation


def test_every_mistake_is_reported_at_once_one_line_each(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(JobConfigError) as caught:
        make_config(
            task="mnist", optimizers="adamw,lion", steps=0, lr="-1", batch_size="two", seed=-3,
            out=tmp_path / "file",
        )  # fmt: skip
    found = caught.value.lines
    assert [line.split(":")[0] for line in found] == [
        "--task", "--optimizers", "--steps", "--lr", "--batch-size", "--seed", "--out",
    ]  # fmt: skip
    assert "valid: tiny-lm, mlp-digits, cnn-photos" in found[0]
    assert "'lion'" in found[1] and ", ".join(OPTIMIZERS) in found[1]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"optimizers": "adamw,adamw"}, "--optimizers: optimizers repeat"),
        ({"optimizers": " , "}, "--optimizers: give at least one optimizer"),
        ({"lr": "adamw=0.1,sgd=1"}, "--lr: unknown optimizer 'sgd'"),
        ({"lr": "adamw=abc"}, "--lr: learning rates must be positive numbers, got adamw='abc'"),
        ({"lr": "nan"}, "--lr: must be a positive number"),
        ({"optimizers": "adamw", "lr": "mfac=0.1"}, "--lr: 'mfac' not among --optimizers (adamw)"),
        ({"steps": 2.5}, "--steps: must be an int >= 1"),
        ({"colour": "red"}, "unknown compare-optimizers option(s) colour"),
    ],
)
def test_each_bad_input_gets_its_own_clear_line(
    options: dict[str, Any], fragment: str, tmp_path: Path
) -> None:
    with pytest.raises(JobConfigError) as caught:
        make_config(out=tmp_path / "o", **options)
    assert len(caught.value.lines) == 1 and fragment in caught.value.lines[0], caught.value.lines


def test_learning_rates_defaults_one_for_all_and_overrides(tmp_path: Path) -> None:
    assert make_config(task="cnn-photos", out=tmp_path).learning_rates() == DEFAULT_LR["cnn-photos"]
    assert set(make_config(lr="0.05", out=tmp_path).learning_rates().values()) == {0.05}
    rates = make_config(task="tiny-lm", lr="sinkgd=0.03, mfac=2e-4", out=tmp_path).learning_rates()
    assert rates == {**DEFAULT_LR["tiny-lm"], "sinkgd": 0.03, "mfac": 2e-4}
    config = make_config(task="tiny-lm", optimizers="adamw", out=tmp_path)
    assert config.fingerprint()["lr"] == {"adamw": DEFAULT_LR["tiny-lm"]["adamw"]}
    assert config.batch() == DEFAULT_BATCH["tiny-lm"]
