"""A byte-level corpus made of the Python standard library's own source files (code and docstrings).

Token ids are raw bytes (vocabulary 256). The files are the top-level ``*.py`` modules of the running
interpreter's standard library (``sysconfig.get_paths()["stdlib"]``; never ``site-packages``), sorted
by name. The corpus therefore depends on the interpreter: it is fixed for one Python version and
build, and differs between versions (``info["python"]`` records which one made it).

Train and test are split by file: a seeded permutation of the sorted files puts the first
``test_fraction`` share of them (at least one) in test and the rest in train, so no byte of a test
file is ever in train. Within a split the files are concatenated in permuted order.
"""

from __future__ import annotations

import platform
import sysconfig
from pathlib import Path

import torch

from gradinfo.core.validate import fraction, positive_int
from gradinfo.datasets._types import Dataset, check_split_seed

VOCAB_SIZE = 256


def stdlib_files() -> list[Path]:
    """The corpus files: top-level ``*.py`` files of the interpreter's stdlib, sorted by name.

    Raises:
        FileNotFoundError: the interpreter ships no stdlib sources (a stripped, bytecode-only build).
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if p.is_file())
    if not files:
        raise FileNotFoundError(
            f"no *.py files in the standard library folder {root}; the text corpus needs them"
        )
    return files


def _byte_name(b: int) -> str:
    return chr(b) if 32 <= b < 127 else f"\\x{b:02x}"


def load(
    *,
    split: str = "train",
    seed: int = 0,
    block_size: int | None = None,
    max_bytes: int | None = None,
    test_fraction: float = 0.1,
) -> Dataset:
    """Byte ids with next-byte targets.

    Args:
        split: ``"train"`` or ``"test"`` (disjoint sets of files).
        seed: seeds which files go to test and the order files are concatenated in.
        block_size: ``None`` gives the whole split as one stream, ``x = s[:-1]``, ``y = s[1:]`` (``[L - 1]``
            each). An int ``T`` cuts non-overlapping windows ``w`` of ``T + 1`` bytes (stride ``T``, the
            tail dropped) and returns ``x = w[:, :-1]``, ``y = w[:, 1:]``, both ``[N, T]``; the window
            itself is ``torch.cat([x[:, :1], y], dim=1)``.
        max_bytes: keep only the first ``max_bytes`` bytes of the split's stream (``None``: all).
        test_fraction: share of files put in test.

    Returns:
        A :class:`~gradinfo.datasets.Dataset` with int64 ``x``/``y`` in ``[0, 256)``, 256 classes (the
        printable character or ``\\xNN``), ``info["files"]`` (file names used, in order) and
        ``info["python"]`` (the interpreter version that made the corpus).

    Raises:
        ValueError: ``block_size`` or ``max_bytes`` < 2, ``test_fraction`` outside (0, 1), a split too
            short for one window, or bad split/seed.
    """
    check_split_seed(split, seed)
    if block_size is not None:
        positive_int("block_size", block_size)
    if max_bytes is not None:
        positive_int("max_bytes", max_bytes, minimum=2)
    fraction("test_fraction", test_fraction)
    files = stdlib_files()
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed)).tolist()
    n_test = max(1, round(test_fraction * len(files)))
    chosen = [files[i] for i in (order[:n_test] if split == "test" else order[n_test:])]
    chunks, total, used = [], 0, []
    for path in chosen:
        if max_bytes is not None and total >= max_bytes:
            break
        data = path.read_bytes()
        chunks.append(data)
        used.append(path.name)
        total += len(data)
    raw = b"".join(chunks)[:max_bytes]
    stream = torch.frombuffer(bytearray(raw), dtype=torch.uint8).to(torch.int64)  # [L]
    if block_size is None:
        x, y = stream[:-1], stream[1:]  # [L - 1], [L - 1]
    else:
        n = (len(stream) - 1) // block_size
        if n < 1:
            raise ValueError(
                f"the {split} split has {len(stream)} bytes, too few for one window of block_size + 1 = "
                f"{block_size + 1}; lower block_size={block_size} or raise max_bytes={max_bytes}"
            )
        windows = stream[: n * block_size + 1].unfold(0, block_size + 1, block_size)  # [N, T + 1]
        x, y = windows[:, :-1].contiguous(), windows[:, 1:].contiguous()  # [N, T], [N, T]
    return Dataset(
        x=x,
        y=y,
        classes=tuple(_byte_name(b) for b in range(VOCAB_SIZE)),
        name="text",
        split=split,
        info={
            "block_size": block_size,
            "max_bytes": max_bytes,
            "test_fraction": test_fraction,
            "files": tuple(used),
            "python": platform.python_version(),
        },
    )
