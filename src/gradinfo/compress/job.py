"""``gradinfo prune``: prune a model with one compression method, save it reloadably, report what it cost.

One run loads (and, for a builtin, briefly trains) a model, measures it dense, prunes it with one method at
one ratio on calibration data, optionally recovers it with LoRA, measures it again, saves it and writes a
report. Methods (``--method``) and what ``--ratio`` means for each:

===========  ==================================================================================  ============
method       what goes                                                                           models
===========  ==================================================================================  ============
llm_pruner   ``floor(ratio n)`` attention heads (KV groups) and MLP channels of every layer but   causal LMs
             the first and last (:func:`gradinfo.compress.llm_pruner.llm_pruner`)                Llama, GPT-2
modegpt      the mean share ``ratio`` of each layer's MLP width and query-key / value-output      Llama-style,
             head dimensions (:func:`gradinfo.compress.modegpt`; no backward pass)                no biases
obs          the share ``ratio`` of the weights, one shot, by OBS saliency with M-FAC's inverse   classifiers,
             Fisher (:func:`gradinfo.compress.obs_prune`); LMs: the decoder layers' projections   causal LMs
gaprune      the share ``ratio`` of the encoder's MLP weights by Domain Alignment Importance      text
             (:func:`gradinfo.compress.gaprune`)                                                  encoders
===========  ==================================================================================  ============

Models (``--model``): a builtin (:data:`BUILTINS`), a local Hugging Face folder, a cached hub id or a
``module:factory`` string (:func:`gradinfo.models.load_model`). Builtins other than ``minilm`` are seeded
random networks trained for ``--train-steps`` AdamW steps (default :data:`TRAIN_STEPS`) on their calibration
set's train split before pruning; ``--train-steps 0`` prunes the random initialisation. Users' models are
used as loaded.

Calibration sets (``--calibration``), each fixing the task and its metric:

========  =======================================================================================  ========
name      data                                                                                     metric
========  =======================================================================================  ========
text      byte-level ``text`` corpus (Python stdlib sources), 64-byte windows                      perplexity
digits    scikit-learn 8x8 digits ``[N, 1, 8, 8]``, 10 classes                                      accuracy
mnist1d   MNIST-1D ``[N, 40]``, 10 classes                                                         accuracy
finance   templated finance query-passage pairs (domain) and stdlib docstring pairs (general),      MRR x100
          InfoNCE with in-batch negatives; held-out finance pairs for retrieval
========  =======================================================================================  ========

Output folder: ``manifest.json`` (job, config, digest; written first), ``dense.json`` (the dense model's
metrics), ``model/`` (the pruned model: a ``save_pretrained`` folder in safetensors when the result is a
stock or ``Pruned*`` Hugging Face model, else ``model.safetensors`` + ``rebuild.json``), ``pruned.json``
(what went and the pruned model's metrics; written only after ``model/`` is complete), ``report.json`` and
``report.md``. :func:`load_job_model` reloads the model from the folder. A rerun with the same config reuses
every finished stage (a finished run returns at once); a non-empty folder without our manifest, or one made
with another config, raises :class:`PruneError` and nothing in it is touched.

Latency per token (per example for classifiers) is the median wall time of :data:`TIMED_PASSES` forward
passes (after one warm-up) over a fixed evaluation batch, divided by its tokens, on this machine's CPU.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, field_validator
from safetensors.torch import load_model as load_safetensors
from safetensors.torch import save_model as save_safetensors
from torch import Tensor, nn

from gradinfo import __version__
from gradinfo.compress.gaprune import SentenceEncoder, contrastive_batches, gaprune, info_nce
from gradinfo.compress.llm_pruner import IMPORTANCES, llm_pruner, lm_loss, lora_recover
from gradinfo.compress.llm_pruner import load_pruned as load_llm_pruned
from gradinfo.compress.modegpt import ModularAttention, modegpt
from gradinfo.compress.obs_prune import obs_prune
from gradinfo.core.jobconfig import JobConfigError, OutDir, build_config, choice_field, int_field
from gradinfo.core.jobdir import MANIFEST, JobDirError, open_job_dir, write_atomic
from gradinfo.core.progress import job_progress, log_done
from gradinfo.datasets import load
from gradinfo.datasets.pairs import docstring_pairs, finance_pairs
from gradinfo.models import load_model, minilm_path, mlp, tiny_gpt2, tiny_llama

__all__ = [
    "BUILTINS",
    "CALIBRATIONS",
    "METHODS",
    "PruneConfig",
    "PruneConfigError",
    "PruneError",
    "PruneResult",
    "check_model",
    "load_job_model",
    "make_config",
    "prune",
]

METHODS: dict[str, str] = {
    "llm_pruner": "LLM-Pruner: heads and MLP channels of lowest gradient importance (structural)",
    "modegpt": "MoDeGPT: Nystrom / CR / SVD modular decomposition from activations (structural, no backward)",
    "obs": "M-FAC optimal brain surgeon: weights of least OBS saliency, rest updated (unstructured)",
    "gaprune": "GAPrune: encoder MLP weights of lowest Domain Alignment Importance (unstructured)",
}
"""Method names, with what each removes."""

BUILTINS: dict[str, dict[str, Any]] = {
    "tiny-llama": {
        "kind": "lm",
        "build": tiny_llama,
        "kwargs": {"hidden_size": 64, "num_layers": 4, "num_heads": 8, "num_kv_heads": 8,
                   "intermediate_size": 256},
        "calibration": "text",
        "about": "LlamaForCausalLM, hidden 64, 4 layers, 8 heads, SwiGLU 256, byte vocabulary",
    },
    "tiny-gpt2": {
        "kind": "lm",
        "build": tiny_gpt2,
        "kwargs": {"hidden_size": 64, "num_layers": 4, "num_heads": 8},
        "calibration": "text",
        "about": "GPT2LMHeadModel, hidden 64, 4 layers, 8 heads, byte vocabulary",
    },
    "minilm": {
        "kind": "encoder",
        "build": None,
        "kwargs": {},
        "calibration": "finance",
        "about": "the packaged all-MiniLM-L6-v2 sentence encoder (pretrained, not trained further)",
    },
    "mlp-digits": {
        "kind": "classifier",
        "build": mlp,
        "kwargs": {"in_features": 64, "num_classes": 10, "hidden": [128, 64]},
        "calibration": "digits",
        "about": "MLP 64-128-64-10 for the 8x8 digits",
    },
}  # fmt: skip
"""Builtin model names: the task kind, builder and arguments, default calibration set."""

CALIBRATIONS: dict[str, str] = {
    "text": "lm",
    "digits": "classifier",
    "mnist1d": "classifier",
    "finance": "encoder",
}
"""Calibration set names and the kind of model each fits."""

SUPPORTED: dict[str, tuple[str, ...]] = {
    "llm_pruner": ("lm",),
    "modegpt": ("lm",),
    "obs": ("lm", "classifier"),
    "gaprune": ("encoder",),
}
"""The model kinds each method prunes in this job."""

DEFAULT_CALIBRATION: dict[str, str] = {
    "llm_pruner": "text",
    "modegpt": "text",
    "obs": "digits",
    "gaprune": "finance",
}
"""The calibration set of a user's model when ``--calibration`` is not given."""

