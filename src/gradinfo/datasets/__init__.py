"""Offline, seeded datasets: ``load(name, *, split, seed, **options)`` returns a :class:`Dataset`.

Every loader reads only files that ship with installed packages (scikit-learn, scikit-image, mnist1d)
or with the Python interpreter; nothing is downloaded and nothing is written to disk.

=========  ==================================================================================
name       contents
=========  ==================================================================================
digits     scikit-learn's 8x8 handwritten digits, ``[N, 1, S, S]`` in [0, 1], 10 classes
mnist1d    the MNIST-1D generator (Greydanus, 2020), ``[N, 40]`` (or ``[N, 1, 40]``), 10 classes
photos     RGB crops of 10 photographs shipped with scikit-image/scikit-learn, label = photo
text       bytes of the Python standard library's source files, vocab 256, next-byte targets
=========  ==================================================================================
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from gradinfo.datasets import digits, mnist1d, photos, text
from gradinfo.datasets._types import Dataset

_LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": digits.load,
    "mnist1d": mnist1d.load,
    "photos": photos.load,
    "text": text.load,
}


def names() -> tuple[str, ...]:
    """The valid dataset names, sorted."""
    return tuple(sorted(_LOADERS))


def load(name: str, *, split: str = "train", seed: int = 0, **options: Any) -> Dataset:
    """Load dataset ``name`` offline.

    Args:
        name: one of :func:`names` (``"digits"``, ``"mnist1d"``, ``"photos"``, ``"text"``).
        split: ``"train"`` or ``"test"``; the two splits of one seed never share an example.
        seed: seeds the split and any random choice (crop positions, generator noise); the same
            ``(name, split, seed, options)`` always returns the same tensors.
        **options: loader-specific options; see ``gradinfo.datasets.<name>.load``.

    Returns:
        A :class:`Dataset` with ``x``, ``y``, ``classes``, ``name``, ``split`` and ``info``.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid ones), bad ``split`` or option value.
        TypeError: an option the loader does not take (the message lists the ones it does), or
            an option of the wrong type.
    """
    if not isinstance(name, str) or name not in _LOADERS:
        raise ValueError(f"unknown dataset name {name!r}; valid names: {', '.join(names())}")
    loader = _LOADERS[name]
    accepted = [p for p in inspect.signature(loader).parameters if p not in ("split", "seed")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"dataset {name!r} got unknown option(s) {', '.join(unknown)}; "
            f"it accepts: {', '.join(accepted) or '(none)'}"
        )
    return loader(split=split, seed=seed, **options)


__all__ = ["Dataset", "load", "names"]
