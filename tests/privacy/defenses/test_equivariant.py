"""p4 equivariance (exact under 90-degree turns), parameter counts, DP-SGD trainer checks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from gradinfo.capture import per_example_grads
from gradinfo.privacy.defenses import P4GroupConv, P4LiftConv, dp_sgd_train, equivariant_cnn


def _rot(x: torch.Tensor, r: int) -> torch.Tensor:
    return torch.rot90(x, r, dims=(-2, -1))


@settings(max_examples=8, deadline=None)
@given(r=st.integers(1, 3), seed=st.integers(0, 1000))
def test_lift_and_group_conv_are_equivariant(r: int, seed: int) -> None:
    torch.manual_seed(seed)
    lift, group = P4LiftConv(2, 3, 3, 1).double(), P4GroupConv(3, 2, 5, 2).double()
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    f, f_rot = lift(x), lift(_rot(x, r))
    torch.testing.assert_close(f_rot, _rot(torch.roll(f, r, dims=2), r), rtol=1e-12, atol=1e-12)
    g, g_rot = group(f), group(f_rot)
    torch.testing.assert_close(g_rot, _rot(torch.roll(g, r, dims=2), r), rtol=1e-12, atol=1e-12)


def test_group_conv_matches_naive_definition() -> None:
    torch.manual_seed(0)
    layer = P4GroupConv(2, 3, 3, 1).double()
    f = torch.randn(1, 2, 4, 5, 5, dtype=torch.float64)
    w = layer.conv.weight.unflatten(1, (2, 4))  # [O, C, 4, k, k]
    for r in range(4):
        want = layer.conv.bias.view(1, 3, 1, 1).expand(1, 3, 5, 5).clone()
        for c in range(2):
            for s in range(4):
                k = _rot(w[:, c, (s - r) % 4], r).unsqueeze(1)  # [O, 1, k, k]
                want = want + F.conv2d(f[:, c : c + 1, s], k, padding=1)
        torch.testing.assert_close(layer(f)[:, :, r], want, rtol=1e-12, atol=1e-12)


def test_cnn_output_is_invariant() -> None:
    model = equivariant_cnn(widths=(3, 4, 5), seed=1).double()
    x = torch.rand(3, 1, 16, 16, dtype=torch.float64)
    for r in range(1, 4):
        torch.testing.assert_close(model(_rot(x, r)), model(x), rtol=1e-10, atol=1e-12)
    assert not torch.allclose(model(x.flip(-1)), model(x))  # not reflection-invariant: p4, not p4m


def test_parameter_count_is_a_quarter_of_equal_width_cnn() -> None:
    eq = equivariant_cnn(in_channels=3, widths=(8, 16), kernel_size=3)
    std = [nn.Conv2d(3, 32, 3), nn.Conv2d(32, 64, 3)]  # the same 32 and 64 feature maps
    conv_eq = sum(p.numel() for n, p in eq.named_parameters() if ".conv.weight" in n)
    conv_std = sum(m.weight.numel() for m in std)
    assert conv_eq * 4 == conv_std


def test_per_example_grads_of_tied_convs_match_loop() -> None:
    model = equivariant_cnn(widths=(2, 3), seed=0).double()
    x, y = torch.rand(3, 1, 8, 8, dtype=torch.float64), torch.tensor([0, 4, 9])
    got = per_example_grads(model, F.cross_entropy, x, y)
    for i in range(3):
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        for n, p in model.named_parameters():
            torch.testing.assert_close(got[n][i], p.grad, rtol=1e-9, atol=1e-12)


def test_dp_sgd_train_learns_separable_data_and_reports_sigma() -> None:
    torch.manual_seed(0)
    x = torch.randn(200, 4)
    y = (x[:, 0] > 0).long()
    model = nn.Linear(4, 2)
    sigma = dp_sgd_train(model, x, y, epsilon=8.0, delta=1e-5, epochs=5, batch_size=50, lr=0.5, seed=0)
    from gradinfo.privacy import epsilon

    assert epsilon(sigma, 0.25, 20, 1e-5) <= 8.0 + 1e-6
    assert (model(x).argmax(-1) == y).float().mean() > 0.85


def test_bad_arguments() -> None:
    import pytest

    with pytest.raises(ValueError, match="kernel_size"):
        equivariant_cnn(kernel_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        dp_sgd_train(nn.Linear(2, 2), torch.zeros(4, 2), torch.zeros(4).long(), epsilon=1, delta=1e-5,
                     epochs=1, batch_size=5)  # fmt: skip
