"""RGB crops of the ten colour photographs that ship with scikit-image and scikit-learn.

The label of a crop is the photo it comes from, so this is a real 10-class image task made of
natural-image statistics. Files are read from the installed packages' own folders
(``skimage/data/*`` and ``sklearn/datasets/images/*``); the ``skimage.data`` fetchers, which may
reach for the network through pooch, are never called.

Photos: astronaut, chelsea, coffee, hubble_deep_field, immunohistochemistry (``ihc.png``),
motorcycle_left, retina, rocket (scikit-image) and china, flower (scikit-learn). The grayscale
photographs (camera, coins, moon, ...) are left out so colour stays informative and every class
has the same channel statistics; ``motorcycle_right`` is left out because it is the other half of
a stereo pair, nearly the same picture as ``motorcycle_left``.

Disjoint regions. Each photo is resized (antialiased bilinear) so its shorter side is
``photo_side`` pixels; the train crops lie entirely in the left ``train_width`` share of its
columns, ``[0, c)``, and the test crops entirely in the rest, ``[c, W)``, with
``c = round(train_width * W)``. A train crop covers columns ``[l, l + S)`` with ``l + S <= c`` and a
test crop ``[l', l' + S)`` with ``l' >= c``, so no train pixel is ever a test pixel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data
import skimage.io
import sklearn.datasets
import torch
import torch.nn.functional as F
from torch import Tensor

from gradinfo.core.validate import fraction, positive_int
from gradinfo.datasets._types import Dataset, check_split_seed

SIZES = (32, 64)

_SKIMAGE_FILES = {
    "astronaut": "astronaut.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png",
    "motorcycle_left": "motorcycle_left.png",
    "retina": "retina.jpg",
    "rocket": "rocket.jpg",
}
_SKLEARN_FILES = {"china": "china.jpg", "flower": "flower.jpg"}
PHOTOS: tuple[str, ...] = (*_SKIMAGE_FILES, *_SKLEARN_FILES)
"""Class names, in label order."""


def photo_paths() -> dict[str, Path]:
    """Local file of every photo, keyed by class name, in label order.

    Raises:
        FileNotFoundError: a photo is missing from the installed package (a stripped install).
    """
    skimage_dir = Path(skimage.data.__file__).parent
    sklearn_dir = Path(sklearn.datasets.__file__).parent / "images"
    paths = {name: skimage_dir / f for name, f in _SKIMAGE_FILES.items()}
    paths |= {name: sklearn_dir / f for name, f in _SKLEARN_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"photos not found in the installed packages: {', '.join(missing)}; reinstall "
            "scikit-image and scikit-learn (gradinfo never downloads them)"
        )
    return paths


def _read(path: Path, photo_side: int) -> Tensor:
    """Read one photo as ``[3, H, W]`` float32 in [0, 1] with ``min(H, W) == photo_side``."""
    image = np.asarray(skimage.io.imread(path))[..., :3]  # [H0, W0, 3] uint8
    img = torch.as_tensor(image, dtype=torch.float32).permute(2, 0, 1) / 255.0  # [3, H0, W0]
    h0, w0 = img.shape[1:]
    scale = photo_side / min(h0, w0)
    hw = (photo_side, round(w0 * scale)) if h0 <= w0 else (round(h0 * scale), photo_side)
    img = F.interpolate(img[None], size=hw, mode="bilinear", antialias=True, align_corners=False)[0]
    return img.clamp(0.0, 1.0)  # [3, H, W]


def load(
    *,
    split: str = "train",
    seed: int = 0,
    size: int = 32,
    n_per_photo: int = 100,
    photo_side: int = 256,
    train_width: float = 0.7,
) -> Dataset:
    """Seeded random crops, ``x`` ``[10 * n_per_photo, 3, size, size]`` float32 in [0, 1], ``y`` ``[N]``.

    Args:
        split: ``"train"`` (crops from the left ``train_width`` of each photo) or ``"test"`` (the rest).
        seed: seeds crop positions; train and test use different streams of the same seed.
        size: crop side, 32 or 64.
        n_per_photo: crops per photo, so the classes are exactly balanced.
        photo_side: every photo is first resized so its shorter side has this many pixels.
        train_width: share of each photo's width reserved for train crops.

    Returns:
        A :class:`~gradinfo.datasets.Dataset` with classes :data:`PHOTOS`, examples grouped by photo;
        ``info["positions"]`` ``[N, 2]`` int64 (top, left) of each crop in its resized photo,
        ``info["photo_shapes"]`` ``{name: (H, W)}`` and ``info["boundary"]`` ``{name: c}``.

    Raises:
        ValueError: ``size`` not 32/64, ``n_per_photo < 1``, ``train_width`` outside (0, 1), or a
            split region narrower than ``size`` (raise ``photo_side`` or move ``train_width``).
    """
    check_split_seed(split, seed)
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    positive_int("n_per_photo", n_per_photo)
    positive_int("photo_side", photo_side, minimum=size)
    fraction("train_width", train_width)
    gen = torch.Generator().manual_seed(seed * 2 + (split == "test"))
    xs, positions, shapes, boundaries = [], [], {}, {}
    for name, path in photo_paths().items():
        img = _read(path, photo_side)  # [3, H, W]
        h, w = img.shape[1:]
        c = round(train_width * w)
        lo, hi = (0, c - size) if split == "train" else (c, w - size)
        if hi < lo:
            width = c if split == "train" else w - c
            raise ValueError(
                f"photo {name!r} ({h}x{w} after resizing) has a {split} region of {width} columns, narrower "
                f"than size={size}; raise photo_side={photo_side} or change train_width={train_width}"
            )
        tops = torch.randint(0, h - size + 1, (n_per_photo,), generator=gen)  # [n]
        lefts = torch.randint(lo, hi + 1, (n_per_photo,), generator=gen)  # [n]
        xs.append(
            torch.stack(
                [
                    img[:, t : t + size, s : s + size]
                    for t, s in zip(tops.tolist(), lefts.tolist(), strict=True)
                ]
            )
        )
        positions.append(torch.stack([tops, lefts], dim=1))  # [n, 2]
        shapes[name], boundaries[name] = (h, w), c
    return Dataset(
        x=torch.cat(xs).contiguous(),  # [N, 3, S, S]
        y=torch.arange(len(PHOTOS)).repeat_interleave(n_per_photo),  # [N]
        classes=PHOTOS,
        name="photos",
        split=split,
        info={
            "size": size,
            "n_per_photo": n_per_photo,
            "photo_side": photo_side,
            "train_width": train_width,
            "positions": torch.cat(positions),
            "photo_shapes": shapes,
            "boundary": boundaries,
        },
    )
