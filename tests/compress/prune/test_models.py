"""The prune job's tables: builtins state their kind, users' models get theirs from transformers, and every
method row is consistent with the calibration sets."""

from __future__ import annotations

import pytest
from torch import nn
from transformers import BertConfig, BertForSequenceClassification, BertModel

from gradinfo.compress.prune import BUILTINS, CALIBRATIONS, METHODS
from gradinfo.compress.prune.models import build_model, model_kind
from gradinfo.models import mlp, tiny_gpt2, tiny_llama

BERT = BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)


@pytest.mark.parametrize(
    ("build", "kind"),
    [
        (lambda: tiny_llama(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=2), "lm"),
        (lambda: tiny_gpt2(hidden_size=16, num_layers=1, num_heads=2), "lm"),
        (lambda: BertModel(BERT, add_pooling_layer=False), "encoder"),
        (lambda: BertForSequenceClassification(BERT), "classifier"),
        (lambda: mlp(64, 10, hidden=(8,)), "classifier"),
        (lambda: nn.Linear(4, 2), "classifier"),
    ],
    ids=["llama", "gpt2", "bert", "bert-classifier", "mlp", "linear"],
)
def test_a_users_model_kind_is_what_transformers_declares(build: object, kind: str) -> None:
    assert model_kind(build()) == kind


@pytest.mark.parametrize("name", [n for n, b in BUILTINS.items() if b.task is not None])
def test_each_trained_builtin_is_its_task_model_and_fits_its_own_calibration_set(name: str) -> None:
    builtin = BUILTINS[name]
    model, tokenizer = build_model(name, seed=0)
    assert tokenizer is None and model_kind(model) == builtin.kind == CALIBRATIONS[builtin.calibration]


@pytest.mark.parametrize("name", METHODS)
def test_each_method_row_is_consistent(name: str) -> None:
    method = METHODS[name]
    assert method.name == name and method.removes
    assert CALIBRATIONS[method.calibration] in method.kinds
    assert method.examples >= method.min_examples[0]
    assert (method.shapes is None) == (method.reshape is None)
