"""load_model: builtin names, module:factory strings, local Hugging Face folders, clear errors."""

from pathlib import Path

import pytest
import torch
from transformers import GPT2LMHeadModel

from gradinfo.models import load_model, tiny_gpt2

FACTORY_MODULE = """
from torch import nn

def build(width=3):
    return nn.Linear(2, width)

def not_a_model():
    return "oops"

class Zoo:
    @staticmethod
    def make():
        return nn.Identity()

VALUE = 3
"""


@pytest.fixture
def factory_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "user_models_for_test.py").write_text(FACTORY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "user_models_for_test"


def test_builtin_names_pass_keyword_arguments() -> None:
    model = load_model("mlp", in_features=4, num_classes=3, hidden=())
    assert model(torch.randn(2, 4)).shape == (2, 3)
    assert load_model("tiny-gpt2", vocab_size=30).config.vocab_size == 30


def test_module_factory(factory_module: str) -> None:
    model = load_model(f"{factory_module}:build", width=5)
    assert isinstance(model, torch.nn.Linear) and model.out_features == 5
    assert isinstance(load_model(f"{factory_module}:Zoo.make"), torch.nn.Identity)


def test_module_factory_errors_name_the_spec(factory_module: str) -> None:
    with pytest.raises(TypeError, match=f"{factory_module}:not_a_model.*str"):
        load_model(f"{factory_module}:not_a_model")
    with pytest.raises(TypeError, match="not a callable"):
        load_model(f"{factory_module}:VALUE")
    with pytest.raises(ValueError, match="no attribute 'missing'"):
        load_model(f"{factory_module}:missing")
    with pytest.raises(ValueError, match="cannot import module 'no_such_module_xyz'"):
        load_model("no_such_module_xyz:build")
    with pytest.raises(ValueError, match="both parts"):
        load_model(f"{factory_module}:")


def test_local_hugging_face_folder_round_trips(tmp_path: Path) -> None:
    original = tiny_gpt2(vocab_size=32, hidden_size=16, num_layers=1, num_heads=2).eval()
    original.save_pretrained(tmp_path / "gpt")
    loaded = load_model(str(tmp_path / "gpt"))
    assert isinstance(loaded, GPT2LMHeadModel) and loaded.config._attn_implementation == "eager"
    ids = torch.randint(0, 32, (2, 5))
    torch.testing.assert_close(loaded(ids).logits, original(ids).logits, rtol=0, atol=0)
    sdpa = load_model(str(tmp_path / "gpt"), attn_implementation="sdpa")
    assert sdpa.config._attn_implementation == "sdpa"


def test_missing_models_raise_without_downloading(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="never downloads"):
        load_model("gradinfo-test-owner/no-such-model-xyz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no config\.json"):
        load_model(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="not a builtin"):
        load_model("lenet")
    with pytest.raises(TypeError, match="spec"):
        load_model(3)
