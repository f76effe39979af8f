"""The audit's setup: data and model checked before any work, and the DP noise it accounts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gradinfo.core.jobconfig import JobConfigError
from gradinfo.privacy import epsilon, noise_for_epsilon
from gradinfo.privacy.audit import make_config
from gradinfo.privacy.audit.setup import DELTA, DP_TARGETS, LOCAL_BATCH, prepare


def test_folder_without_images_npz_without_y_and_bad_factories(tmp_path: Path, monkeypatch: Any) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("no images here")
    with pytest.raises(JobConfigError, match="holds no images"):
        prepare(make_config(data=str(folder), out=tmp_path / "o"))
    np.savez(tmp_path / "nox.npz", x=np.zeros((4, 3, 8, 8), np.float32))
    with pytest.raises(JobConfigError, match="must contain arrays 'x' and 'y'; missing y"):
        prepare(make_config(data=str(tmp_path / "nox.npz"), out=tmp_path / "o"))
    (tmp_path / "user_factories.py").write_text("def not_a_module():\n    return 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(JobConfigError, match=r"expected an nn\.Module"):
        prepare(make_config(model="user_factories:not_a_module", out=tmp_path / "o"))
    with pytest.raises(JobConfigError, match="cannot import module 'no_such_module_xyz'"):
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
