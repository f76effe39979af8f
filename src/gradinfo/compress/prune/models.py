"""The models ``gradinfo prune`` takes: builtins, which state their kind, and users' models.

A builtin names a :data:`gradinfo.tasks.TASKS` entry (its seeded builder and arguments; trained before
pruning) or a packaged pretrained folder (``minilm``). A user's model is a Hugging Face folder, a cached
hub id or a ``module:factory`` string (:func:`gradinfo.models.load_model`); its kind is what
``transformers`` declares of it (:func:`model_kind`), never its class name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from gradinfo.core.jobconfig import JobConfigError
from gradinfo.models import load_model, minilm_path
from gradinfo.tasks import TASKS

KIND_NAMES: dict[str, str] = {
    "lm": "causal language model",
    "classifier": "classifier",
    "encoder": "text encoder",
}
"""The model kinds, as messages name them."""

LAYOUTS: dict[str, tuple[str, str]] = {
    "llama": ("a Llama-style model", "q/k/v/o and gate/up/down projections without biases"),
    "gpt2": ("a GPT-2-style model", "fused, biased projections"),
}
"""Decoder layouts of causal LMs: what a model of the layout is, and what its layers hold."""


@dataclass(frozen=True)
class Builtin:
    """A builtin model of the job.

    Attributes:
        kind: ``lm``, ``classifier`` or ``encoder`` (:data:`KIND_NAMES`).
        calibration: its own calibration set (:data:`gradinfo.compress.prune.data.CALIBRATIONS`).
        about: the model in words.
        task: the :data:`gradinfo.tasks.TASKS` entry that builds it (seeded, then trained by the job); None
            for a pretrained model.
        folder: where a pretrained model is loaded from (its tokenizer too); None for a task's model.
        layout: the decoder layout of a causal LM (:data:`LAYOUTS`), else None.
    """

    kind: str
    calibration: str
    about: str
    task: str | None = None
    folder: Callable[[], Path] | None = None
    layout: str | None = None


def _from_task(name: str, layout: str | None = None) -> Builtin:
    task = TASKS[name]
    return Builtin(task.kind, task.data, task.about, task=name, layout=layout)


BUILTINS: dict[str, Builtin] = {
    "tiny-llama": _from_task("tiny-llama", "llama"),
    "tiny-gpt2": _from_task("tiny-gpt2", "gpt2"),
    "minilm": Builtin(
        "encoder",
        "finance",
        "the packaged all-MiniLM-L6-v2 sentence encoder (pretrained, not trained further)",
        folder=minilm_path,
    ),
    "mlp-digits": _from_task("mlp-digits"),
}
"""Builtin model names."""


def trained(spec: str) -> bool:
    """Whether ``spec`` is a builtin the job builds and trains (not a pretrained one, not a user's model)."""
    return spec in BUILTINS and BUILTINS[spec].task is not None


def build_model(spec: str, seed: int) -> tuple[nn.Module, Any]:
    """The model of ``--model spec`` (a builtin seeded and untrained, else as loaded) and, for an encoder,
    its tokenizer (None when it has none).

    Raises:
        JobConfigError: a user's model cannot be loaded (one ``--model`` line).
    """
    builtin = BUILTINS.get(spec)
    if builtin is not None and builtin.task is not None:
        return TASKS[builtin.task].model(seed), None
    if builtin is not None:
        folder = builtin.folder()
        return load_model(str(folder)), _tokenizer(folder)
    try:
        model = load_model(spec)
    except (TypeError, ValueError) as err:
        raise JobConfigError([f"--model: {err}"]) from None
    if model_kind(model) == "encoder" and Path(spec).is_dir():
        try:
            return model, _tokenizer(Path(spec))
        except (OSError, ValueError):
            return model, None
    return model, None


def _tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def skeleton(spec: str, kwargs: dict[str, Any] | None) -> nn.Module:
    """The module a saved state dict fits: a builtin rebuilt from its recorded builder arguments, else the
    model spec loaded again (its weights are then replaced)."""
    if kwargs is not None:
        return replace(TASKS[BUILTINS[spec].task], kwargs=kwargs).model(0)
    builtin = BUILTINS.get(spec)
    return load_model(str(builtin.folder()) if builtin is not None else spec)


def is_hf(model: nn.Module) -> bool:
    """Whether ``model`` is a ``transformers`` model (saved with ``save_pretrained``)."""
    from transformers import PreTrainedModel

    return isinstance(model, PreTrainedModel)


def model_kind(model: nn.Module) -> str:
    """The kind of a user's model, from what ``transformers`` declares of it (not its class name).

    ``lm``: a ``transformers`` model that generates and is not an encoder-decoder (``can_generate()``: a
    causal LM head); ``encoder``: any other ``transformers`` model whose ``encoder.layer`` holds BERT-like
    blocks (what GAPrune prunes); ``classifier``: anything else (a module mapping inputs to logits).
    """
    if not is_hf(model):
        return "classifier"
    if model.can_generate() and not model.config.is_encoder_decoder:
        return "lm"
    if isinstance(getattr(getattr(model, "encoder", None), "layer", None), nn.ModuleList):
        return "encoder"
    return "classifier"


def layout(model: nn.Module) -> str | None:
    """``llama`` or ``gpt2`` (:data:`LAYOUTS`): which decoder layout a causal LM has; None for neither."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if isinstance(layers, nn.ModuleList) and len(layers) and hasattr(model.config, "num_key_value_heads"):
        attn, mlp_ = getattr(layers[0], "self_attn", None), getattr(layers[0], "mlp", None)
        names = ("q_proj", "k_proj", "v_proj", "o_proj"), ("gate_proj", "up_proj", "down_proj")
        if all(isinstance(getattr(attn, n, None), nn.Linear) for n in names[0]) and all(
            isinstance(getattr(mlp_, n, None), nn.Linear) for n in names[1]
        ):
            return "llama"
    if hasattr(getattr(model, "transformer", None), "h"):
        return "gpt2"
    return None


def decoder_weights(model: nn.Module) -> list[str]:
    """The decoder layers' projection weights of a causal LM (no embeddings, head or norms)."""
    llama = layout(model) == "llama"
    layers = model.model.layers if llama else model.transformer.h
    prefix = "model.layers" if llama else "transformer.h"
    return [
        f"{prefix}.{n}.weight"
        for n, m in layers.named_modules()
        if isinstance(getattr(m, "weight", None), Tensor) and m.weight.dim() == 2
    ]
