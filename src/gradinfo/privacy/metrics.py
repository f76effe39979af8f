"""How much a reconstruction reveals: image fidelity, recovered labels, recovered tokens.

- PSNR (per image): 10 log10(data_range^2 / MSE), MSE over all non-batch entries.
- SSIM (per image; Wang et al., "Image Quality Assessment: From Error Visibility to Structural Similarity",
  2004): the mean over pixels of
  (2 mu_x mu_y + c1)(2 sigma_xy + c2) / ((mu_x^2 + mu_y^2 + c1)(sigma_x^2 + sigma_y^2 + c2)),
  local statistics under an 11 x 11 Gaussian window with sigma 1.5, c1 = (0.01 L)^2, c2 = (0.03 L)^2.
- Label accuracy for batch label recovery, where the order of the batch is unknown: the overlap of the
  recovered and true label multisets, i.e. the accuracy under the best matching.
- Token precision and recall for text leakage (the set of token ids in the batch).

PSNR and SSIM are torchmetrics' functional implementations, reduced per image. LPIPS is not reported:
it needs pretrained network weights that cannot be had offline, and gradinfo never downloads at run time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from gradinfo.core.validate import positive

_SSIM_SIGMA = 1.5
_SSIM_PAD = 5  # torchmetrics' Gaussian window for sigma 1.5 is 11 wide: int(3.5 sigma + 0.5) * 2 + 1


def _check_pair(x: Tensor, y: Tensor, *, min_dim: int, layout: str) -> tuple[Tensor, Tensor]:
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor {layout}, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(
                f"{name} must be a floating-point tensor, got dtype {t.dtype}; convert with .float()"
            )
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dim() < min_dim or x.shape[0] == 0:
        raise ValueError(f"x and y must be a non-empty batch {layout}, got shape {tuple(x.shape)}")
    dtype = torch.promote_types(x.dtype, y.dtype)
    return x.detach().to(dtype), y.detach().to(dtype)


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio of each example, in dB (symmetric in x and y).

    Args:
        x: a batch ``[B, ...]`` (at least 2-D), e.g. reconstructions ``[B, C, H, W]``; floating point.
        y: the reference batch, same shape as ``x``.
        data_range: the span of valid values (1.0 for images in [0, 1]), > 0.

    Returns:
        ``[B]`` PSNR per example; ``inf`` where an example is reproduced exactly.

    Raises:
        TypeError: a non-tensor or non-floating input. ValueError: mismatched or empty shapes, bad data_range.
    """
    data_range = positive("data_range", data_range)
    x, y = _check_pair(x, y, min_dim=2, layout="[B, ...]")
    dims = tuple(range(1, x.dim()))
    from torchmetrics.functional.image import peak_signal_noise_ratio  # seconds to import: on first use

    return peak_signal_noise_ratio(x, y, data_range=data_range, reduction="none", dim=dims)  # [B]


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Structural similarity of each image (Gaussian window sigma 1.5, 11 x 11; symmetric in x and y).

    Borders are reflection-padded (torchmetrics' convention), so the mean runs over every pixel; scikit-image
    instead averages only the interior at least 5 pixels from the border, which differs slightly.

    Args:
        x: images ``[B, C, H, W]`` with H, W >= 6; floating point.
        y: reference images, same shape as ``x``.
        data_range: the span of valid values (1.0 for images in [0, 1]), > 0.

    Returns:
        ``[B]`` SSIM per image, in [-1, 1]; 1 for identical images.

    Raises:
        TypeError: a non-tensor or non-floating input. ValueError: shapes not ``[B, C, H, W]`` alike, images
            smaller than 6 x 6, bad data_range.
    """
    data_range = positive("data_range", data_range)
    x, y = _check_pair(x, y, min_dim=4, layout="[B, C, H, W]")
    if x.dim() != 4:
        raise ValueError(f"x and y must be images [B, C, H, W], got shape {tuple(x.shape)}")
    if min(x.shape[-2:]) <= _SSIM_PAD:
        raise ValueError(
            f"ssim needs images of at least {_SSIM_PAD + 1} x {_SSIM_PAD + 1} pixels (its window reaches "
            f"{_SSIM_PAD} pixels out), got {tuple(x.shape[-2:])}"
        )
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(  # [B]
        x, y, sigma=_SSIM_SIGMA, data_range=data_range, reduction="none"
    )


def label_accuracy(pred: Tensor, true: Tensor) -> float:
    """Fraction of labels recovered, ignoring order: |multiset(pred) ∩ multiset(true)| / B.

    This equals the accuracy of ``pred`` against ``true`` under the best one-to-one matching of positions.

    Args:
        pred: recovered labels ``[B]``, integer class ids >= 0.
        true: true labels ``[B]``, integer class ids >= 0.

    Returns:
        A float in [0, 1].

    Raises:
        TypeError: non-integer tensors. ValueError: shapes not ``[B]`` alike, empty, or negative ids.
    """
    for name, t in (("pred", pred), ("true", true)):
        if not isinstance(t, Tensor) or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            got = f"dtype {t.dtype}" if isinstance(t, Tensor) else type(t).__name__
            raise TypeError(f"{name} must be an integer tensor [B] of class ids, got {got}")
        if t.dim() != 1 or t.numel() == 0:
            raise ValueError(f"{name} must have shape [B] with B >= 1, got {tuple(t.shape)}")
        if (t < 0).any():
            raise ValueError(f"{name} must hold class ids >= 0, got min {int(t.min())}")
    if pred.shape != true.shape:
        raise ValueError(f"pred and true must have the same length, got {pred.numel()} and {true.numel()}")
    classes = int(max(pred.max(), true.max())) + 1
    counts_pred = torch.bincount(pred.cpu(), minlength=classes)  # [K]
    counts_true = torch.bincount(true.cpu(), minlength=classes)  # [K]
    return float(torch.minimum(counts_pred, counts_true).sum()) / true.numel()


@dataclass(frozen=True)
class TokenScores:
    """Precision and recall of a recovered set of token ids against the true set."""

    precision: float
    recall: float


def _id_set(name: str, ids: Iterable[int] | Tensor) -> set[int]:
    if isinstance(ids, Tensor):
        if ids.is_floating_point():
            raise TypeError(f"{name} must hold integer token ids, got a {ids.dtype} tensor")
        return set(ids.flatten().tolist())
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise TypeError(f"{name} must be an iterable of int token ids, got {type(ids).__name__}")
    out = set(ids)
    bad = [i for i in out if isinstance(i, bool) or not isinstance(i, int)]
    if bad:
        raise TypeError(f"{name} must hold int token ids, got {bad[:5]!r}")
    return out


def token_precision_recall(recovered: Iterable[int] | Tensor, true: Iterable[int] | Tensor) -> TokenScores:
    """Set precision |R ∩ T| / |R| and recall |R ∩ T| / |T| of recovered token ids R against true ids T.

    Duplicates are ignored (sets). Precision of an empty recovery is 0 (nothing was leaked correctly).

    Args:
        recovered: token ids the attack recovered: an iterable of ints or an integer tensor of any shape.
        true: token ids in the victim's batch, same forms; must not be empty.

    Returns:
        ``TokenScores(precision, recall)``.

    Raises:
        TypeError: non-integer ids. ValueError: an empty ``true``.
    """
    found, target = _id_set("recovered", recovered), _id_set("true", true)
    if not target:
        raise ValueError("true must contain at least one token id, got an empty collection")
    hits = len(found & target)
    return TokenScores(precision=hits / len(found) if found else 0.0, recall=hits / len(target))
