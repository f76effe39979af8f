"""What an audit runs: its :class:`AuditConfig` (every option, checked in full before any work starts).

Every field mistake (an unknown attack, a batch size of 0, a missing ``.npz``, a model that is not
``module:factory``) is collected and raised once as :class:`~gradinfo.core.jobconfig.JobConfigError`, one line
per mistake, each naming the command-line option it concerns; the resources themselves (images, arrays, the
model a factory builds) are checked by :func:`gradinfo.privacy.audit.setup.prepare`, with the same error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from gradinfo.core.jobconfig import (
    JobConfig,
    OutDir,
    Preset,
    choice_field,
    int_field,
    is_int,
    names_field,
    split_names,
)

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
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
BUILTIN_DATA: tuple[str, ...] = ("photos", "digits")
ENGINES: dict[str, str] = {
    "inprocess": "gradinfo's in-process FedAvg loop",
    "flower": "Flower's simulation engine, on Ray",
}
"""How utility runs train, by name."""


class AuditConfig(JobConfig):
    """The inputs of ``gradinfo audit``; every field is checked when the config is built.

    The defaults are a grid sized for <= 5 minutes on 2 CPU cores; the preset ``full`` (``--full``) is the
    bigger one.

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

    job = "audit"
    presets: ClassVar[dict[str, Preset]] = {
        "full": Preset(
            "The bigger grid",
            {"batch_sizes": (1, 2, 4, 8), "iterations": 400, "rounds": 30, "local_steps": 6, "restarts": 2},
        )
    }

    model: str | None = Field(
        None, description="'module:factory' building your nn.Module (default: a small CNN with dropout)."
    )
    data: str = Field(
        "photos",
        description=f"{', '.join(BUILTIN_DATA)}, a folder of images (a sub-folder per class) or an .npz with "
        "x [N, C, H, W] and y [N].",
    )
    attacks: tuple[str, ...] = Field(DEFAULT_ATTACKS, description=f"Comma-separated: {', '.join(ATTACKS)}.")
    defenses: tuple[str, ...] = Field(tuple(DEFENSES), description=f"Comma-separated: {', '.join(DEFENSES)}.")
    batch_sizes: tuple[int, ...] = Field((1, 4), description="Comma-separated victim batch sizes.")
    iterations: int = Field(200, description="Attack iterations per cell.")
    restarts: int = Field(1, description="Attack restarts per cell.")
    clients: int = Field(10, description="Federated clients.")
    rounds: int = Field(15, description="Federated rounds of the utility runs.")
    local_steps: int = Field(6, description="Local steps per round.")
    seed: int = Field(0, description="Seed of everything.")
    engine: str = Field(
        "inprocess", description="Utility runs: " + "; ".join(f"{k} ({v})" for k, v in ENGINES.items()) + "."
    )
    out: OutDir = Field(Path("gradinfo-audit"), description="Output folder (resumed if it holds this audit).")

    _check_attacks = names_field("attacks", ATTACKS, kind="attack")
    _check_defenses = names_field("defenses", DEFENSES, kind="defense")
    _check_seed = int_field("seed", minimum=0)
    _check_engine = choice_field("engine", ENGINES, kind="engine")

    @field_validator("batch_sizes", mode="before")
    @classmethod
    def _check_batch_sizes(cls, value: Any) -> Any:
        items = split_names(value)
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
