"""``gradinfo prune``: prune a model with one compression method, save it reloadably, report what it cost.

One run loads (and, for a builtin, briefly trains) a model, measures it dense, prunes it with one method at
one ratio on calibration data, optionally recovers it with LoRA, measures it again, saves it and writes a
report. Methods (``--method``, :data:`~.methods.METHODS`) and what ``--ratio`` means for each:

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

Models (``--model``): a builtin (:data:`~.models.BUILTINS`: ``tiny-llama``, ``tiny-gpt2`` and ``mlp-digits``
are :data:`gradinfo.tasks.TASKS` models, ``minilm`` the packaged sentence encoder), a local Hugging Face
folder, a cached hub id or a ``module:factory`` string (:func:`gradinfo.models.load_model`). Builtins other
than ``minilm`` are seeded random networks trained for ``--train-steps`` AdamW steps (default
:data:`~.config.TRAIN_STEPS`) on their calibration set's train split before pruning; ``--train-steps 0``
prunes the random initialisation. Users' models are used as loaded; their kind (causal LM, text encoder,
classifier) is what ``transformers`` declares of them (:func:`~.models.model_kind`).

Calibration sets (``--calibration``, :data:`~.data.CALIBRATIONS`), each fixing the task and its metric:

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
with another config, raises :class:`~gradinfo.core.jobdir.JobDirError` and nothing in it is touched.

Files: ``config.py`` (:class:`PruneConfig`, the options), ``models.py`` (builtins, loading, model kinds and
layouts), ``data.py`` (calibration sets), ``methods.py`` (one row per method: what it removes, the kinds it
prunes, its defaults, checks, run and save hooks), ``checks.py`` (:func:`check_model`: a loaded model
against the config), ``metrics.py`` (metrics, latency, a builtin's training), ``save.py`` (saving and
:func:`load_job_model`), ``run.py`` (:func:`prune`, the resumable stages), ``report.py`` (``report.json``,
``report.md``, the command line's summary).
"""

from __future__ import annotations

from gradinfo.compress.prune.checks import check_model
from gradinfo.compress.prune.config import PruneConfig
from gradinfo.compress.prune.data import CALIBRATIONS
from gradinfo.compress.prune.methods import METHODS
from gradinfo.compress.prune.models import BUILTINS
from gradinfo.compress.prune.report import summary
from gradinfo.compress.prune.run import prune
from gradinfo.compress.prune.save import load_job_model
from gradinfo.core.job import Job

__all__ = [
    "BUILTINS",
    "CALIBRATIONS",
    "JOB",
    "METHODS",
    "PruneConfig",
    "check_model",
    "load_job_model",
    "make_config",
    "prune",
]

make_config = PruneConfig.make
"""The :class:`PruneConfig` of keyword options (``JobConfigError``: one line per mistake)."""

JOB = Job(
    PruneConfig,
    prune,
    summary,
    "Prune a model with one method; save it (safetensors, reloadable) and report what it cost.\n\n"
    "Writes model/, report.json and report.md into --out: parameters, perplexity / accuracy / MRR and "
    "latency per token before and after, and which groups went. Rerun with the same options to resume.",
)
"""The ``gradinfo prune`` job."""
