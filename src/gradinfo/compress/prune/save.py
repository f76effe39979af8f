"""Saving a pruned model into a prune run's ``model/`` folder, and reloading it (:func:`load_job_model`).

Two formats: ``"pretrained"``, ``save_pretrained`` in safetensors (stock and ``Pruned*`` Hugging Face classes,
plus an encoder's tokenizer); ``"state_dict"``, ``model.safetensors`` (shared tensors stored once) and
``rebuild.json``: the model spec, a builtin's builder arguments and, under a method's name, the shapes its
:attr:`~gradinfo.compress.prune.methods.Method.reshape` hook gives the skeleton (MoDeGPT's layer widths).
``gradinfo-prune.json`` names the format and the method.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from safetensors.torch import load_model as load_safetensors
from safetensors.torch import save_model as save_safetensors
from torch import nn

from gradinfo.compress.gaprune import SentenceEncoder
from gradinfo.compress.llm_pruner import load_pruned
from gradinfo.compress.prune.methods import METHODS
from gradinfo.compress.prune.models import BUILTINS, is_hf, skeleton, trained
from gradinfo.models import load_model
from gradinfo.tasks import TASKS

MODEL, MARKER = "model", "gradinfo-prune.json"
"""The model's folder in a run's output folder; the file in it that says how it was saved."""


def save_model(
    spec: str, method: str, model: nn.Module, went: dict[str, Any], folder: Path, tokenizer: Any
) -> str:
    """Write the pruned ``model`` into ``folder`` (replaced if it exists); return the format used.

    Args:
        spec: the run's ``--model``.
        method: the run's ``--method``.
        model: the pruned model (a :class:`SentenceEncoder`'s encoder is saved for an encoder).
        went: what the method removed (its ``run``'s dict), for its ``shapes`` hook.
        folder: where to write.
        tokenizer: an encoder's tokenizer, saved beside a pretrained folder; else None.
    """
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if isinstance(model, SentenceEncoder):
        model = model.encoder
    row = METHODS[method]
    if is_hf(model) and row.pretrained:
        model.save_pretrained(folder, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
        form = "pretrained"
    else:
        save_safetensors(model, str(folder / "model.safetensors"))
        kwargs = TASKS[BUILTINS[spec].task].kwargs if trained(spec) else None
        rebuild = {"model": spec, "kwargs": kwargs, **{m.name: None for m in METHODS.values() if m.shapes}}
        if row.shapes is not None:
            rebuild[row.name] = row.shapes(went)
        (folder / "rebuild.json").write_text(json.dumps(rebuild, indent=2))
        form = "state_dict"
    (folder / MARKER).write_text(json.dumps({"format": form, "method": method}))
    return form


def load_job_model(out: str | Path) -> nn.Module:
    """Reload the pruned model a ``gradinfo prune`` run saved in ``out`` (the run's folder or its ``model/``).

    Args:
        out: the ``--out`` folder of a finished run, or its ``model`` sub-folder.

    Returns:
        The pruned model in eval mode: ``Pruned<Class>`` for LLM-Pruner, the Hugging Face class for models
        whose shapes did not change (OBS, GAPrune: the encoder itself), the rebuilt module otherwise.

    Raises:
        ValueError: ``out`` holds no model saved by ``gradinfo prune``.
    """
    folder = Path(out)
    if (folder / MODEL).is_dir():
        folder = folder / MODEL
    marker = folder / MARKER
    if not marker.is_file():
        raise ValueError(f"{str(out)!r} holds no model saved by gradinfo prune (no {marker.name})")
    saved = json.loads(marker.read_text())
    if saved["format"] == "pretrained":
        config = json.loads((folder / "config.json").read_text())
        if config.get("pruned_base"):
            return load_pruned(folder, attn_implementation="eager").eval()
        return load_model(str(folder)).eval()
    rebuild = json.loads((folder / "rebuild.json").read_text())
    model = skeleton(rebuild["model"], rebuild["kwargs"])
    row = METHODS[saved["method"]]
    if row.reshape is not None:
        row.reshape(model, rebuild[row.name])
    load_safetensors(model, str(folder / "model.safetensors"), strict=True)
    return model.eval()
