"""A resumable job's output folder: a manifest written first, finished rows appended one line each.

The jobs ``gradinfo audit``, ``compare-optimizers`` and ``prune`` write into one folder each. Its
``manifest.json`` (the job's name, the config's fingerprint and digest, the job's revision, the gradinfo
version) is written atomically before anything else; jobs made of rows append one JSON object per finished
row to ``results.jsonl`` (flushed and fsync-ed). A rerun with the same config resumes: :func:`open_job_dir`
accepts the folder and :func:`read_rows` returns the rows already finished. A job's *revision* is a number
its module bumps whenever a change to the code alters the results of a finished row; a folder written at
another revision is refused, so a resume never mixes rows computed two ways (the package version cannot tell:
an editable install keeps one version across commits).

A run holds its folder with :func:`job_lock`, so two runs never write one folder at once. A non-empty folder
without a manifest, a folder of another job, revision or config, a corrupt manifest and
a corrupt line raise :class:`JobDirError`, and nothing in the folder is written. The one damage repaired is a
truncated last line of ``results.jsonl``, which a kill mid-write leaves: it is dropped from the file and its
row is redone.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

MANIFEST, RESULTS = "manifest.json", "results.jsonl"


class JobDirError(ValueError):
    """The output folder cannot be used: not empty and not a job's, another job's or config's, or corrupt."""


def open_job_dir(
    out: Path,
    *,
    job: str,
    noun: str,
    fingerprint: dict[str, Any],
    untagged_ok: bool = False,
    revision: int = 1,
) -> None:
    """Create ``out`` with this run's manifest, or check that the manifest it holds is this very run's.

    Args:
        out: the output folder (created with its parents when missing; an empty one is used as is).
        job: the job's name, stored as the manifest's ``"job"`` (``"audit"``, ``"prune"``).
        noun: what the job makes, in messages (``"audit"``, ``"optimizer comparison"``).
        fingerprint: every setting that changes results, JSON-ready; stored with its
            :func:`fingerprint_digest`, and compared key by key with the stored one when the digests differ.
        untagged_ok: a manifest without ``"job"`` counts as this job's (folders written before manifests
            named their job).
        revision: the job's revision; a manifest without one is revision 1.

    Raises:
        JobDirError: ``out`` is not empty and holds no manifest; its manifest is corrupt, of
            another job, of another revision, or of another config (the message names every setting that
            differs). Nothing is written in those cases.
    """
    manifest, digest = out / MANIFEST, fingerprint_digest(fingerprint)
    if out.is_dir() and any(out.iterdir()):
        if not manifest.is_file():
            raise JobDirError(
                f"--out {str(out)!r} is not empty and holds no {noun} (no {MANIFEST}); "
                "choose a new or empty folder"
            )
        try:
            saved = json.loads(manifest.read_text())
            if not isinstance(saved, dict) or not isinstance(saved["config"], dict):
                raise TypeError("not a JSON object with a 'config' object")
            found = saved.get("job", job) if untagged_ok else saved["job"]
            old, stored, made = saved["config"], saved["digest"], saved.get("revision", 1)
        except (ValueError, KeyError, TypeError) as err:
            raise JobDirError(
                f"{str(manifest)!r} is corrupt or not ours ({err!r}); choose another --out"
            ) from err
        if found != job:
            raise JobDirError(
                f"--out {str(out)!r} holds a {found!r} run, not {_a(noun)}; choose another --out"
            )
        if made != revision:
            raise JobDirError(
                f"--out {str(out)!r} holds {_a(noun)} made by revision {made!r} of this job, and this "
                f"gradinfo runs revision {revision}: their results were computed differently and would not "
                "mix; choose another --out"
            )
        if stored != digest:
            raise JobDirError(
                f"--out {str(out)!r} holds {_a(noun)} with another configuration "
                f"({_diff(old, fingerprint)}); rerun with the same options to resume, or choose another --out"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "job": job,
        "digest": digest,
        "config": fingerprint,
        "revision": revision,
        "gradinfo": _version(),
    }
    write_atomic(manifest, json.dumps(payload, indent=2).encode())


@contextmanager
def job_lock(out: Path) -> Iterator[None]:
    """Hold ``out`` for one run: while the block runs, another run on the same folder is refused.

    The lock is an exclusive ``flock`` on the folder itself (created when missing; nothing is written in it),
    so the operating system drops it when the run ends in any way, a kill included: a killed run leaves no
    stale lock behind.

    Raises:
        JobDirError: another process (or another run in this one) holds the folder.
    """
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobDirError(
                f"--out {str(out)!r} is in use by another run; wait for it to finish, or choose another --out"
            ) from None
        yield
    finally:
        os.close(fd)


def fingerprint_digest(fingerprint: dict[str, Any]) -> str:
    """A short hash (16 hex digits of SHA-256) of ``fingerprint``: equal digests mean the same run."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def read_rows(path: Path, key: str, keys: set[str], *, noun: str) -> dict[str, dict[str, Any]]:
    """The finished rows of ``path`` (a ``results.jsonl``) by their ``key`` entry; {} when it does not exist.

    A last line without its newline (cut short by a kill) is dropped from the file once every complete line
    has been read.

    Args:
        path: the JSON-lines file.
        key: the entry naming a row's unit of work (``"cell"``, ``"optimizer"``).
        keys: the units this run has; a row naming another one is an error.
        noun: what the job makes, in messages.

    Returns:
        ``{row[key]: row}`` in file order.

    Raises:
        JobDirError: a complete line is not a JSON object with a string ``key``, names a unit
            not in ``keys``, or repeats one; the message names the file and the line. The file is untouched.
    """
    if not path.exists():
        return {}
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    rows: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(data[:end].decode("utf-8", "replace").splitlines(), start=1):
        try:
            row = json.loads(line)
            name = row[key]
            if not isinstance(name, str):
                raise TypeError(f"{key!r} is {name!r}, not a string")
        except (ValueError, KeyError, TypeError) as err:
            raise JobDirError(
                f"{str(path)!r} line {number} is corrupt ({type(err).__name__}: {err}); it was not written "
                f"by this {noun} as it stands: move the folder away or choose another --out"
            ) from err
        if name not in keys or name in rows:
            why = f"repeats {_a(key)}" if name in rows else f"names {_a(key)} this {noun} does not have"
            raise JobDirError(f"{str(path)!r} line {number} {why} ({name!r}); choose another --out")
        rows[name] = row
    if end < len(data):  # a line cut short by a kill: drop it, its row is redone
        with path.open("r+b") as f:
            f.truncate(end)
    return rows


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` to ``path`` as one JSON line, flushed and fsync-ed before returning."""
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through ``<path>.tmp`` and a rename: readers see the old or the new file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    return "; ".join(
        f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in keys if old.get(k) != new.get(k)
    )


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _version() -> str:
    try:
        return version("gradinfo")
    except PackageNotFoundError:
        return "0.0.0"
