"""cnn: shapes, parameter count in closed form, seeding, dropout, validation."""

import pytest
import torch
from torch import nn

from gradinfo.models import cnn


@pytest.mark.parametrize(("channels", "size"), [(1, 8), (1, 28), (3, 32)])
def test_shapes_and_parameter_count(channels: int, size: int) -> None:
    w, h, k = 4, 20, 7
    model = cnn(num_classes=k, in_channels=channels, image_size=size, width=w, hidden=h)
    assert model(torch.randn(5, channels, size, size)).shape == (5, k)
    side = size // 4
    expected = (
        (channels * w * 25 + w) + (w * 2 * w * 25 + 2 * w) + (2 * w * side * side * h + h) + (h * k + k)
    )
    assert sum(p.numel() for p in model.parameters()) == expected
    assert [n for n, m in model.named_children() if isinstance(m, (nn.Conv2d, nn.Linear))] == [
        "conv1",
        "conv2",
        "fc1",
        "fc2",
    ]


def test_seed_fixes_weights_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(7)
    expected = torch.rand(1)
    torch.manual_seed(7)
    a, b, c = cnn(seed=1), cnn(seed=1), cnn(seed=2)
    assert torch.rand(1) == expected
    torch.testing.assert_close(a.conv1.weight, b.conv1.weight, rtol=0, atol=0)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)
    torch.manual_seed(3)
    d = cnn(seed=None)
    torch.manual_seed(3)
    torch.testing.assert_close(cnn(seed=None).fc2.weight, d.fc2.weight, rtol=0, atol=0)


def test_dropout_is_active_in_train_mode_only() -> None:
    x = torch.randn(4, 1, 28, 28)
    model = cnn(dropout=0.5)
    assert not torch.equal(model(x), model(x))
    model.eval()
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
    plain = cnn(dropout=0.0)
    torch.testing.assert_close(plain(x), plain(x), rtol=0, atol=0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="image_size"):
        cnn(image_size=3)
    with pytest.raises(ValueError, match="dropout"):
        cnn(dropout=1.0)
    with pytest.raises(TypeError, match="width"):
        cnn(width=2.5)
    with pytest.raises(TypeError, match="seed"):
        cnn(seed="0")
