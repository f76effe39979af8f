"""The audit tests' data and helpers: a tiny ``.npz``, a tiny grid on it, the rows of a folder."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gradinfo.privacy.audit import AuditConfig, make_config


@pytest.fixture
def tiny_data(tmp_path: Path) -> str:
    """40 random 3x8x8 images in [0, 1], 4 classes, as an .npz."""
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, x=rng.random((40, 3, 8, 8)).astype(np.float32), y=np.arange(40) % 4)
    return str(path)


@pytest.fixture
def tiny(tiny_data: str) -> Callable[..., AuditConfig]:
    """``tiny(out, **options)``: a 3-cell audit of ``tiny_data`` (one defense, B = 1, 2 attacks, 1 round)."""

    def build(out: Path, **options: Any) -> AuditConfig:
        base = {"data": tiny_data, "out": out, "defenses": "none",
                "attacks": "inverting_gradients,label_recovery", "batch_sizes": "1", "iterations": 2,
                "rounds": 1, "local_steps": 1, "clients": 2}  # fmt: skip
        return make_config(**{**base, **options})

    return build


@pytest.fixture
def lines() -> Callable[[Path], list[dict[str, Any]]]:
    """``lines(path)``: the rows of a ``results.jsonl``."""
    return lambda path: [json.loads(line) for line in path.read_text().splitlines()]
