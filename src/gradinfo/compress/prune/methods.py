"""The pruning methods of ``gradinfo prune``, one :class:`Method` row each in :data:`METHODS`.

A row says what the method removes, which model kinds it prunes, its default calibration set and examples,
what it checks of a model before any work, how it runs, and how its result is saved and reloaded. Adding a
method = a run function, a row.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from gradinfo.compress.gaprune import gaprune
from gradinfo.compress.llm_pruner import llm_pruner
from gradinfo.compress.modegpt import modegpt, rebuild
from gradinfo.compress.obs_prune import obs_prune
from gradinfo.compress.prune.data import GROUP, Task
from gradinfo.compress.prune.models import decoder_weights, layout

OBS_DAMPING, OBS_BLOCK = 1e-5, 128
"""M-FAC's damping and block size of the OBS method."""

DEFAULT_IMPORTANCE: str = inspect.signature(llm_pruner).parameters["importance"].default
"""LLM-Pruner's importance kind when ``--importance`` is not given (its own default)."""

Settings = Mapping[str, Any]
"""A run's resolved settings (:meth:`PruneConfig.fingerprint`): ``ratio``, ``seed``, ``examples``,
``importance``, ..."""


def _fine(model: nn.Module, kind: str, tokenizer: Any) -> list[str]:
    return []


@dataclass(frozen=True)
class Method:
    """One pruning method of the job.

    Attributes:
        name: the ``--method`` name.
        removes: what it removes, one line (the report's first sentence).
        kinds: the model kinds it prunes (``lm``, ``classifier``, ``encoder``).
        calibration: the calibration set of a user's model when ``--calibration`` is not given.
        examples: calibration examples when ``--examples`` is not given.
        run: ``run(model, task, settings) -> (pruned model, what went as JSON-ready dict)``.
        check: ``check(model, kind, tokenizer) -> lines``: what the method cannot prune in a model that
            fits its kind and data, one ``--model`` line each (checked before any work).
        layouts: the decoder layouts of causal LMs it prunes (:data:`~.models.LAYOUTS`; empty: any).
        structural: it shrinks shapes and zeroes nothing, so LoRA recovery (``--lora-steps``) may follow.
        importance: it takes an importance kind (``--importance``).
        min_examples: the least ``--examples`` it runs on, and what they are, for the message.
        pretrained: a ``transformers`` result keeps a stock (or ``Pruned*``) class and is saved with
            ``save_pretrained``; else the state dict is saved and the model rebuilt.
        shapes: ``shapes(what went) -> JSON`` recorded in ``rebuild.json`` under :attr:`name` to rebuild
            the pruned shapes; None when the skeleton is the dense model.
        reshape: ``reshape(skeleton, recorded shapes)``, in place, before the state dict is loaded.
    """

    name: str
    removes: str
    kinds: tuple[str, ...]
    calibration: str
    examples: int
    run: Callable[[nn.Module, Task, Settings], tuple[nn.Module, dict[str, Any]]]
    check: Callable[[nn.Module, str, Any], list[str]] = _fine
    layouts: tuple[str, ...] = ()
    structural: bool = False
    importance: bool = False
    min_examples: tuple[int, str] = (1, "examples")
    pretrained: bool = True
    shapes: Callable[[dict[str, Any]], Any] | None = None
    reshape: Callable[[nn.Module, Any], None] | None = None


def _run_llm_pruner(model: nn.Module, task: Task, settings: Settings) -> tuple[nn.Module, dict[str, Any]]:
    pruned, report = llm_pruner(
        model, task.calibration, settings["ratio"], importance=settings["importance"], seed=settings["seed"]
    )
    removed = {k: list(v) for k, v in report.removed.items()}
    return pruned, {"layers_pruned": list(report.layers), "removed": removed}


def _check_llm_pruner(model: nn.Module, kind: str, tokenizer: Any) -> list[str]:
    n_layers = getattr(model.config, "num_hidden_layers", 0)
    if layout(model) is None:
        return [
            f"--model: llm_pruner finds no attention/MLP groups in {type(model).__name__}; it prunes "
            "Llama-style (q/k/v/o_proj, gate/up/down_proj) and GPT-2 (transformer.h) models"
        ]
    if n_layers < 3:
        return [
            f"--model: llm_pruner keeps the first and last layers and the model has {n_layers}; nothing "
            "is left to prune (give a model with >= 3 layers)"
        ]
    return []