DEFAULT_EXAMPLES: dict[str, int] = {"llm_pruner": 10, "modegpt": 32, "obs": 64, "gaprune": 32}
"""Calibration examples per method when ``--examples`` is not given (LLM-Pruner's 10 windows of 64 bytes;
M-FAC's m = 64 gradients; GAPrune's 32 domain and 32 general pairs)."""

TRAIN_STEPS = 200
"""AdamW steps a builtin model is trained for before pruning, unless ``--train-steps`` says otherwise."""
TRAIN_LR, TRAIN_BATCH = 3e-3, 16
BLOCK, TEXT_BYTES, EVAL_WINDOWS, EVAL_EXAMPLES, EVAL_PAIRS, GROUP = 64, 200_000, 64, 512, 128, 4
TIMED_PASSES = 5
"""Forward passes timed for the latency (their median is reported)."""
OBS_DAMPING, OBS_BLOCK = 1e-5, 128
DENSE, PRUNED, MODEL, REPORT_JSON, REPORT_MD = (
    "dense.json",
    "pruned.json",
    "model",
    "report.json",
    "report.md",
)
JOB = "prune"

OPTION = {
    "model": "--model",
    "method": "--method",
    "ratio": "--ratio",
    "calibration": "--calibration",
    "importance": "--importance",
    "lora_steps": "--lora-steps",
    "train_steps": "--train-steps",
    "examples": "--examples",
    "seed": "--seed",
    "out": "--out",
}
"""The command-line option of every field, used to name the option in error lines."""


class PruneConfigError(JobConfigError):
    """One or more mistakes in a prune job's inputs; ``lines`` holds one message per mistake."""


class PruneError(JobDirError):
    """The output folder cannot be used: not empty and not ours, made with another config, or corrupt."""


# ---------------------------------------------------------------- the config


