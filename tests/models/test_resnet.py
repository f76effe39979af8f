"""resnet: GroupNorm only, examples independent of each other, exact per-example gradients."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradinfo.capture import per_example_grads
from gradinfo.models import resnet


def test_shapes_layout_and_no_batchnorm() -> None:
    model = resnet(10, in_channels=3, width=8, blocks=(2, 1, 1), groups=4)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert (
        sum(isinstance(m, nn.GroupNorm) for m in model.modules()) == 1 + 2 * 4 + 2
    )  # stem, blocks, shortcuts
    assert model.fc.in_features == 8 * 4
    assert model.stage2[0].conv1.stride == (2, 2) and model.stage1[1].conv1.stride == (1, 1)


def test_each_output_depends_only_on_its_own_example() -> None:
    model = resnet(5, width=8, groups=4)
    x = torch.randn(6, 3, 16, 16)
    torch.testing.assert_close(model(x)[2:3], model(x[2:3]), rtol=1e-5, atol=1e-6)


def test_per_example_gradients_match_a_float64_loop() -> None:
    model = resnet(3, in_channels=1, width=4, blocks=(1, 1), groups=2).double()
    x, y = torch.randn(4, 1, 8, 8, dtype=torch.float64), torch.tensor([0, 2, 1, 2])
    grads = per_example_grads(model, F.cross_entropy, x, y)
    for i in range(4):
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(grads[name][i], p.grad, rtol=1e-10, atol=1e-12)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="groups must divide width"):
        resnet(10, width=12, groups=8)
    with pytest.raises(ValueError, match="blocks"):
        resnet(10, blocks=())
    with pytest.raises(ValueError, match=r"blocks\[0\]"):
        resnet(10, blocks=(0,))