def _run_modegpt(model: nn.Module, task: Task, settings: Settings) -> tuple[nn.Module, dict[str, Any]]:
    pruned, report = modegpt(model, [x for x, _ in task.calibration], settings["ratio"])
    layers = [
        {"layer": i, "ratio": r, "mlp_width": w, "qk_dim": q, "vo_rank": v}
        for i, (r, w, q, v) in enumerate(
            zip(report.layer_ratios, report.mlp_width, report.qk_dim, report.vo_rank, strict=True)
        )
    ]
    return pruned, {"layers": layers, "compression_of_linear_params": report.compression}


def _check_modegpt(model: nn.Module, kind: str, tokenizer: Any) -> list[str]:
    if layout(model) != "llama":
        return [
            f"--model: modegpt needs a Llama-style model (q/k/v/o_proj and gate/up/down_proj as "
            f"nn.Linear); {type(model).__name__} is not one"
        ]
    biased = [
        n for n, m in model.model.layers.named_modules() if isinstance(m, nn.Linear) and m.bias is not None
    ]
    return [f"--model: modegpt cannot prune biased projections ({', '.join(biased[:3])})"] if biased else []


def _modegpt_shapes(went: dict[str, Any]) -> list[dict[str, int]]:
    return [{k: layer[k] for k in ("mlp_width", "qk_dim", "vo_rank")} for layer in went["layers"]]


def _run_obs(model: nn.Module, task: Task, settings: Settings) -> tuple[nn.Module, dict[str, Any]]:
    pruned, report = obs_prune(
        model,
        task.calibration,
        task.loss,
        settings["ratio"],
        params=decoder_weights(model) if task.kind == "lm" else None,
        m=settings["examples"],
        damping=OBS_DAMPING,
        block_size=OBS_BLOCK,
    )
    per_param = {n: float((~mask).float().mean()) for n, mask in report.masks.items()}
    return pruned, {"sparsity": report.sparsity, "pruned_share_per_weight": per_param}


def _check_obs(model: nn.Module, kind: str, tokenizer: Any) -> list[str]:
    if kind == "classifier" and not any(p.dim() >= 2 for p in model.parameters()):
        return ["--model: obs prunes weight matrices and the model has none"]
    return []


def _run_gaprune(model: nn.Module, task: Task, settings: Settings) -> tuple[nn.Module, dict[str, Any]]:
    pruned, report = gaprune(model, task.calibration, task.general, settings["ratio"])
    per_param = {n.removeprefix("encoder."): v for n, v in report.per_param.items()}
    return pruned, {"sparsity": report.pruned / report.total, "pruned_share_per_weight": per_param}


def _check_gaprune(model: nn.Module, kind: str, tokenizer: Any) -> list[str]:
    if tokenizer is None:
        return [
            "--model: gaprune needs the encoder's tokenizer; save it in the model folder "
            "(tokenizer.save_pretrained(folder))"
        ]
    return []


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "llm_pruner",
            "LLM-Pruner: heads and MLP channels of lowest gradient importance (structural)",
            ("lm",), "text", 10, _run_llm_pruner, _check_llm_pruner,
            layouts=("llama", "gpt2"), structural=True, importance=True,
        ),
        Method(
            "modegpt",
            "MoDeGPT: Nystrom / CR / SVD modular decomposition from activations (structural, no backward)",
            ("lm",), "text", 32, _run_modegpt, _check_modegpt,
            layouts=("llama",), structural=True, pretrained=False, shapes=_modegpt_shapes,
            reshape=rebuild,
        ),
        Method(
            "obs",
            "M-FAC optimal brain surgeon: weights of least OBS saliency, rest updated (unstructured)",
            ("lm", "classifier"), "digits", 64, _run_obs, _check_obs,
        ),
        Method(
            "gaprune",
            "GAPrune: encoder MLP weights of lowest Domain Alignment Importance (unstructured)",
            ("encoder",), "finance", 32, _run_gaprune, _check_gaprune,
            min_examples=(GROUP, "pairs (one group of in-batch negatives)"),
        ),
    )
}  # fmt: skip
"""Method names and their rows. Default examples: LLM-Pruner's 10 windows of 64 bytes; M-FAC's m = 64
gradients; GAPrune's 32 domain and 32 general pairs."""
