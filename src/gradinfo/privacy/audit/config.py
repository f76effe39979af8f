"""What an audit runs: a pydantic model of every input, checked in full before any work starts.

Every mistake is collected, across fields and resources (an unknown attack, a batch size of 0, a folder
without images, an ``.npz`` without ``x``/``y``, a ``module:factory`` that does not import or does not
return an ``nn.Module``), and raised once as :class:`AuditConfigError`, one line per mistake, each line
naming the command-line option it concerns.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from gradinfo.core.jobconfig import JobConfigError, OutDir, build_config, choice_field, int_field, is_int

ATTACKS: dict[str, str] = {
    "inverting_gradients": "cosine gradient matching + TV, signed Adam (Geiping et al. 2020)",
    "dropout_inversion": "Inverting Gradients that also fits the client's dropout masks (DIA, paper 2)",
    "label_recovery": "labels from the last layer's gradient (iDLG sign rule, counts for batches)",
    "sketched_inversion": "Inverting Gradients through the known count sketch (paper 6; sketch defenses)",
    "dlg": "L2 gradient matching with L-BFGS and soft labels (Zhu et al. 2019)",
}
"""Attack names the audit knows, with what each does."""

DEFENSES: dict[str, str] = {
    "none": "no defense: the plain gradient",
    "dp-eps8": "DP-SGD at epsilon 8 (per-example clip 1, Gaussian noise; delta 1e-5)",
    "dp-eps1": "DP-SGD at epsilon 1 (per-example clip 1, Gaussian noise; delta 1e-5)",
    "topk-90": "top-k sparsification dropping 90% of coordinates (keeps the 10% largest)",
    "quant-4bit": "4-bit unbiased stochastic quantisation (15 levels per tensor)",
    "sketch-d10": "count sketch to d/10 coordinates, a fresh sketch per client and round",
    "sketch-dp": "DP-SGD at epsilon 8, then count sketch to d/10 (sketching is post-processing)",
    "hyperfl": "HyperFL: only a hypernetwork is shared; client embedding and head stay private",
}
"""Defense names the audit knows, with what each does."""

DEFAULT_ATTACKS: tuple[str, ...] = (
    "inverting_gradients",
    "dropout_inversion",
    "label_recovery",
    "sketched_inversion",
)
DEFAULT_DEFENSES: tuple[str, ...] = tuple(DEFENSES)
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
BUILTIN_DATA: tuple[str, ...] = ("photos", "digits")
ENGINES: tuple[str, ...] = ("inprocess", "flower")
"""How utility runs train: gradinfo's in-process FedAvg loop, or Flower's simulation engine (Ray)."""

QUICK = {"batch_sizes": (1, 4), "iterations": 200, "rounds": 15, "local_steps": 6, "restarts": 1}
FULL = {"batch_sizes": (1, 2, 4, 8), "iterations": 400, "rounds": 30, "local_steps": 6, "restarts": 2}
"""The default grid (sized for <= 5 minutes on 2 CPU cores) and the ``--full`` one (options given
explicitly override either)."""

OPTION = {
    "model": "--model",
    "data": "--data",
    "attacks": "--attacks",
    "defenses": "--defenses",
    "batch_sizes": "--batch-sizes",
    "iterations": "--iterations",
    "restarts": "--restarts",
    "clients": "--clients",
    "rounds": "--rounds",
    "local_steps": "--local-steps",
    "seed": "--seed",
    "engine": "--engine",
    "out": "--out",
}
"""The command-line option of every field, used to name the option in error lines."""


class AuditConfigError(JobConfigError):
    """One or more mistakes in an audit's inputs; ``lines`` holds one message per mistake."""


def _names(value: Any) -> Any:
    """``"a,b"`` -> ``("a", "b")``; lists pass through (items stripped when strings)."""
    if isinstance(value, str):
        value = [v for v in value.split(",")]
    if isinstance(value, (list, tuple)):
        return tuple(v.strip() if isinstance(v, str) else v for v in value)
    return value


def _known(kind: str, names: tuple[str, ...], valid: dict[str, str]) -> tuple[str, ...]:
    if not names:
        raise ValueError(f"give at least one {kind}; valid: {', '.join(valid)}")
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"unknown {kind} {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{kind}s repeat: {', '.join(names)}")
    return names


