"""Random projections (Johnson-Lindenstrauss sketches) of per-example gradients.

Each example's gradient ``g_b in R^P`` is mapped to ``s_b = R g_b in R^dim`` with a random ``R`` for which
``E[R^T R] = I``, so ``E ||R g||^2 = ||g||^2`` and inner products are preserved up to ``O(1/sqrt(dim))``
relative error with high probability (Johnson & Lindenstrauss 1984). This is how TRAK and LoGra make
gradient-based data attribution affordable: only ``[B, dim]`` is kept.

Kinds of ``R`` (all drawn per block of parameter coordinates, see below):

- ``"gaussian"``: i.i.d. entries ``N(0, 1/dim)``.
- ``"rademacher"``: i.i.d. entries ``+-1/sqrt(dim)`` (Achlioptas 2003).
- ``"countsketch"``: each coordinate j goes to one bucket ``h(j)`` with a sign ``s(j)``:
  ``s[h(j)] += s(j) g_j`` (Charikar, Chen, Farach-Colton 2002); ``O(P)`` memory and time.

Memory: examples are processed in chunks (``chunk_size`` examples, by default as many as fit in 256 MiB of
per-example gradients), so ``B x P`` is never held. ``R`` is never held as a dense ``[dim, P]`` matrix
when that is big: each parameter tensor is split into column blocks of a fixed size and each block of
``R`` is generated from its own generator seeded by ``(seed, parameter name, block index)``, so the same
seed gives the same ``R`` across calls, chunks, devices and batch sizes (a parameter's projection does not
change when other parameters are frozen). Blocks are generated once and kept when all of ``R`` fits in
256 MiB, else regenerated for every chunk.

References:
    Johnson, Lindenstrauss. Extensions of Lipschitz mappings into a Hilbert space (1984).
    Achlioptas. Database-friendly random projections: Johnson-Lindenstrauss with binary coins (2003).
    Charikar, Chen, Farach-Colton. Finding Frequent Items in Data Streams (2002).
    Park et al. TRAK: Attributing Model Behavior at Scale (2023), arXiv:2303.14186.
    Choe et al. What is Your Data Worth to GPT? LLM-Scale Data Valuation with Influence Functions
    (LoGra, 2024), arXiv:2405.13954.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from gradinfo.capture.per_example import check_batch, per_example_grads
from gradinfo.core.types import LossFn
from gradinfo.core.validate import one_of, positive_int

Kind = Literal["gaussian", "rademacher", "countsketch"]
KINDS: tuple[str, ...] = ("gaussian", "rademacher", "countsketch")

_CHUNK_BYTES = 256 * 2**20
"""Budget for one chunk of per-example gradients (``chunk_size x P``) when ``chunk_size`` is not given."""
_CACHE_BYTES = 256 * 2**20
"""Keep the generated projection across chunks when all of it fits in this many bytes."""
_BLOCK_ELEMENTS = 2**22
"""Entries of ``R`` generated at once (``dim x columns``); fixed so that ``R`` depends on ``seed`` only."""


@dataclass(frozen=True)
class _Block:
    """Columns ``start:stop`` of the flattened parameter ``name``, generated from ``seed``."""

    name: str
    start: int
    stop: int
    seed: int


def project_per_example(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Tensor,
    dim: int,
    *,
    kind: Kind = "gaussian",
    seed: int = 0,
    chunk_size: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Sketch every example's gradient with one seeded random projection: ``R g_b``, ``[B, dim]``.

    Caveats: when the dense ``R`` (``dim x P`` entries) exceeds 256 MiB, the dense kinds regenerate it for
    every chunk, ``ceil(B / chunk_size) x dim x P`` random draws in all: pass a large ``chunk_size`` or use
    ``"countsketch"`` (``O(P)`` per chunk) for big models. ``g_b`` is the gradient of
    ``loss_fn(model(inputs[b:b+1]), targets[b:b+1])`` as ``per_example_grads`` defines it (its rules
    for dropout, BatchNorm and tied weights apply). Parameters are visited in ``named_parameters()``
    order (trainable only), each flattened row-major.

    Args:
        model: the network.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``, applied to one example at a time.
        inputs: ``[B, ...]`` model inputs.
        targets: ``[B, ...]`` targets.
        dim: sketch dimension, >= 1.
        kind: ``"gaussian"``, ``"rademacher"`` or ``"countsketch"``.
        seed: determines ``R``; the same seed gives the same ``R`` for the same parameter names and shapes.
        chunk_size: examples per chunk; by default as many as fit in 256 MiB of per-example gradients.
        dtype: floating dtype of the sketch (and of the arithmetic).

    Returns:
        ``[B, dim]`` sketches, row b the sketch of example b's gradient, on the parameters' device.

    Raises:
        TypeError: ``model`` is not a module, ``inputs``/``targets`` are not tensors, ``dim``/``seed``/
            ``chunk_size`` are not ints, or ``dtype`` is not a floating torch dtype.
        ValueError: batch sizes differ or are 0, ``dim`` or ``chunk_size`` < 1, ``kind`` is unknown, or the
            model has no trainable parameters.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_batch(inputs, targets)
    positive_int("dim", dim)
    one_of("kind", kind, KINDS)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    if chunk_size is not None:
        positive_int("chunk_size", chunk_size)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype such as torch.float32, got {dtype!r}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("model has no trainable parameters (every parameter has requires_grad=False)")

    device = named[0][1].device
    blocks = _blocks([(n, p.numel()) for n, p in named], dim, seed)
    if chunk_size is None:
        row_bytes = sum(p.numel() * p.element_size() for _, p in named)
        chunk_size = max(1, _CHUNK_BYTES // row_bytes)
    entries = sum(b.stop - b.start for b in blocks) * (1 if kind == "countsketch" else dim)
    cached = [_generate(kind, dim, b, dtype, device) for b in blocks] if entries * 8 <= _CACHE_BYTES else None

    batch = inputs.shape[0]
    out = torch.empty(batch, dim, dtype=dtype, device=device)  # [B, dim]
    for start in range(0, batch, chunk_size):
        stop = min(start + chunk_size, batch)
        grads = per_example_grads(model, loss_fn, inputs[start:stop], targets[start:stop])  # {n: [b, *shape]}
        flat = {n: g.reshape(stop - start, -1) for n, g in grads.items()}  # {n: [b, P_n]}
        sketch = torch.zeros(stop - start, dim, dtype=dtype, device=device)  # [b, dim]
        for i, block in enumerate(blocks):
            g = flat[block.name][:, block.start : block.stop].to(dtype)  # [b, cols]
            proj = cached[i] if cached is not None else _generate(kind, dim, block, dtype, device)
            if kind == "countsketch":
                buckets, signs = proj  # [cols], [cols]
                sketch.index_add_(1, buckets, g * signs)
            else:
                sketch.addmm_(g, proj.T)  # [b, cols] @ [cols, dim]
        out[start:stop] = sketch
    return out


def _blocks(sizes: list[tuple[str, int]], dim: int, seed: int) -> list[_Block]:
    """Split each flattened parameter into fixed-width column blocks with their own seeds."""
    width = max(1, _BLOCK_ELEMENTS // dim)
    blocks = []
    for name, numel in sizes:
        for index, start in enumerate(range(0, numel, width)):
            digest = hashlib.blake2b(f"{seed}/{name}/{index}".encode(), digest_size=8).digest()
            block_seed = int.from_bytes(digest, "little") & (2**63 - 1)
            blocks.append(_Block(name, start, min(start + width, numel), block_seed))
    return blocks


def _generate(
    kind: str, dim: int, block: _Block, dtype: torch.dtype, device: torch.device
) -> Tensor | tuple[Tensor, Tensor]:
    """The block's columns of ``R``: dense ``[dim, cols]``, or ``(buckets [cols], signs [cols])``.

    Drawn on the CPU generator so that ``R`` does not depend on the device.
    """
    gen = torch.Generator().manual_seed(block.seed)
    cols = block.stop - block.start
    if kind == "countsketch":
        buckets = torch.randint(0, dim, (cols,), generator=gen)  # [cols]
        signs = torch.randint(0, 2, (cols,), generator=gen, dtype=torch.uint8).to(dtype) * 2 - 1  # [cols]
        return buckets.to(device), signs.to(device)
    if kind == "gaussian":
        entries = torch.randn(dim, cols, generator=gen).to(dtype)  # [dim, cols]
    else:
        entries = torch.randint(0, 2, (dim, cols), generator=gen, dtype=torch.uint8).to(dtype) * 2 - 1
    return (entries * dim**-0.5).to(device)
