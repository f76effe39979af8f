"""mlp: closed-form forward, layer layout, activations, validation."""

import pytest
import torch
from torch import nn

from gradinfo.models import mlp


def test_no_hidden_layer_is_an_affine_map_of_the_flattened_input() -> None:
    model = mlp(64, 10, hidden=())
    x = torch.randn(3, 1, 8, 8)
    ref = x.flatten(1) @ model.fc1.weight.T + model.fc1.bias  # [3, 10]
    torch.testing.assert_close(model(x), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("activation", "cls", "fn"), [("relu", nn.ReLU, torch.relu), ("tanh", nn.Tanh, torch.tanh)]
)
def test_forward_matches_a_manual_computation(activation: str, cls: type, fn: object) -> None:
    model = mlp(40, 10, hidden=(16, 8), activation=activation)
    assert [type(m) for m in model] == [
        nn.Flatten,
        nn.Linear,
        cls,
        nn.Dropout,
        nn.Linear,
        cls,
        nn.Dropout,
        nn.Linear,
    ]
    x = torch.randn(5, 40)
    h = fn(x @ model.fc1.weight.T + model.fc1.bias)  # [5, 16]
    h = fn(h @ model.fc2.weight.T + model.fc2.bias)  # [5, 8]
    torch.testing.assert_close(model(x), h @ model.fc3.weight.T + model.fc3.bias, rtol=1e-6, atol=1e-6)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="activation"):
        mlp(4, 2, activation="gelu")
    with pytest.raises(ValueError, match=r"hidden\[1\]"):
        mlp(4, 2, hidden=(3, 0))
    with pytest.raises(TypeError, match="hidden"):
        mlp(4, 2, hidden=8)
    with pytest.raises(ValueError, match="dropout"):
        mlp(4, 2, dropout=-0.1)