class PruneConfig(BaseModel):
    """The inputs of ``gradinfo prune``; each field is checked on its own when the model is built.

    Cross-field checks (method against model and calibration set) are in :func:`make_config`; checks that
    need the model loaded are in :func:`check_model`.

    Attributes:
        model: a builtin name (:data:`BUILTINS`), a Hugging Face folder or cached id, or ``module:factory``.
        method: a name from :data:`METHODS`.
        ratio: what the method removes (see the module docstring), in (0, 1).
        calibration: a name from :data:`CALIBRATIONS`; None: the builtin's own, else
            :data:`DEFAULT_CALIBRATION` of the method.
        importance: LLM-Pruner's importance kind (``taylor`` when None); only with ``llm_pruner``.
        lora_steps: LoRA recovery steps after pruning (0: none); structural methods on LMs only.
        train_steps: training steps of a builtin before pruning (None: :data:`TRAIN_STEPS`).
        examples: calibration examples (None: :data:`DEFAULT_EXAMPLES` of the method).
        seed: seeds model, training, calibration draw and random scores.
        out: the output folder.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)

    model: str = "tiny-llama"
    method: str = "llm_pruner"
    ratio: float = 0.3
    calibration: str | None = None
    importance: str | None = None
    lora_steps: int = 0
    train_steps: int | None = None
    examples: int | None = None
    seed: int = 0
    out: OutDir = Path("gradinfo-prune")

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        looks_external = ":" in value or "/" in value or Path(value).expanduser().is_dir()
        if value not in BUILTINS and not looks_external:
            raise ValueError(
                f"unknown builtin model {value!r}; builtins: {', '.join(BUILTINS)}; or give a Hugging Face "
                "folder or id, or a 'module:factory' string"
            )
        return value

    _check_method = choice_field("method", METHODS, kind="method")

    @field_validator("ratio", mode="before")
    @classmethod
    def _check_ratio(cls, value: Any) -> Any:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(value, bool) or not 0 < number < 1:
            raise ValueError(f"must be a number in (0, 1) (the share removed), got {value!r}")
        return number

    _check_calibration = choice_field("calibration", CALIBRATIONS, kind="calibration dataset")
    _check_importance = choice_field("importance", IMPORTANCES, kind="importance")

    _check_count = int_field("lora_steps", "seed", minimum=0)
    _check_train_steps = int_field("train_steps", minimum=0, optional=True)
    _check_examples = int_field("examples", minimum=1, optional=True)

    def dataset(self) -> str:
        """The calibration set of this run (when not given: the builtin's own, else the method's default)."""
        if self.calibration is not None:
            return self.calibration
        return (
            BUILTINS[self.model]["calibration"]
            if self.model in BUILTINS
            else DEFAULT_CALIBRATION[self.method]
        )

    def fingerprint(self) -> dict[str, Any]:
        """Every setting that changes results (all but ``out``), resolved, as JSON-ready values."""
        builtin = self.model in BUILTINS and BUILTINS[self.model]["build"] is not None
        return {
            "model": self.model,
            "method": self.method,
            "ratio": self.ratio,
            "calibration": self.dataset(),
            "importance": (self.importance or "taylor") if self.method == "llm_pruner" else None,
            "lora_steps": self.lora_steps,
            "train_steps": (TRAIN_STEPS if self.train_steps is None else self.train_steps) if builtin else 0,
            "examples": self.examples or DEFAULT_EXAMPLES[self.method],
            "seed": self.seed,
        }


def make_config(**options: Any) -> PruneConfig:
    """The :class:`PruneConfig` of ``options``, its fields by name (None keeps a field's default).

    Raises:
        PruneConfigError: the field mistakes, one line each, starting with the option they concern;
            else the mistakes across fields (:func:`_cross_checks`: method against model and data).
    """
    config = build_config(PruneConfig, options, job="prune", option=OPTION, error=PruneConfigError)
    lines = _cross_checks(config)
    if lines:
        raise PruneConfigError(lines)
    return config


def _cross_checks(config: PruneConfig) -> list[str]:
    """Method against model kind and calibration set, options that only some methods take."""
    lines = []
    method, kind = config.method, CALIBRATIONS[config.dataset()]
    builtin_unfit = config.model in BUILTINS and BUILTINS[config.model]["kind"] not in SUPPORTED[method]
    if kind not in SUPPORTED[method] and not (builtin_unfit and config.calibration is None):
        lines.append(
            f"--calibration: {method} prunes {' or '.join(_KIND_NAMES[k] for k in SUPPORTED[method])}, "
            f"but {config.dataset()!r} is a {_KIND_NAMES[kind]} dataset; use "
            f"{' or '.join(repr(c) for c, k in CALIBRATIONS.items() if k in SUPPORTED[method])}"
        )
    if config.model in BUILTINS:
        own = BUILTINS[config.model]["kind"]
        if own not in SUPPORTED[method]:
            fits = [b for b, spec in BUILTINS.items() if spec["kind"] in SUPPORTED[method]]
            lines.append(
                f"--model: {method} cannot prune {config.model!r} (a {_KIND_NAMES[own]}); it prunes "
                f"{' or '.join(_KIND_NAMES[k] for k in SUPPORTED[method])}, e.g. {', '.join(fits)}"
            )
        elif own != kind and kind in SUPPORTED[method]:
            lines.append(
                f"--calibration: {config.dataset()!r} does not fit {config.model!r} (a {_KIND_NAMES[own]}); "
                f"use {' or '.join(repr(c) for c, k in CALIBRATIONS.items() if k == own)}"
            )
        elif method == "modegpt" and config.model == "tiny-gpt2":
            lines.append(
                "--model: modegpt needs a Llama-style model (q/k/v/o and gate/up/down projections without "
                "biases); 'tiny-gpt2' has fused, biased projections: use 'tiny-llama'"
            )
        if config.train_steps is not None and BUILTINS[config.model]["build"] is None:
            lines.append(
                f"--train-steps: {config.model!r} is pretrained and not trained by this job; drop it"
            )
    elif config.train_steps is not None:
        lines.append(
            "--train-steps: only builtin models are trained by this job; your model is used as loaded"
        )
    if config.importance is not None and method != "llm_pruner":
        lines.append(f"--importance: only llm_pruner takes an importance kind, not {method}; drop it")
    if config.lora_steps and method not in ("llm_pruner", "modegpt"):
        lines.append(
            f"--lora-steps: LoRA recovery merges a dense update that would refill the weights {method} "
            "zeroed; use it with llm_pruner or modegpt"
        )
    if config.method == "gaprune" and config.examples is not None and config.examples < GROUP:
        lines.append(f"--examples: gaprune needs at least {GROUP} pairs (one group of in-batch negatives)")
    return lines


_KIND_NAMES = {"lm": "causal language model", "classifier": "classifier", "encoder": "text encoder"}


# ---------------------------------------------------------------- models


def _build(config: PruneConfig) -> tuple[nn.Module, Any]:
    """The model (untrained builtin or as loaded) and, for encoders, its tokenizer."""
    if config.model == "minilm":
        from transformers import AutoTokenizer

        path = minilm_path()
        return load_model(str(path)), AutoTokenizer.from_pretrained(path, local_files_only=True)
    if config.model in BUILTINS:
        spec = BUILTINS[config.model]
        return spec["build"](**_kwargs(config.model), seed=config.seed), None
    try:
        model = load_model(config.model)
    except (TypeError, ValueError) as err:
        raise PruneConfigError([f"--model: {err}"]) from None
    tokenizer = None
    if _kind(model) == "encoder" and Path(config.model).is_dir():
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(config.model, local_files_only=True)
        except (OSError, ValueError):
            tokenizer = None
    return model, tokenizer


def _kwargs(builtin: str) -> dict[str, Any]:
    kwargs = dict(BUILTINS[builtin]["kwargs"])
    if "hidden" in kwargs:
        kwargs["hidden"] = tuple(kwargs["hidden"])
    return kwargs


def _kind(model: nn.Module) -> str:
    """``lm`` (a ``transformers`` causal LM), ``encoder`` (a BERT-like encoder) or ``classifier``."""
    name = type(model).__name__
    if hasattr(model, "config") and (name.endswith("ForCausalLM") or name.endswith("LMHeadModel")):
        return "lm"
    if hasattr(model, "config") and hasattr(getattr(model, "encoder", None), "layer"):
        return "encoder"
    return "classifier"


def _layout(model: nn.Module) -> str:
    """``llama``, ``gpt2`` or ``other``: which decoder layout a causal LM has."""
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
    return "other"


def check_model(config: PruneConfig, model: nn.Module, tokenizer: Any = None) -> None:
    """Check that ``config.method`` can prune ``model`` on ``config.dataset()``, before any work.

    Raises:
        PruneConfigError: one line per problem (architecture the method cannot prune, a model that does
            not fit the calibration data, layers it cannot prune).
    """
    kind, data_kind, method = _kind(model), CALIBRATIONS[config.dataset()], config.method
    lines = []
    if kind not in SUPPORTED[method]:
        lines.append(
            f"--model: {method} cannot prune {type(model).__name__} (a {_KIND_NAMES[kind]}); it prunes "
            f"{' or '.join(_KIND_NAMES[k] for k in SUPPORTED[method])}"
        )
    elif kind != data_kind:
        lines.append(
            f"--calibration: {config.dataset()!r} is {_KIND_NAMES[data_kind]} data, the model is a "
            f"{_KIND_NAMES[kind]}; use {' or '.join(repr(c) for c, k in CALIBRATIONS.items() if k == kind)}"
        )
    elif kind == "lm":
        layout, n_layers = _layout(model), getattr(model.config, "num_hidden_layers", 0)
        vocab = getattr(model.config, "vocab_size", 0)
        if vocab < 256:
            lines.append(f"--model: the text set holds byte ids 0-255, the model's vocabulary is {vocab}")
        if method == "llm_pruner" and layout == "other":
            lines.append(
                f"--model: llm_pruner finds no attention/MLP groups in {type(model).__name__}; it prunes "
                "Llama-style (q/k/v/o_proj, gate/up/down_proj) and GPT-2 (transformer.h) models"
            )
        elif method == "llm_pruner" and n_layers < 3:
            lines.append(
                f"--model: llm_pruner keeps the first and last layers and the model has {n_layers}; nothing "
                "is left to prune (give a model with >= 3 layers)"
            )
        if method == "modegpt":
            if layout != "llama":
                lines.append(
                    f"--model: modegpt needs a Llama-style model (q/k/v/o_proj and gate/up/down_proj as "
                    f"nn.Linear); {type(model).__name__} is not one"
                )
            else:
                biased = [
                    n
                    for n, m in model.model.layers.named_modules()
                    if isinstance(m, nn.Linear) and m.bias is not None
                ]
                if biased:
                    lines.append(
                        f"--model: modegpt cannot prune biased projections ({', '.join(biased[:3])})"
                    )
    elif kind == "classifier":
        data = load(config.dataset(), split="test", seed=config.seed)
        try:
            with torch.no_grad():
                logits = model(data.x[:2])
            ok = isinstance(logits, Tensor) and logits.shape == (2, len(data.classes))
            problem = "" if ok else f"it returned {getattr(logits, 'shape', type(logits).__name__)}"
        except Exception as err:  # any failure of the user's forward is reported as one line
            problem = f"its forward failed ({type(err).__name__}: {str(err).splitlines()[0][:120]})"
        if problem:
            lines.append(
                f"--model: on {config.dataset()!r} inputs {tuple(data.x.shape[1:])} the model must return "
                f"logits [B, {len(data.classes)}]; {problem}"
            )
        if not any(p.dim() >= 2 for p in model.parameters()):
            lines.append("--model: obs prunes weight matrices and the model has none")
    elif kind == "encoder" and tokenizer is None:
        lines.append(
            "--model: gaprune needs the encoder's tokenizer; save it in the model folder "
            "(tokenizer.save_pretrained(folder))"
        )
    if lines:
        raise PruneConfigError(lines)


# ---------------------------------------------------------------- data and metrics


@dataclass(frozen=True)
class Task:
    """The data of one run: training set (builtins), calibration batches, evaluation set, loss."""

    kind: str
    train: tuple[Tensor, Tensor] | None
    calibration: list[tuple[Tensor, Tensor]]
    general: list[tuple[Tensor, Tensor]] | None
    evaluation: Any
    loss: Callable[[Any, Tensor], Tensor]


def load_task(config: PruneConfig, tokenizer: Any = None) -> Task:
    """Seeded, offline data of the run's calibration set (see the module docstring)."""
    name, seed = config.dataset(), config.seed
    count = config.fingerprint()["examples"]
    gen = torch.Generator().manual_seed(seed)
    if name == "text":
        train = load("text", split="train", seed=seed, block_size=BLOCK, max_bytes=TEXT_BYTES)
        test = load("text", split="test", seed=seed, block_size=BLOCK, max_bytes=BLOCK * EVAL_WINDOWS + 1)
        pick = torch.randperm(len(train.x), generator=gen)[:count]
        return Task(
            "lm",
            (train.x, train.y),
            [(train.x[pick], train.y[pick])],
            None,
            (test.x[:EVAL_WINDOWS], test.y[:EVAL_WINDOWS]),
            lm_loss,
        )
    if name in ("digits", "mnist1d"):
        train, test = (load(name, split=s, seed=seed) for s in ("train", "test"))
        pick = torch.randperm(len(train.x), generator=gen)[:count]
        return Task(
            "classifier",
            (train.x, train.y),
            [(train.x[pick], train.y[pick])],
            None,
            (test.x[:EVAL_EXAMPLES], test.y[:EVAL_EXAMPLES]),
            nn.functional.cross_entropy,
        )
    finance, general_pairs = _text_pairs(seed, count // GROUP * GROUP)
    usable = count // GROUP * GROUP
    domain = contrastive_batches(tokenizer, finance[:usable], group=GROUP)
    general = contrastive_batches(tokenizer, general_pairs, group=GROUP)
    held_out = finance[usable : usable + EVAL_PAIRS]
    queries = tokenizer(
        [q for q, _ in held_out], padding=True, truncation=True, max_length=64, return_tensors="pt"
    )
    passages = tokenizer(
        [p for _, p in held_out], padding=True, truncation=True, max_length=64, return_tensors="pt"
    )
    return Task("encoder", None, domain, general, (queries["input_ids"], passages["input_ids"]), info_nce)


@functools.cache
def _text_pairs(seed: int, count: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """GAPrune's claim-check pairs: every finance pair, and ``count`` stdlib docstring pairs (parsing the
    stdlib takes seconds, so they are kept for the process)."""
    return finance_pairs(seed), docstring_pairs(seed, count)


def _forward(model: nn.Module, kind: str, x: Tensor) -> Tensor:
    if kind == "lm":
        return model(input_ids=x).logits  # [B, T, V]
    return model(x)  # [B, K] for classifiers; [B, K, D] embeddings for a SentenceEncoder


def evaluate(model: nn.Module, task: Task) -> dict[str, float]:
    """The task's metric: perplexity (LM), accuracy (classifier) or MRR x100 (encoder); and the loss."""
    model.eval()
    with torch.no_grad():
        if task.kind == "lm":
            x, y = task.evaluation
            loss = float(lm_loss(model(input_ids=x), y))
            return {"loss": loss, "perplexity": math.exp(loss)}
        if task.kind == "classifier":
            x, y = task.evaluation
            logits = model(x)  # [N, K]
            return {
                "loss": float(nn.functional.cross_entropy(logits, y)),
                "accuracy": float((logits.argmax(-1) == y).float().mean()),
            }
        queries, passages = task.evaluation
        q = model(queries[:, None])[:, 0]  # [N, D]
        p = model(passages[:, None])[:, 0]  # [N, D]
        sim = q @ p.T  # [N, N]
        rank = (sim > sim.diag().unsqueeze(1)).sum(1) + 1  # [N]
        return {"mrr": float((1.0 / rank.double()).mean()) * 100}


def latency(model: nn.Module, task: Task) -> float:
    """Median milliseconds per token (per example for classifiers) of :data:`TIMED_PASSES` forward passes."""
    if task.kind == "lm":
        x = task.evaluation[0][:8]  # [8, T]
        units = x.numel()
    elif task.kind == "classifier":
        x = task.evaluation[0][:256]  # [B, ...]
        units = x.shape[0]
    else:
        x = task.evaluation[0][:16, None]  # [16, 1, T]
        units = x.numel()
    model.eval()
    times = []
    with torch.no_grad():
        for i in range(TIMED_PASSES + 1):
            began = time.perf_counter()
            _forward(model, task.kind, x)
            if i:
                times.append(time.perf_counter() - began)
    return 1e3 * statistics.median(times) / units


def _params(model: nn.Module) -> dict[str, int]:
    params = list(model.parameters())
    return {
        "parameters": sum(p.numel() for p in params),
        "nonzero": sum(int(p.count_nonzero()) for p in params),
    }


def measure(model: nn.Module, task: Task) -> dict[str, Any]:
    """Metrics, parameter counts and latency of ``model`` on ``task``."""
    return {**evaluate(model, task), **_params(model), "latency_ms": latency(model, task)}


def train_builtin(model: nn.Module, task: Task, steps: int, seed: int, tick: Callable[[int], None]) -> None:
    """``steps`` seeded AdamW steps (lr :data:`TRAIN_LR`, batch :data:`TRAIN_BATCH`) on the train split."""
    x_all, y_all = task.train
    optimizer = torch.optim.AdamW(model.parameters(), lr=TRAIN_LR)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        idx = torch.randint(len(x_all), (TRAIN_BATCH,), generator=gen)  # [B]
        optimizer.zero_grad(set_to_none=True)
        task.loss(_forward(model, task.kind, x_all[idx]), y_all[idx]).backward()
        optimizer.step()
        tick(step + 1)
    model.eval()


# ---------------------------------------------------------------- pruning


def _decoder_weights(model: nn.Module) -> list[str]:
    """The decoder layers' projection weights of a causal LM (no embeddings, head or norms)."""
    layers = model.model.layers if _layout(model) == "llama" else model.transformer.h
    prefix = "model.layers" if _layout(model) == "llama" else "transformer.h"
    return [
        f"{prefix}.{n}.weight"
        for n, m in layers.named_modules()
        if isinstance(getattr(m, "weight", None), Tensor) and m.weight.dim() == 2
    ]


def run_method(config: PruneConfig, model: nn.Module, task: Task) -> tuple[nn.Module, dict[str, Any]]:
    """Prune ``model`` with ``config.method``; return the pruned model and what went (JSON-ready).

    For encoders ``model`` is the :class:`SentenceEncoder` around the Hugging Face encoder.
    """
    ratio, seed = config.ratio, config.seed
    if config.method == "llm_pruner":
        pruned, report = llm_pruner(
            model, task.calibration, ratio, importance=config.importance or "taylor", seed=seed
        )
        removed = {k: list(v) for k, v in report.removed.items()}
        return pruned, {"layers_pruned": list(report.layers), "removed": removed}
    if config.method == "modegpt":
        pruned, report = modegpt(model, [x for x, _ in task.calibration], ratio)
        layers = [
            {"layer": i, "ratio": r, "mlp_width": w, "qk_dim": q, "vo_rank": v}
            for i, (r, w, q, v) in enumerate(
                zip(report.layer_ratios, report.mlp_width, report.qk_dim, report.vo_rank, strict=True)
            )
        ]
        return pruned, {"layers": layers, "compression_of_linear_params": report.compression}
    if config.method == "obs":
        pruned, report = obs_prune(
            model,
            task.calibration,
            task.loss,
            ratio,
            params=_decoder_weights(model) if task.kind == "lm" else None,
            m=config.fingerprint()["examples"],
            damping=OBS_DAMPING,
            block_size=OBS_BLOCK,
        )
        per_param = {n: float((~mask).float().mean()) for n, mask in report.masks.items()}
        return pruned, {"sparsity": report.sparsity, "pruned_share_per_weight": per_param}
    pruned, report = gaprune(model, task.calibration, task.general, ratio)
    per_param = {n.removeprefix("encoder."): v for n, v in report.per_param.items()}
    return pruned, {"sparsity": report.pruned / report.total, "pruned_share_per_weight": per_param}


# ---------------------------------------------------------------- saving and reloading


def _is_hf(model: nn.Module) -> bool:
    from transformers import PreTrainedModel

    return isinstance(model, PreTrainedModel)


def save_model(
    config: PruneConfig, model: nn.Module, info: dict[str, Any], folder: Path, tokenizer: Any
) -> str:
    """Write the pruned ``model`` into ``folder`` (replaced if it exists); return the format used.

    ``"pretrained"``: ``save_pretrained`` in safetensors (``Pruned*`` classes of LLM-Pruner included), plus
    the tokenizer of an encoder. ``"state_dict"``: ``model.safetensors`` (shared tensors stored once) and
    ``rebuild.json``, the spec the skeleton is rebuilt from and, for MoDeGPT, every layer's new widths.
    """
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if isinstance(model, SentenceEncoder):
        model = model.encoder
    if _is_hf(model) and config.method != "modegpt":
        model.save_pretrained(folder, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
        form = "pretrained"
    else:
        save_safetensors(model, str(folder / "model.safetensors"))
        builtin = config.model in BUILTINS and BUILTINS[config.model]["build"] is not None
        kwargs = BUILTINS[config.model]["kwargs"] if builtin else None
        rebuild = {"model": config.model, "kwargs": kwargs, "modegpt": None}
        if config.method == "modegpt":
            rebuild["modegpt"] = [
                {k: layer[k] for k in ("mlp_width", "qk_dim", "vo_rank")} for layer in info["layers"]
            ]
        (folder / "rebuild.json").write_text(json.dumps(rebuild, indent=2))
        form = "state_dict"
    (folder / "gradinfo-prune.json").write_text(json.dumps({"format": form, "method": config.method}))
    return form


def _skeleton(spec: str, kwargs: dict[str, Any] | None) -> nn.Module:
    """The module whose shapes the saved state dict fits: a builtin rebuilt from its recorded arguments,
    else the model spec loaded again (its weights are then replaced)."""
    if kwargs is not None:
        given = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
        return BUILTINS[spec]["build"](**given)
    return load_model(str(minilm_path()) if spec == "minilm" else spec)


def _modular_shapes(model: nn.Module, layers: list[dict[str, int]]) -> None:
    """Give a dense Llama model the MoDeGPT layer shapes recorded in ``layers`` (weights uninitialised)."""
    for layer, dims in zip(model.model.layers, layers, strict=True):
        attn, mlp_ = layer.self_attn, layer.mlp
        width, qk, rank = dims["mlp_width"], dims["qk_dim"], dims["vo_rank"]
        hidden = mlp_.gate_proj.in_features
        kv_heads = attn.k_proj.out_features // attn.head_dim
        heads = attn.q_proj.out_features // attn.head_dim

        def linear(n_in: int, n_out: int, like: nn.Linear) -> nn.Linear:
            return nn.Linear(n_in, n_out, bias=False, dtype=like.weight.dtype)

        mlp_.gate_proj = linear(hidden, width, mlp_.gate_proj)
        mlp_.up_proj = linear(hidden, width, mlp_.up_proj)
        mlp_.down_proj = linear(width, hidden, mlp_.down_proj)
        q = linear(hidden, heads * qk, attn.q_proj)
        k = linear(hidden, kv_heads * qk, attn.k_proj)
        v = linear(hidden, kv_heads * rank, attn.v_proj)
        o = linear(heads * rank, hidden, attn.o_proj)
        index = torch.zeros(kv_heads, qk, dtype=torch.long)  # [Hkv, dq], loaded from the file
        layer.self_attn = ModularAttention(attn, q, k, v, o, index)
    widths = {d["mlp_width"] for d in layers}
    if len(widths) == 1:
        model.config.intermediate_size = widths.pop()


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
    marker = folder / "gradinfo-prune.json"
    if not marker.is_file():
        raise ValueError(f"{str(out)!r} holds no model saved by gradinfo prune (no {marker.name})")
    saved = json.loads(marker.read_text())
    if saved["format"] == "pretrained":
        config = json.loads((folder / "config.json").read_text())
        if config.get("pruned_base"):
            return load_llm_pruned(folder, attn_implementation="eager").eval()
        return load_model(str(folder)).eval()
    rebuild = json.loads((folder / "rebuild.json").read_text())
    model = _skeleton(rebuild["model"], rebuild["kwargs"])
    if rebuild["modegpt"] is not None:
        _modular_shapes(model, rebuild["modegpt"])
    load_safetensors(model, str(folder / "model.safetensors"), strict=True)
    return model.eval()


def _max_difference(a: nn.Module, b: nn.Module, task: Task) -> float:
    """Largest absolute difference of the two models' outputs on a few evaluation inputs."""
    x = task.evaluation[0][:4]
    if task.kind == "encoder":
        a, b, x = a.encoder, b, x  # compare the Hugging Face encoders' hidden states
        with torch.no_grad():
            mask = (x != a.config.pad_token_id).long() if a.config.pad_token_id is not None else None
            out_a = a(input_ids=x, attention_mask=mask).last_hidden_state  # [4, T, D]
            out_b = b(input_ids=x, attention_mask=mask).last_hidden_state  # [4, T, D]
        return float((out_a - out_b).abs().max())
    a.eval()
    b.eval()
    with torch.no_grad():
        return float((_forward(a, task.kind, x) - _forward(b, task.kind, x)).abs().max())


# ---------------------------------------------------------------- the output folder


def open_out(config: PruneConfig) -> None:
    """Create ``config.out`` with our manifest, or check that an existing one holds this very run.

    Raises:
        PruneError: a non-empty folder without our manifest, a manifest of another job or config, or a
            corrupt manifest. Nothing is written in those cases.
    """
    open_job_dir(config.out, job=JOB, noun="prune run", fingerprint=config.fingerprint(), error=PruneError)


def _read_stage(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise PruneError(f"{str(path)!r} is corrupt ({err}); delete it to redo that stage") from err


# ---------------------------------------------------------------- the job


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune` did.

    Attributes:
        out: the output folder.
        report: the content of ``report.json``.
        computed: stages computed by this call (``dense``, ``pruned``, ``report``).
        reused: stages found finished in the folder.
        seconds: wall time of this call.
    """

    out: Path
    report: dict[str, Any]
    computed: tuple[str, ...]
    reused: tuple[str, ...]
    seconds: float


def prune(config: PruneConfig, *, progress: bool = True) -> PruneResult:
    """Run (or resume) the prune job ``config`` describes: measure, prune, (recover,) save, report.

    Args:
        config: a :class:`PruneConfig` (from :func:`make_config`, which reports every mistake at once).
        progress: show rich progress bars.

    Returns:
        A :class:`PruneResult`; a finished folder is returned without recomputing anything.

    Raises:
        TypeError: ``config`` is not a ``PruneConfig``.
        PruneConfigError: the model cannot be loaded, or the method cannot prune it on this data (raised
            before the output folder is touched and before any training or pruning).
        PruneError: the output folder is foreign, from another config, or corrupt.
    """
    if not isinstance(config, PruneConfig):
        raise TypeError(f"config must be a PruneConfig (see make_config), got {type(config).__name__}")
    began = time.perf_counter()
    out = config.out
    if (out / MANIFEST).is_file() and (out / REPORT_JSON).is_file():
        open_out(config)
        report = _read_stage(out / REPORT_JSON)
        return PruneResult(out, report, (), ("dense", "pruned", "report"), time.perf_counter() - began)
    model, tokenizer = _build(config)
    check_model(config, model, tokenizer)
    open_out(config)
    task = load_task(config, tokenizer)
    if task.kind == "encoder":
        model = SentenceEncoder(model, pad_id=tokenizer.pad_token_id or 0)
    fingerprint = config.fingerprint()
    computed, reused = [], []
    dense, pruned_stage = _read_stage(out / DENSE), _read_stage(out / PRUNED)
    if pruned_stage is not None and not (out / MODEL / "gradinfo-prune.json").is_file():
        pruned_stage = None
    with job_progress(progress) as bar:
        stages = bar.add_task("prune job", total=4)
        steps = fingerprint["train_steps"]
        if steps and pruned_stage is None:
            training = bar.add_task(f"  training {config.model} on {config.dataset()}", total=steps)
            t0 = time.perf_counter()
            train_builtin(model, task, steps, config.seed, lambda k: bar.update(training, completed=k))
            log_done(
                bar, f"prune 1/4: {config.model} trained, {steps} steps ({time.perf_counter() - t0:.1f} s)"
            )
        bar.advance(stages)
        if dense is None:
            bar.update(stages, description="prune job: measuring the dense model")
            t0 = time.perf_counter()
            dense = measure(model, task)
            write_atomic(out / DENSE, json.dumps(dense, indent=2).encode())
            computed.append("dense")
            log_done(bar, f"prune 2/4: dense model measured ({time.perf_counter() - t0:.1f} s)")
        else:
            reused.append("dense")
        bar.advance(stages)
        if pruned_stage is None:
            bar.update(stages, description=f"prune job: {config.method} at ratio {config.ratio:g}")
            t0 = time.perf_counter()
            pruned, info = run_method(config, model, task)
            prune_seconds = time.perf_counter() - t0
            after = measure(pruned, task)
            recovered = None
            if config.lora_steps:
                bar.update(stages, description=f"prune job: LoRA recovery, {config.lora_steps} steps")
                pruned = lora_recover(pruned, task.train, config.lora_steps, seed=config.seed)
                recovered = measure(pruned, task)
            bar.advance(stages)
            bar.update(stages, description="prune job: saving and reloading the pruned model")
            form = save_model(config, pruned, info, out / MODEL, tokenizer)
            reload_error = _max_difference(pruned, load_job_model(out / MODEL), task)
            pruned_stage = {
                "prune_seconds": prune_seconds, "groups": info, "after": after, "recovered": recovered,
                "format": form, "reload_max_abs_difference": reload_error,
            }  # fmt: skip
            write_atomic(out / PRUNED, json.dumps(pruned_stage, indent=2).encode())
            computed.append("pruned")
            log_done(
                bar,
                f"prune 3/4: {config.method} pruned, saved and reloaded ({time.perf_counter() - t0:.1f} s)",
            )
        else:
            reused.append("pruned")
            bar.advance(stages)
        bar.advance(stages)
    report = _report(config, dense, pruned_stage)
    write_atomic(out / REPORT_MD, _markdown(report).encode())
    write_atomic(out / REPORT_JSON, json.dumps(report, indent=2).encode())
    computed.append("report")
    return PruneResult(out, report, tuple(computed), tuple(reused), time.perf_counter() - began)


def _report(config: PruneConfig, dense: dict[str, Any], stage: dict[str, Any]) -> dict[str, Any]:
    final = stage["recovered"] or stage["after"]
    metric = next(k for k in ("perplexity", "accuracy", "mrr") if k in dense)
    return {
        "job": JOB,
        "gradinfo": __version__,
        "config": config.fingerprint(),
        "method": METHODS[config.method],
        "metric": metric,
        "dense": dense,
        "pruned": stage["after"],
        "recovered": stage["recovered"],
        "parameters_before": dense["parameters"],
        "parameters_after": final["parameters"],
        "nonzero_before": dense["nonzero"],
        "nonzero_after": final["nonzero"],
        f"{metric}_before": dense[metric],
        f"{metric}_after": stage["after"][metric],
        f"{metric}_ratio": stage["after"][metric] / dense[metric] if dense[metric] else None,
        "latency_unit": "example" if metric == "accuracy" else "token",
        "latency_ms_before": dense["latency_ms"],
        "latency_ms_after": final["latency_ms"],
        "prune_seconds": stage["prune_seconds"],
        "groups": stage["groups"],
        "model_format": stage["format"],
        "reload_max_abs_difference": stage["reload_max_abs_difference"],
    }


def _markdown(report: dict[str, Any]) -> str:
    c, metric, unit = report["config"], report["metric"], report["latency_unit"]
    rows = [("dense", report["dense"]), ("pruned", report["pruned"])]
    if report["recovered"] is not None:
        rows.append((f"after {c['lora_steps']} LoRA steps", report["recovered"]))
    lines = [
        f"# gradinfo prune: {c['method']} on {c['model']}",
        "",
        f"{report['method']}. Ratio {c['ratio']:g}, calibration `{c['calibration']}` "
        f"({c['examples']} examples), seed {c['seed']}; builtin training steps {c['train_steps']}. "
        f"gradinfo {report['gradinfo']}.",
        "",
        f"| model | parameters | nonzero | {metric} | latency per {unit} (ms, median of {TIMED_PASSES}) |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {m['parameters']:,} | {m['nonzero']:,} | {m[metric]:.4g} | {m['latency_ms']:.4g} |"
            for name, m in rows
        ),
        "",
        f"Pruning took {report['prune_seconds']:.2f} s. The saved model ({report['model_format']}, folder "
        "`model/`, reload with `gradinfo.compress.job.load_job_model(out)`) reproduces the pruned outputs "
        f"to {report['reload_max_abs_difference']:.2e}.",
        "",
        "## What went",
        "",
        *_went(report["groups"]),
        "",
        "Every index and share is in `report.json` under `groups`.",
        "",
    ]
    return "\n".join(lines)


def _went(groups: dict[str, Any]) -> list[str]:
    """Markdown lines summarising what a method removed."""
    if "removed" in groups:
        return [
            f"- {key.replace('.', ' ', 2)}: {len(idx)} removed"
            + (f" ({', '.join(map(str, idx[:12]))}{', ...' if len(idx) > 12 else ''})" if idx else "")
            for key, idx in groups["removed"].items()
        ]
    if "layers" in groups:
        return [
            f"- layer {g['layer']}: ratio {g['ratio']:.3f}, MLP width {g['mlp_width']}, query-key dim "
            f"{g['qk_dim']}, value-output rank {g['vo_rank']}"
            for g in groups["layers"]
        ]
    return [f"- overall sparsity {groups['sparsity']:.3f}"] + [
        f"- `{name}`: {share:.3f} zeroed" for name, share in groups["pruned_share_per_weight"].items()
    ]
