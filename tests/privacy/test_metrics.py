"""Metrics against closed forms, torchmetrics' module API, scikit-image and brute-force matching."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from gradinfo.privacy.metrics import TokenScores, label_accuracy, psnr, ssim, token_precision_recall


def _images(b: int = 3, c: int = 3, h: int = 24, w: int = 20, noise: float = 0.1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(b, c, h, w, generator=g, dtype=torch.float64)  # [B, C, H, W]
    y = (x + noise * torch.randn(b, c, h, w, generator=g, dtype=torch.float64)).clamp(0, 1)  # [B, C, H, W]
    return x, y


def test_psnr_of_a_known_mse() -> None:
    x = torch.zeros(2, 1, 8, 8, dtype=torch.float64)  # [B, C, H, W]
    y = x.clone()
    y[0] += 0.1  # MSE 1e-2 -> 20 dB at range 1
    y[1, :, :4] += 0.5  # MSE 0.125 -> 10 log10(1 / 0.125) at range 1, and +20 log10(2) at range 2
    torch.testing.assert_close(psnr(y, x), torch.tensor([20.0, 10 * math.log10(8)], dtype=torch.float64))
    torch.testing.assert_close(
        psnr(y, x, data_range=2.0),
        torch.tensor([20.0, 10 * math.log10(8)], dtype=torch.float64) + 20 * math.log10(2),
    )


def test_psnr_per_example_matches_scikit_image_and_torchmetrics() -> None:
    x, y = _images()
    ours = psnr(y, x)
    assert ours.shape == (3,)
    for i in range(3):
        # rel 1e-6: torchmetrics forms the constant 10 / ln(10) in float32 even for float64 inputs
        assert ours[i].item() == pytest.approx(sk_psnr(x[i].numpy(), y[i].numpy(), data_range=1.0), rel=1e-6)
        assert ours[i].item() == pytest.approx(
            PeakSignalNoiseRatio(data_range=1.0)(y[i], x[i]).item(), rel=1e-6
        )


def test_psnr_accepts_flat_vectors_and_is_inf_on_exact_copies() -> None:
    x = torch.rand(4, 64)  # [B, D]
    out = psnr(x, x.clone())
    assert out.shape == (4,) and torch.isinf(out).all()


def test_ssim_of_identical_images_is_one() -> None:
    x, _ = _images()
    torch.testing.assert_close(ssim(x, x), torch.ones(3, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize(("a", "b"), [(0.2, 0.6), (0.5, 0.5), (0.9, 0.1)])
def test_ssim_of_constant_images_closed_form(a: float, b: float) -> None:
    # Zero variance: SSIM = (2ab + c1) / (a^2 + b^2 + c1), the contrast-structure factor is c2 / c2 = 1.
    x = torch.full((1, 2, 12, 12), a, dtype=torch.float64)  # [B, C, H, W]
    y = torch.full((1, 2, 12, 12), b, dtype=torch.float64)  # [B, C, H, W]
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    torch.testing.assert_close(ssim(x, y), torch.tensor([expected], dtype=torch.float64), atol=1e-12, rtol=0)


def test_ssim_per_image_matches_torchmetrics_module() -> None:
    x, y = _images()
    ours = ssim(y, x)
    assert ours.shape == (3,)
    for i in range(3):
        reference = StructuralSimilarityIndexMeasure(data_range=1.0)(y[i : i + 1], x[i : i + 1])
        assert ours[i].item() == pytest.approx(reference.item(), rel=1e-6)  # the module keeps float32 state


def test_ssim_interior_matches_scikit_image() -> None:
    # Same window (Gaussian, sigma 1.5, 11 wide), constants and population covariance. scikit-image averages
    # the SSIM map over the interior 5 pixels from the border; compare our map there.
    from torchmetrics.functional.image import structural_similarity_index_measure

    x, y = _images(h=30, w=26)
    _, full = structural_similarity_index_measure(y, x, data_range=1.0, return_full_image=True)
    interior = full[..., 5:-5, 5:-5].mean(dim=(1, 2, 3))  # [B]
    for i in range(3):
        reference = sk_ssim(
            x[i].numpy(),
            y[i].numpy(),
            channel_axis=0,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert interior[i].item() == pytest.approx(reference, abs=1e-6)
    # and the full-image mean (what ssim returns) stays close to scikit-image's interior mean
    torch.testing.assert_close(ssim(y, x), interior, atol=0.02, rtol=0)


def test_ssim_falls_with_noise() -> None:
    x, _ = _images()
    scores = [ssim(_images(noise=n)[1], x).mean().item() for n in (0.02, 0.1, 0.3)]
    assert scores[0] > scores[1] > scores[2]


@pytest.mark.parametrize(
    ("x", "y", "error", "match"),
    [
        (torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 9), ValueError, "same shape"),
        (torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8).numpy(), TypeError, "y must be a torch.Tensor"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.rand(2, 1, 8, 8), TypeError, "floating-point"),
        (torch.rand(2, 64), torch.rand(2, 64), ValueError, r"\[B, C, H, W\]"),
        (torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4), ValueError, "at least 6 x 6"),
    ],
)
def test_ssim_rejects_bad_inputs(x: torch.Tensor, y: torch.Tensor, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        ssim(x, y)


def test_psnr_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"\[B, \.\.\.\]"):
        psnr(torch.rand(5), torch.rand(5))
    with pytest.raises(ValueError, match="data_range"):
        psnr(torch.rand(2, 3), torch.rand(2, 3), data_range=0.0)


def _best_matching(pred: list[int], true: list[int]) -> float:
    return max(
        sum(p == t for p, t in zip(perm, true, strict=True)) for perm in itertools.permutations(pred)
    ) / len(true)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 6).flatmap(lambda b: st.tuples(*[st.lists(st.integers(0, 3), min_size=b, max_size=b)] * 2))
)
def test_label_accuracy_is_the_best_matching_accuracy(pair: tuple[list[int], list[int]]) -> None:
    pred, true = pair
    assert label_accuracy(torch.tensor(pred), torch.tensor(true)) == pytest.approx(_best_matching(pred, true))


def test_label_accuracy_examples() -> None:
    assert label_accuracy(torch.tensor([3, 1, 1, 0]), torch.tensor([1, 0, 1, 3])) == 1.0
    assert label_accuracy(torch.tensor([1, 1, 1, 1]), torch.tensor([1, 0, 1, 3])) == 0.5
    assert label_accuracy(torch.tensor([2]), torch.tensor([7])) == 0.0


@pytest.mark.parametrize(
    ("pred", "true", "error", "match"),
    [
        (torch.tensor([1.0, 2.0]), torch.tensor([1, 2]), TypeError, "pred must be an integer tensor"),
        (torch.tensor([1, 2]), [1, 2], TypeError, "true must be an integer tensor"),
        (torch.tensor([1, 2, 3]), torch.tensor([1, 2]), ValueError, "same length"),
        (torch.tensor([[1, 2]]), torch.tensor([[1, 2]]), ValueError, r"shape \[B\]"),
        (torch.tensor([-1, 2]), torch.tensor([1, 2]), ValueError, ">= 0"),
    ],
)
def test_label_accuracy_rejects_bad_inputs(pred: object, true: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        label_accuracy(pred, true)  # type: ignore[arg-type]


def test_token_precision_recall() -> None:
    scores = token_precision_recall([5, 7, 9, 9, 11], torch.tensor([[5, 7], [7, 13]]))
    assert scores == TokenScores(precision=2 / 4, recall=2 / 3)
    assert token_precision_recall(set(), [1, 2]) == TokenScores(precision=0.0, recall=0.0)
    assert token_precision_recall(torch.tensor([1, 2]), {2, 1}) == TokenScores(precision=1.0, recall=1.0)


@settings(max_examples=40, deadline=None)
@given(st.sets(st.integers(0, 30)), st.sets(st.integers(0, 30), min_size=1))
def test_token_scores_match_set_definitions(recovered: set[int], true: set[int]) -> None:
    scores = token_precision_recall(recovered, true)
    hits = len(recovered & true)
    assert scores.recall == hits / len(true)
    assert scores.precision == (hits / len(recovered) if recovered else 0.0)
    assert 0.0 <= scores.precision <= 1.0 and 0.0 <= scores.recall <= 1.0


def test_token_precision_recall_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="true must contain"):
        token_precision_recall([1], [])
    with pytest.raises(TypeError, match="recovered"):
        token_precision_recall([1.5], [1])
    with pytest.raises(TypeError, match="true"):
        token_precision_recall([1], "abc")
    with pytest.raises(TypeError, match="recovered"):
        token_precision_recall(torch.tensor([1.0]), [1])