class AuditConfig(BaseModel):
    """The inputs of ``gradinfo audit``; every field is checked when the model is built.

    Attributes:
        model: ``"module:factory"`` building the audited ``nn.Module`` (called with no arguments, under the
            seed), or None for the default small CNN with dropout 0.25 sized to the data.
        data: ``"photos"`` / ``"digits"`` (built-in), a folder of images (one sub-folder per class, or
            flat: one class), or an ``.npz`` with arrays ``x`` ``[N, C, H, W]`` (or ``[N, H, W]``) and
            integer ``y`` ``[N]``.
        attacks, defenses: names from :data:`ATTACKS` and :data:`DEFENSES` (a comma-separated string is
            split).
        batch_sizes: victim batch sizes B, positive ints.
        iterations: attack iterations per cell, >= 1.
        restarts: attack restarts per cell, >= 1.
        clients: federated clients of the utility runs, >= 2.
        rounds: federated rounds of the utility runs, >= 1.
        local_steps: local SGD steps (minibatches of 32) per round, >= 1.
        seed: int >= 0 seeding everything.
        engine: ``"inprocess"`` (default) or ``"flower"`` (utility runs through Flower's simulation engine;
            results equal up to float rounding, Ray's start-up adds about a minute per defense).
        out: the output folder.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)

    model: str | None = None
    data: str = "photos"
    attacks: tuple[str, ...] = DEFAULT_ATTACKS
    defenses: tuple[str, ...] = DEFAULT_DEFENSES
    batch_sizes: tuple[int, ...] = QUICK["batch_sizes"]
    iterations: int = QUICK["iterations"]
    restarts: int = QUICK["restarts"]
    clients: int = 10
    rounds: int = QUICK["rounds"]
    local_steps: int = QUICK["local_steps"]
    seed: int = 0
    engine: str = "inprocess"
    out: OutDir = Path("gradinfo-audit")

    @field_validator("attacks", mode="before")
    @classmethod
    def _split_attacks(cls, value: Any) -> Any:
        return _names(value)

    @field_validator("defenses", mode="before")
    @classmethod
    def _split_defenses(cls, value: Any) -> Any:
        return _names(value)

    @field_validator("attacks")
    @classmethod
    def _check_attacks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _known("attack", value, ATTACKS)

    @field_validator("defenses")
    @classmethod
    def _check_defenses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _known("defense", value, DEFENSES)

    @field_validator("batch_sizes", mode="before")
    @classmethod
    def _check_batch_sizes(cls, value: Any) -> Any:
        items = _names(value)
        if not isinstance(items, tuple) or not items:
            raise ValueError(f"batch sizes must be a list of positive ints such as 1,4; got {value!r}")
        bad = [v for v in items if not is_int(v, 1)]
        if bad:
            raise ValueError(f"batch sizes must be positive ints, got {', '.join(map(repr, bad))}")
        sizes = tuple(int(v) for v in items)
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"batch sizes repeat: {', '.join(map(str, sizes))}")
        return sizes

    @field_validator("iterations", "restarts", "rounds", "local_steps", mode="before")
    @classmethod
    def _check_count(cls, value: Any) -> Any:
        if not is_int(value, 1):
            raise ValueError(f"must be a positive int, got {value!r}")
        return int(value)

    @field_validator("clients", mode="before")
    @classmethod
    def _check_clients(cls, value: Any) -> Any:
        if not is_int(value, 2):
            raise ValueError(f"must be an int >= 2 (a federation), got {value!r}")
        return int(value)

    _check_seed = int_field("seed", minimum=0)

    _check_engine = choice_field("engine", ENGINES, kind="engine")

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str | None) -> str | None:
        if value is None:
            return value
        module, _, factory = value.partition(":")
        if not module or not factory:
            raise ValueError(f"must look like 'module:factory' (e.g. mypkg.nets:small_cnn), got {value!r}")
        return value

    @field_validator("data")
    @classmethod
    def _check_data(cls, value: str) -> str:
        if value in BUILTIN_DATA:
            return value
        path = Path(value).expanduser()
        if path.suffix == ".npz":
            if not path.is_file():
                raise ValueError(f"no such .npz file: {value!r}")
            return value
        if path.is_dir():
            return value
        raise ValueError(
            f"{value!r} is not a built-in dataset ({', '.join(BUILTIN_DATA)}), an existing folder of images "
            "or an .npz file"
        )

    def fingerprint(self) -> dict[str, Any]:
        """Every field that changes results (all but ``out``), as JSON-ready values."""
        return json.loads(self.model_dump_json(exclude={"out"}))


def make_config(**options: Any) -> AuditConfig:
    """The :class:`AuditConfig` of ``options``, its fields by name (None keeps a field's default).

    Raises:
        AuditConfigError: every field mistake at once, one line each, starting with the option it concerns.
    """
    return build_config(AuditConfig, options, job="audit", option=OPTION, error=AuditConfigError)
