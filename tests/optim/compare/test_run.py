"""The compare-optimizers run: files written, bytes, resume (between and within optimizers), damaged or
foreign output folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import gradinfo.optim.compare.run as job
from gradinfo.core.jobdir import JobDirError
from gradinfo.optim.compare import OPTIMIZERS, CompareConfig, compare, make_config
from gradinfo.optim.compare.optimizers import NGRADS
from gradinfo.tasks import TASKS


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def tiny(out: Path, **options: Any) -> CompareConfig:
    given = {
        "task": "mlp-digits",
        "optimizers": "adamw,sinkgd,mfac",
        "steps": 4,
        "batch_size": 16,
        "out": out,
    }
    return make_config(**{**given, **options})


# ------------------------------------------------------------------ running


def test_progress_in_a_log_is_one_line_per_trained_optimizer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    compare(tiny(tmp_path, optimizers="adamw,sinkgd"), progress=True)  # stdout is not a terminal
    out = capsys.readouterr().out
    assert "compare 1/2: adamw trained (" in out and "compare 2/2: sinkgd trained (" in out


def test_runs_writes_files_and_measures_real_state_bytes(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    result = compare(tiny(out), progress=False)
    rows = lines(out / "results.jsonl")
    assert [r["optimizer"] for r in rows] == ["adamw", "sinkgd", "mfac"] and rows == result.rows
    assert (result.computed, result.reused) == (("adamw", "sinkgd", "mfac"), ())
    assert not any((out / "checkpoints").glob("*.pt"))
    for r in rows:
        assert r["steps"] == 4 and len(r["train_losses"]) == 4 and r["diverged_at_step"] is None
        assert 0 <= r["test_accuracy"] <= 1 and r["test_loss"] > 0 and r["step_ms"] > 0
    # reference byte counts from the parameter shapes alone
    sizes = [p.numel() for p in TASKS["mlp-digits"].model(0).parameters()]  # fc1 w, b, fc2 w, b, fc3 w, b
    total = sum(sizes)
    by_name = {r["optimizer"]: r for r in rows}
    assert by_name["adamw"]["optimizer_state_bytes"] == 4 * (2 * total + len(sizes))  # moments + step scalars
    adam_part = total - sizes[0] - sizes[2]  # SinkGD normalises fc1 and fc2 weights statelessly
    assert by_name["sinkgd"]["optimizer_state_bytes"] == 4 * 2 * adam_part
    window, gram = 4 * NGRADS * total, 8 * NGRADS**2
    assert by_name["mfac"]["optimizer_state_bytes"] == window + gram
    assert by_name["adamw"]["weight_bytes"] == 4 * total
    page = result.report.read_text()
    assert "data:image/png;base64," in page and page.count("<tr>") == 4
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    # same seed, another folder: the same curves
    again = compare(tiny(tmp_path / "again"), progress=False)
    assert [r["train_losses"] for r in again.rows] == [r["train_losses"] for r in rows]


@pytest.mark.parametrize(
    "task",
    [
        "mlp-digits",
        pytest.param("tiny-lm", marks=pytest.mark.slow),
        pytest.param("cnn-photos", marks=pytest.mark.slow),
    ],
)
def test_every_optimizer_runs_on_every_task(task: str, tmp_path: Path) -> None:
    rows = compare(make_config(task=task, steps=1, batch_size=2, out=tmp_path), progress=False).rows
    assert [r["optimizer"] for r in rows] == list(OPTIMIZERS)
    first = {r["optimizer"]: r["train_losses"][0] for r in rows}  # same model, same first batch
    assert len({v for n, v in first.items() if n != "qgalore"}) == 1
    assert first["qgalore"] == pytest.approx(first["adamw"], rel=1e-3)  # INT8 weights: close, not equal
    by_name = {r["optimizer"]: r for r in rows}
    assert by_name["qgalore"]["weight_bytes"] < by_name["adamw"]["weight_bytes"]
    assert by_name["qgalore"]["projector_bytes"] < by_name["galore"]["projector_bytes"]


def test_resume_skips_finished_optimizers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "cmp"
    config = tiny(out)
    real, calls = job.train_one, []

    def interrupted(config: Any, name: str, *args: Any) -> dict[str, Any]:
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(name)
        return real(config, name, *args)

    monkeypatch.setattr(job, "train_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        compare(config, progress=False)
    first = lines(out / "results.jsonl")
    assert [r["optimizer"] for r in first] == ["adamw", "sinkgd"]
    assert "Not finished yet: mfac" in (out / "report.html").read_text()

    calls.clear()
    monkeypatch.setattr(job, "train_one", lambda c, n, *a: calls.append(n) or real(c, n, *a))
    result = compare(config, progress=False)
    assert calls == ["mfac"] and (result.computed, result.reused) == (("mfac",), ("adamw", "sinkgd"))
    assert result.rows[:2] == first
    calls.clear()
    assert compare(config, progress=False).computed == () and calls == []


def test_interrupted_optimizer_continues_from_its_checkpoint_bit_identically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = "adamw,qgalore,mfac"
    reference = compare(tiny(tmp_path / "ref", optimizers=names, steps=5), progress=False).rows
    monkeypatch.setattr(job, "CHECKPOINT_SECONDS", 0.0)
    real_make = job.make_optimizer

    def dying(name: str, *args: Any) -> torch.optim.Optimizer:
        opt = real_make(name, *args)
        if name == "qgalore":
            step, count = opt.step, [0]

            def step_then_die(*a: Any) -> Any:
                count[0] += 1
                if count[0] == 4:
                    raise KeyboardInterrupt
                return step(*a)

            opt.step = step_then_die  # type: ignore[method-assign]
        return opt

    out = tmp_path / "cmp"
    monkeypatch.setattr(job, "make_optimizer", dying)
    with pytest.raises(KeyboardInterrupt):
        compare(tiny(out, optimizers=names, steps=5), progress=False)
    assert (out / "checkpoints" / "qgalore.pt").is_file()
    monkeypatch.setattr(job, "make_optimizer", real_make)
    rows = compare(tiny(out, optimizers=names, steps=5), progress=False).rows
    resumed = {r["optimizer"]: r for r in rows}
    assert resumed["qgalore"]["resumed_from_step"] == 3
    for ref in reference:
        assert resumed[ref["optimizer"]]["train_losses"] == ref["train_losses"]
        assert resumed[ref["optimizer"]]["test_loss"] == ref["test_loss"]
    assert not (out / "checkpoints" / "qgalore.pt").exists()


# ------------------------------------------------------------------ damaged and foreign folders


def test_truncated_last_line_is_dropped_and_its_optimizer_redone(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    compare(tiny(out, optimizers="adamw,sinkgd"), progress=False)
    path = out / "results.jsonl"
    text = path.read_text()
    path.write_text(text[: len(text) - 40])  # killed mid-write of the last line
    result = compare(tiny(out, optimizers="adamw,sinkgd"), progress=False)
    assert (result.computed, result.reused) == (("sinkgd",), ("adamw",))
    assert [r["optimizer"] for r in lines(path)] == ["adamw", "sinkgd"]


def test_corrupt_line_or_checkpoint_is_an_error_and_nothing_is_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    compare(tiny(out, optimizers="adamw,sinkgd"), progress=False)
    path = out / "results.jsonl"
    damaged = "{not json\n" + path.read_text().splitlines()[1] + "\n"
    path.write_text(damaged)
    with pytest.raises(JobDirError, match="line 1 is corrupt"):
        compare(tiny(out, optimizers="adamw,sinkgd"), progress=False)
    assert path.read_text() == damaged

    other = tmp_path / "other"
    compare(tiny(other, optimizers="adamw"), progress=False)
    (other / "results.jsonl").write_text("")
    (other / "checkpoints").mkdir(exist_ok=True)
    (other / "checkpoints" / "adamw.pt").write_bytes(b"garbage")
    with pytest.raises(JobDirError, match=r"checkpoint .*adamw\.pt.* is corrupt .* delete it"):
        compare(tiny(other, optimizers="adamw"), progress=False)
    assert (other / "checkpoints" / "adamw.pt").read_bytes() == b"garbage"


def test_foreign_folder_and_other_config_are_refused_untouched(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(JobDirError, match="not empty and holds no optimizer comparison"):
        compare(tiny(mine), progress=False)
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]

    audit = tmp_path / "audit"
    audit.mkdir()
    (audit / "manifest.json").write_text(json.dumps({"digest": "x", "config": {}}))
    with pytest.raises(JobDirError, match="corrupt or not ours"):
        compare(tiny(audit), progress=False)

    out = tmp_path / "cmp"
    compare(tiny(out, optimizers="adamw"), progress=False)
    before = (out / "results.jsonl").read_text()
    with pytest.raises(JobDirError, match="steps: 4 there, 5 now"):
        compare(tiny(out, optimizers="adamw", steps=5), progress=False)
    assert (out / "results.jsonl").read_text() == before
