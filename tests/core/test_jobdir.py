"""A job's output folder: manifest checks, resumable results.jsonl, atomic writes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradinfo.core.jobdir import (
    MANIFEST,
    RESULTS,
    JobDirError,
    append_row,
    fingerprint_digest,
    job_lock,
    open_job_dir,
    read_rows,
    write_atomic,
)

FINGERPRINT = {"steps": 4, "seed": 0, "names": ["a", "b"]}


def open_thing(out: Path, fingerprint: dict[str, Any] = FINGERPRINT, **options: Any) -> None:
    open_job_dir(out, job="thing", noun="audit", fingerprint=fingerprint, **options)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def rows_file(path: Path, names: list[str]) -> bytes:
    return b"".join(json.dumps({"cell": n, "value": i}).encode() + b"\n" for i, n in enumerate(names))


# ------------------------------------------------------------------ the manifest


def test_new_folder_gets_the_manifest_and_resumes_with_the_finished_rows(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "run"
    open_thing(out)
    saved = json.loads((out / MANIFEST).read_text())
    assert saved["job"] == "thing" and saved["config"] == FINGERPRINT
    assert saved["digest"] == fingerprint_digest(FINGERPRINT)
    assert [p.name for p in out.iterdir()] == [MANIFEST]  # no temporary file left behind
    assert read_rows(out / RESULTS, "cell", {"x", "y", "z"}, noun="audit") == {}
    append_row(out / RESULTS, {"cell": "y", "value": 1})
    append_row(out / RESULTS, {"cell": "x", "value": 2})

    open_thing(out)  # the same run: accepted, nothing rewritten
    assert json.loads((out / MANIFEST).read_text()) == saved
    done = read_rows(out / RESULTS, "cell", {"x", "y", "z"}, noun="audit")
    assert done == {"y": {"cell": "y", "value": 1}, "x": {"cell": "x", "value": 2}}
    assert list(done) == ["y", "x"]  # file order


def test_empty_existing_folder_is_used(tmp_path: Path) -> None:
    open_thing(tmp_path)
    assert (tmp_path / MANIFEST).is_file()


def test_foreign_folder_is_refused_and_untouched(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(JobDirError, match=r"is not empty and holds no audit \(no manifest\.json\)"):
        open_thing(tmp_path)
    assert snapshot(tmp_path) == {"thesis.tex": b"precious"}


def test_other_config_is_refused_naming_only_the_keys_that_differ(tmp_path: Path) -> None:
    open_thing(tmp_path)
    append_row(tmp_path / RESULTS, {"cell": "x"})
    before = snapshot(tmp_path)
    other = {**FINGERPRINT, "steps": 5, "lr": 0.1}
    with pytest.raises(JobDirError, match="another configuration") as info:
        open_thing(tmp_path, other)
    message = str(info.value)
    assert "lr: None there, 0.1 now; steps: 4 there, 5 now" in message
    assert "seed" not in message and "names" not in message
    assert snapshot(tmp_path) == before


def test_other_job_is_refused(tmp_path: Path) -> None:
    open_job_dir(tmp_path, job="prune", noun="prune run", fingerprint=FINGERPRINT)
    before = snapshot(tmp_path)
    with pytest.raises(JobDirError, match=r"holds a 'prune' run, not an audit"):
        open_thing(tmp_path)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[1, 2]",
        json.dumps({"job": "thing", "config": FINGERPRINT}),  # no digest
        json.dumps({"job": "thing", "config": "steps=4", "digest": "x"}),
        json.dumps({"config": FINGERPRINT, "digest": fingerprint_digest(FINGERPRINT)}),  # no job
    ],
)
def test_corrupt_manifest_is_refused_and_untouched(tmp_path: Path, text: str) -> None:
    (tmp_path / MANIFEST).write_text(text)
    with pytest.raises(JobDirError, match=r"manifest\.json' is corrupt or not ours"):
        open_thing(tmp_path)
    assert snapshot(tmp_path) == {MANIFEST: text.encode()}


def test_untagged_manifest_counts_as_this_jobs_only_when_allowed(tmp_path: Path) -> None:
    text = json.dumps({"config": FINGERPRINT, "digest": fingerprint_digest(FINGERPRINT)})
    (tmp_path / MANIFEST).write_text(text)
    open_thing(tmp_path, untagged_ok=True)
    with pytest.raises(JobDirError, match=r"steps: 4 there, 5 now"):
        open_thing(tmp_path, {**FINGERPRINT, "steps": 5}, untagged_ok=True)
    assert (tmp_path / MANIFEST).read_text() == text


def test_other_revision_is_refused_and_a_manifest_without_one_is_revision_1(tmp_path: Path) -> None:
    open_thing(tmp_path / "new", revision=2)
    assert json.loads((tmp_path / "new" / MANIFEST).read_text())["revision"] == 2
    open_thing(tmp_path / "new", revision=2)  # same revision: resumes
    old = tmp_path / "old"
    old.mkdir()
    text = json.dumps({"job": "thing", "config": FINGERPRINT, "digest": fingerprint_digest(FINGERPRINT)})
    (old / MANIFEST).write_text(text)
    open_thing(old)  # no revision stored: revision 1
    with pytest.raises(
        JobDirError, match=r"made by revision 1 of this job, and this gradinfo runs revision 2"
    ):
        open_thing(old, revision=2)
    with pytest.raises(JobDirError, match=r"made by revision 2 of this job.*runs revision 3"):
        open_thing(tmp_path / "new", revision=3)
    assert (old / MANIFEST).read_text() == text


def test_digest_is_the_sha256_of_the_sorted_json_and_ignores_key_order() -> None:
    reference = hashlib.sha256(b'{"a": 1, "b": [2, 3]}').hexdigest()[:16]  # what the jobs always stored
    assert fingerprint_digest({"b": [2, 3], "a": 1}) == reference
    assert fingerprint_digest({"a": 1, "b": [2, 3]}) == reference
    assert fingerprint_digest({"a": 2, "b": [2, 3]}) != reference


# ------------------------------------------------------------------ results.jsonl


def test_truncated_last_line_is_dropped_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / RESULTS
    complete = rows_file(path, ["a", "b"])
    path.write_bytes(complete + b'{"cell": "c", "val')  # killed mid-write
    done = read_rows(path, "cell", {"a", "b", "c"}, noun="audit")
    assert list(done) == ["a", "b"]
    assert path.read_bytes() == complete
    append_row(path, {"cell": "c", "value": 2})  # the redone row lands on its own line
    assert list(read_rows(path, "cell", {"a", "b", "c"}, noun="audit")) == ["a", "b", "c"]


@given(cut=st.integers(min_value=0, max_value=200))
@settings(max_examples=25, deadline=None)
def test_any_cut_keeps_exactly_the_complete_lines(tmp_path_factory: pytest.TempPathFactory, cut: int) -> None:
    path = tmp_path_factory.mktemp("cut") / RESULTS
    data = rows_file(path, ["a", "b", "c", "d", "e"])
    path.write_bytes(data[:cut])
    kept = data[:cut].count(b"\n")  # lines whose newline survived the cut
    done = read_rows(path, "cell", set("abcde"), noun="audit")
    assert list(done) == list("abcde")[:kept]
    assert path.read_bytes() == data[: data[:cut].rfind(b"\n") + 1]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"{not json", "line 2 is corrupt"),
        (b"[1, 2]", "line 2 is corrupt"),
        (b'{"value": 1}', "line 2 is corrupt"),
        (b'{"cell": 3}', "line 2 is corrupt"),
        (b'{"cell": "a"}', r"line 2 repeats a cell \('a'\)"),
        (b'{"cell": "zz"}', r"line 2 names a cell this audit does not have \('zz'\)"),
    ],
)
def test_damaged_complete_line_is_an_error_naming_file_and_line(
    tmp_path: Path, line: bytes, why: str
) -> None:
    path = tmp_path / RESULTS
    data = rows_file(path, ["a"]) + line + b"\n" + rows_file(path, ["b"]) + b'{"cell": "c'  # and a cut
    path.write_bytes(data)
    with pytest.raises(JobDirError, match=f"results\\.jsonl' {why}"):
        read_rows(path, "cell", {"a", "b", "c"}, noun="audit")
    assert path.read_bytes() == data  # nothing written, not even the truncation


def test_rows_are_keyed_by_the_given_entry(tmp_path: Path) -> None:
    path = tmp_path / RESULTS
    append_row(path, {"optimizer": "adamw", "loss": 1.5})
    assert read_rows(path, "optimizer", {"adamw"}, noun="optimizer comparison") == {
        "adamw": {"optimizer": "adamw", "loss": 1.5}
    }
    with pytest.raises(JobDirError, match="names an optimizer this optimizer comparison does not have"):
        read_rows(path, "optimizer", {"sgd"}, noun="optimizer comparison")


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    write_atomic(path, b"old")
    write_atomic(path, b"new")
    assert snapshot(tmp_path) == {"report.html": b"new"}


def test_a_held_folder_is_refused_and_freed_when_its_run_ends(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with job_lock(out):
        assert out.is_dir() and list(out.iterdir()) == []  # the lock writes nothing in the folder
        in_use = "is in use by another run; wait for it to finish"
        with pytest.raises(JobDirError, match=in_use), job_lock(out):
            pass
    with job_lock(out):  # free again once the block ends
        pass


def test_a_killed_run_leaves_no_stale_lock(tmp_path: Path) -> None:
    out = tmp_path / "out"
    holder = (
        "import sys, time; from pathlib import Path; from gradinfo.core.jobdir import job_lock\n"
        "with job_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", holder, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(JobDirError, match="in use"), job_lock(out):
            pass
    finally:
        child.kill()
        child.wait(timeout=60)
    with job_lock(out):
        pass
