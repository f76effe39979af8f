"""The audit's config: every mistake at once, one line each; the default grid; the ``full`` preset."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradinfo.core.jobconfig import JobConfigError
from gradinfo.privacy.audit import ATTACKS, DEFENSES, AuditConfig, make_config


def test_every_mistake_is_reported_at_once_one_line_each(tmp_path: Path) -> None:
    with pytest.raises(JobConfigError) as info:
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


@pytest.mark.parametrize(
    ("options", "line"),
    [
        ({"attacks": ""}, f"--attacks: unknown attack ''; valid: {', '.join(ATTACKS)}"),
        ({"defenses": []}, f"--defenses: give at least one defense; valid: {', '.join(DEFENSES)}"),
        ({"defenses": "none, none"}, "--defenses: defenses repeat: none, none"),
        ({"batch_sizes": "2,2"}, "--batch-sizes: batch sizes repeat: 2, 2"),
        ({"rounds": "1.5"}, "--rounds: must be a positive int, got '1.5'"),
        ({"clients": 1}, "--clients: must be an int >= 2 (a federation), got 1"),
        ({"unknown": 1}, "unknown audit option(s) unknown"),
    ],
)
def test_name_and_count_mistakes_keep_their_messages(options: dict[str, object], line: str) -> None:
    with pytest.raises(JobConfigError) as info:
        make_config(**options)
    assert info.value.lines == [line]


def test_defaults_are_the_issue_grid() -> None:
    config = make_config()
    assert config.batch_sizes == (1, 4)
    assert config.defenses == tuple(DEFENSES)
    assert set(config.attacks) >= {"inverting_gradients", "dropout_inversion", "label_recovery"}
    assert config.clients == 10 and config.out == Path("gradinfo-audit")
    assert (config.iterations, config.rounds, config.local_steps, config.restarts) == (200, 15, 6, 1)


def test_the_full_preset_is_the_bigger_grid_and_explicit_options_win() -> None:
    full = make_config(preset="full")
    assert full.batch_sizes == (1, 2, 4, 8)
    assert (full.iterations, full.rounds, full.local_steps, full.restarts) == (400, 30, 6, 2)
    mixed = make_config(preset="full", rounds="3", batch_sizes=None)
    assert mixed.rounds == 3 and mixed.batch_sizes == (1, 2, 4, 8)


def test_names_are_split_and_stripped_and_lists_accepted() -> None:
    config = make_config(attacks=" dlg , label_recovery", defenses=["none", "hyperfl"], batch_sizes=[2, "3"])
    assert config.attacks == ("dlg", "label_recovery")
    assert config.defenses == ("none", "hyperfl") and config.batch_sizes == (2, 3)


def test_the_fingerprint_is_every_field_but_out(tmp_path: Path) -> None:
    config = make_config(out=tmp_path, defenses="none")
    printed = config.fingerprint()
    assert set(printed) == set(AuditConfig.model_fields) - {"out"}
    assert printed["defenses"] == ["none"] and printed["model"] is None


def test_unknown_engine_is_one_line() -> None:
    with pytest.raises(JobConfigError) as info:
        make_config(engine="spark")
    assert info.value.lines == ["--engine: unknown engine 'spark'; valid: inprocess, flower"]
