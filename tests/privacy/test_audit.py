"""The audit job: config validation, resume, foreign/corrupt folders, the report, the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import gradinfo.privacy.audit.run as audit_run
from gradinfo.cli import app
from gradinfo.privacy.audit import DEFENSES, AuditConfigError, AuditError, audit, make_config
from gradinfo.privacy.audit.config import AuditConfig
from gradinfo.privacy.audit.grid import cells
from gradinfo.privacy.audit.setup import prepare


@pytest.fixture
def tiny_data(tmp_path: Path) -> str:
    """40 random 3x8x8 images in [0, 1], 4 classes, as an .npz."""
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, x=rng.random((40, 3, 8, 8)).astype(np.float32), y=np.arange(40) % 4)
    return str(path)


def tiny(data: str, out: Path, **options: Any) -> AuditConfig:
    base = {"data": data, "out": out, "defenses": "none", "attacks": "inverting_gradients,label_recovery",
            "batch_sizes": "1", "iterations": 2, "rounds": 1, "local_steps": 1, "clients": 2}  # fmt: skip
    return make_config(**{**base, **options})


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------ validation


def test_every_mistake_is_reported_at_once_one_line_each(tmp_path: Path) -> None:
    with pytest.raises(AuditConfigError) as info:
        make_config(
            attacks="inverting_gradients,deep_magic",
            defenses="none,tinfoil",
            batch_sizes="1,0,-2,x",
            iterations=0,
            clients=1,
            seed=-1,
            data=str(tmp_path / "missing.npz"),
            model="no_colon_here",
        )
    found = info.value.lines
    assert len(found) == 8, found
    options = ("--attacks", "--defenses", "--batch-sizes", "--iterations", "--clients", "--seed", "--data")
    for option in (*options, "--model"):
        assert sum(line.startswith(option + ":") for line in found) == 1, (option, found)
    attacks = next(line for line in found if line.startswith("--attacks"))
    assert "'deep_magic'" in attacks and "dropout_inversion" in attacks  # lists the valid names
    sizes = next(line for line in found if line.startswith("--batch-sizes"))
    assert "'0'" in sizes and "'-2'" in sizes and "'x'" in sizes


def test_defaults_are_the_issue_grid() -> None:
    config = make_config()
    assert config.batch_sizes == (1, 4)
    assert config.defenses == tuple(DEFENSES)
    assert set(config.attacks) >= {"inverting_gradients", "dropout_inversion", "label_recovery"}
    assert config.clients == 10 and config.out == Path("gradinfo-audit")


def test_folder_without_images_npz_without_y_and_bad_factories(tmp_path: Path, monkeypatch: Any) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("no images here")
    with pytest.raises(AuditConfigError, match="holds no images"):
        prepare(make_config(data=str(folder), out=tmp_path / "o"))
    np.savez(tmp_path / "nox.npz", x=np.zeros((4, 3, 8, 8), np.float32))
    with pytest.raises(AuditConfigError, match="must contain arrays 'x' and 'y'; missing y"):
        prepare(make_config(data=str(tmp_path / "nox.npz"), out=tmp_path / "o"))
    (tmp_path / "user_factories.py").write_text("def not_a_module():\n    return 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(AuditConfigError, match=r"expected an nn\.Module"):
        prepare(make_config(model="user_factories:not_a_module", out=tmp_path / "o"))
    with pytest.raises(AuditConfigError, match="cannot import module 'no_such_module_xyz'"):
        prepare(make_config(model="no_such_module_xyz:build", out=tmp_path / "o"))
    sys.modules.pop("user_factories", None)


def test_folder_of_images_loads_with_one_class_per_subfolder(tmp_path: Path) -> None:
    import skimage.io

    rng = np.random.default_rng(0)
    for c in ("cats", "dogs"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(10):
            skimage.io.imsave(
                tmp_path / "imgs" / c / f"{i}.png", (rng.random((20, 24, 3)) * 255).astype(np.uint8)
            )
    setup = prepare(make_config(data=str(tmp_path / "imgs"), out=tmp_path / "o", clients=2, defenses="none"))
    assert setup.input_shape == (3, 32, 32) and setup.num_classes == 2
    assert len(setup.train[1]) + len(setup.test[1]) == 20


def test_dp_noise_is_accounted_at_the_largest_client_poisson_rate(tiny_data: str, tmp_path: Path) -> None:
    from gradinfo.privacy import epsilon, noise_for_epsilon
    from gradinfo.privacy.audit.setup import DELTA, DP_TARGETS, LOCAL_BATCH

    config = make_config(data=tiny_data, out=tmp_path / "o", clients=4, rounds=3, defenses="dp-eps8,dp-eps1")
    setup = prepare(config)
    smallest = min(len(c[1]) for c in setup.clients)
    assert setup.sample_rate == min(1.0, LOCAL_BATCH / smallest)
    steps = config.rounds * config.local_steps
    for name, sigma in setup.sigmas.items():
        assert epsilon(sigma, setup.sample_rate, steps, DELTA) <= DP_TARGETS[name]
        # every client samples at q_k <= the accounted rate, so its epsilon is within the target too
        for _, y in setup.clients:
            assert epsilon(sigma, min(1.0, LOCAL_BATCH / len(y)), steps, DELTA) <= DP_TARGETS[name]
    big = make_config(out=tmp_path / "p", defenses="dp-eps8")  # the default photos: q well below 1
    default = prepare(big)
    assert default.sample_rate < 1.0
    unamplified = noise_for_epsilon(8.0, 1.0, big.rounds * big.local_steps, DELTA)
    assert default.sigmas["dp-eps8"] < unamplified


# ------------------------------------------------------------------ running and resuming


def test_resume_after_interruption_redoes_no_finished_cell(
    tiny_data: str, tmp_path: Path, monkeypatch: Any
) -> None:
    out = tmp_path / "audit"
    config = tiny(tiny_data, out)
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
    assert (result.computed, result.reused) == (1, 2)
    assert [r["cell"] for r in lines(out / "results.jsonl")] == keys
    assert result.rows[:2] == first  # finished rows kept as they were
    assert (out / "report.html").is_file()

    calls.clear()
    again = audit(config, progress=False)
    assert calls == [] and again.computed == 0 and again.reused == 3


def test_truncated_last_line_is_dropped_and_its_cell_redone(tiny_data: str, tmp_path: Path) -> None:
    out = tmp_path / "audit"
    config = tiny(tiny_data, out)
    audit(config, progress=False)
    path = out / "results.jsonl"
    text = path.read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    path.write_text(text[: len(text) - len(last) - 1 + len(last) // 2])  # kill mid-write of the last line
    result = audit(config, progress=False)
    assert (result.computed, result.reused) == (1, 2)
    assert [r["cell"] for r in lines(path)] == [c.key for c in cells(config)]


def test_corrupt_middle_line_is_an_error_and_nothing_is_overwritten(tiny_data: str, tmp_path: Path) -> None:
    out = tmp_path / "audit"
    config = tiny(tiny_data, out)
    audit(config, progress=False)
    path = out / "results.jsonl"
    rows = path.read_text().splitlines()
    damaged = "\n".join([rows[0], "{not json", *rows[2:]]) + "\n"
    path.write_text(damaged)
    with pytest.raises(AuditError, match="line 2 is corrupt"):
        audit(config, progress=False)
    assert path.read_text() == damaged


def test_progress_in_a_log_is_one_line_per_finished_cell(
    tiny_data: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny(tiny_data, tmp_path / "audit")
    keys = [c.key for c in cells(config)]
    audit(config, progress=True)  # stdout is pytest's capture, not a terminal
    out = capsys.readouterr().out
    for i, key in enumerate(keys, start=1):
        assert f"audit {i}/{len(keys)}: {key} (" in out


def test_foreign_folder_is_refused_untouched(tiny_data: str, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(AuditError, match="not empty and holds no audit"):
        audit(tiny(tiny_data, out), progress=False)
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]
    assert (out / "thesis.tex").read_text() == "precious"


def test_other_config_into_same_folder_names_the_difference(tiny_data: str, tmp_path: Path) -> None:
    out = tmp_path / "audit"
    audit(tiny(tiny_data, out), progress=False)
    before = (out / "results.jsonl").read_text()
    with pytest.raises(AuditError, match="iterations: 2 there, 3 now"):
        audit(tiny(tiny_data, out, iterations=3), progress=False)
    assert (out / "results.jsonl").read_text() == before


def test_folder_of_an_earlier_audit_revision_is_refused(tiny_data: str, tmp_path: Path) -> None:
    out = tmp_path / "audit"
    config = tiny(tiny_data, out)
    audit(config, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["revision"] == audit_run.REVISION >= 2
    del manifest["revision"]  # as written before revisions existed, with Poisson-free DP cells
    (out / "manifest.json").write_text(json.dumps(manifest))
    before = (out / "results.jsonl").read_text()
    with pytest.raises(
        AuditError,
        match=f"made by revision 1 of this job, and this gradinfo runs revision {audit_run.REVISION}",
    ):
        audit(config, progress=False)
    assert (out / "results.jsonl").read_text() == before


def test_report_names_every_defense_and_links_its_figures(tiny_data: str, tmp_path: Path) -> None:
    out = tmp_path / "audit"
    config = tiny(
        tiny_data, out, defenses=",".join(DEFENSES), attacks="inverting_gradients,sketched_inversion"
    )
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


# ------------------------------------------------------------------ CLI


def test_cli_bad_batch_size_exits_2_with_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["audit", "--batch-sizes", "0", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    found = result.stderr.strip().splitlines()
    assert len(found) == 1 and found[0].startswith("error: --batch-sizes:"), result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "o").exists()


def test_cli_runs_a_tiny_audit(tiny_data: str, tmp_path: Path) -> None:
    out = tmp_path / "o"
    args = ["audit", "--data", tiny_data, "--defenses", "none", "--attacks", "label_recovery"]
    args += [
        "--batch-sizes",
        "1,2",
        "--iterations",
        "1",
        "--rounds",
        "1",
        "--local-steps",
        "1",
        "--clients",
        "2",
    ]
    args += ["--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "audit finished in" in result.stdout
    assert len(lines(out / "results.jsonl")) == 3 and (out / "report.html").is_file()


# ------------------------------------------------------------------ the default audit


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


def test_unknown_engine_is_one_line() -> None:
    with pytest.raises(AuditConfigError) as info:
        make_config(engine="spark")
    assert info.value.lines == ["--engine: unknown engine 'spark'; valid: inprocess, flower"]


@pytest.mark.slow  # Ray start-up: about a minute on 2 shared cores
def test_flower_engine_gives_the_in_process_utility(tiny_data: str, tmp_path: Path) -> None:
    options = {"attacks": "label_recovery", "defenses": "none,topk-90", "rounds": 2, "local_steps": 2}
    flower = audit(tiny(tiny_data, tmp_path / "flower", engine="flower", **options), progress=False)
    local = audit(tiny(tiny_data, tmp_path / "local", **options), progress=False)
    got = {r["defense"]: r for r in flower.rows if r["kind"] == "utility"}
    want = {r["defense"]: r for r in local.rows if r["kind"] == "utility"}
    for defense in ("none", "topk-90"):
        assert got[defense]["engine"] == "flower simulation" and want[defense]["engine"] == "in-process"
        np.testing.assert_allclose(got[defense]["accuracy_curve"], want[defense]["accuracy_curve"], atol=0.05)
    assert "flower simulation" in flower.report.read_text()
