"""Matrix-free inverse empirical-Fisher products from m gradients: the static M-FAC algorithm.

With ``m`` flattened gradients ``g_1..g_m`` (rows of ``G``, ``[m, d]``) and damping ``lambda > 0``, the
damped empirical Fisher is

    F = lambda I + (1/m) sum_i g_i g_i^T.

Adding the rank-one terms one at a time and applying Sherman-Morrison to each gives the recursion of
M-FAC (Frantar, Kurtic, Alistarh 2021, Section 3, "static algorithm"): with ``H_0 = I / lambda`` and
``H_i = (lambda I + (1/m) sum_{j<=i} g_j g_j^T)^{-1}``,

    H_i = H_{i-1} - (H_{i-1} g_i)(H_{i-1} g_i)^T / (m + g_i^T H_{i-1} g_i).

Never forming ``H_i``, the precomputation keeps the vectors ``h_i = H_{i-1} g_i`` and the scalars
``denom_i = m + g_i^T h_i``, each ``h_i`` obtained from the earlier ones in ``O(d i)``,

    h_i = g_i / lambda - sum_{j<i} (h_j . g_i / denom_j) h_j,

so ``O(d m^2)`` in all. Then, in ``O(d m)`` each,

    F^{-1} x   = x / lambda - sum_i (h_i . x / denom_i) h_i          (inverse-Hessian-vector product)
    [F^{-1}]_jj = 1 / lambda - sum_i (h_i)_j^2 / denom_i             (inverse diagonal).

Block variant: the parameter vector is cut into consecutive blocks of ``block_size`` entries and each
block gets its own ``F_b = lambda I + (1/m) sum_i g_i[b] g_i[b]^T`` (a block-diagonal approximation of
``F``), all blocks precomputed together as one batched recursion. A last, shorter block is zero-padded:
padded coordinates carry zero gradients, so they change nothing in the real ones.

References:
    Frantar, Kurtic, Alistarh. M-FAC: Efficient Matrix-Free Approximations of Second-Order Information
    (2021), NeurIPS, arXiv:2107.03356.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from gradinfo.core.validate import positive, positive_int


class InverseFisher:
    """The inverse of ``lambda I + (1/m) sum_i g_i g_i^T`` (or of its block-diagonal part), matrix-free.

    Static M-FAC algorithm from "M-FAC: Efficient Matrix-Free Approximations of Second-Order
    Information" (2021): ``O(d m^2)`` precomputation of the recursive Sherman-Morrison vectors ``h_i`` at
    construction, then :meth:`ihvp` and :meth:`diag` in ``O(d m)``. The ``d x d`` matrix is never formed;
    memory is one ``[m, d]`` buffer (plus padding of the last block).

    Caveats: the gradients are copied, so ``grads`` may be reused afterwards. Precision follows the dtype
    of ``grads``: pass float64 for reference-grade accuracy (relative error ~1e-12 on well-scaled
    problems); float32 loses digits when ``lambda`` is tiny next to ``|g|^2 / m``.

    Args:
        grads: ``[m, d]`` floating point tensor, one flattened gradient per row (all finite).
        damping: ``lambda > 0``.
        block_size: treat consecutive blocks of this many parameters independently (``None``: one block
            of size ``d``, the full matrix).

    Raises:
        TypeError: ``grads`` is not a floating point tensor, ``damping`` not a number, ``block_size`` not
            an int.
        ValueError: ``grads`` is not 2-D with ``m, d >= 1`` or has non-finite entries, ``damping <= 0``,
            ``block_size < 1``.

    Example:
        >>> fisher = InverseFisher(torch.randn(8, 100, dtype=torch.float64), damping=1e-3)
        >>> fisher.ihvp(torch.ones(100, dtype=torch.float64)).shape
        torch.Size([100])
    """

    def __init__(self, grads: Tensor, damping: float, *, block_size: int | None = None) -> None:
        if not isinstance(grads, Tensor) or not grads.is_floating_point():
            what = grads.dtype if isinstance(grads, Tensor) else type(grads).__name__
            raise TypeError(f"grads must be a floating point tensor [m, d], got {what}")
        if grads.dim() != 2 or grads.shape[0] == 0 or grads.shape[1] == 0:
            raise ValueError(
                f"grads must be [m, d] with m, d >= 1 (one flattened gradient per row), "
                f"got shape {tuple(grads.shape)}; stack flattened gradients with torch.stack"
            )
        self.damping = positive("damping", damping)
        self.num_grads, self.dim = grads.shape
        self.block_size = self.dim if block_size is None else positive_int("block_size", block_size)
        if not bool(torch.isfinite(grads).all()):
            raise ValueError("grads has non-finite entries (nan or inf); drop or repair those gradients")
        blocks = math.ceil(self.dim / self.block_size)
        pad = blocks * self.block_size - self.dim
        with torch.no_grad():
            g = F.pad(grads.detach(), (0, pad))  # [m, b * s]
            g = g.reshape(self.num_grads, blocks, self.block_size).transpose(0, 1).contiguous()  # [b, m, s]
            self._h, self._denom = _precompute(g, self.damping)  # [b, m, s], [b, m]

    @property
    def dtype(self) -> torch.dtype:
        return self._h.dtype

    def ihvp(self, v: Tensor) -> Tensor:
        """``F^{-1} v`` in ``O(d m)`` per vector.

        Args:
            v: ``[d]`` or ``[n, d]`` (``n`` vectors at once), floating point.

        Returns:
            ``F^{-1} v`` with the shape of ``v``, in the dtype of the gradients.

        Raises:
            TypeError: ``v`` is not a floating point tensor.
            ValueError: ``v``'s last axis is not ``d`` or it has more than 2 axes.
        """
        if not isinstance(v, Tensor) or not v.is_floating_point():
            what = v.dtype if isinstance(v, Tensor) else type(v).__name__
            raise TypeError(f"v must be a floating point tensor [d] or [n, d], got {what}")
        if v.dim() not in (1, 2) or v.shape[-1] != self.dim:
            raise ValueError(f"v must have shape [{self.dim}] or [n, {self.dim}], got {tuple(v.shape)}")
        blocks, _, size = self._h.shape
        with torch.no_grad():
            x = v.detach().to(dtype=self.dtype, device=self._h.device).reshape(-1, self.dim)  # [n, d]
            x = F.pad(x, (0, blocks * size - self.dim)).reshape(-1, blocks, size)  # [n, b, s]
            coef = torch.einsum("bms,nbs->nbm", self._h, x) / self._denom  # [n, b, m]
            out = x / self.damping - torch.einsum("nbm,bms->nbs", coef, self._h)  # [n, b, s]
            out = out.reshape(-1, blocks * size)[:, : self.dim]  # [n, d]
        return out.reshape(v.shape)

    def diag(self) -> Tensor:
        """The diagonal of ``F^{-1}``, ``[d]``: ``1/lambda - sum_i h_i^2 / denom_i``."""
        with torch.no_grad():
            sq = torch.einsum("bms,bm->bs", self._h.square(), 1.0 / self._denom)  # [b, s]
            return (1.0 / self.damping - sq).reshape(-1)[: self.dim]  # [d]


def _precompute(g: Tensor, damping: float) -> tuple[Tensor, Tensor]:
    """The recursion ``h_i = g_i/lambda - sum_{j<i} (h_j.g_i/denom_j) h_j``, batched over blocks.

    Args:
        g: ``[b, m, s]`` gradients split into ``b`` blocks.
        damping: ``lambda``.

    Returns:
        ``h`` ``[b, m, s]`` and ``denom = m + g_i.h_i`` ``[b, m]``.
    """
    blocks, m, _ = g.shape
    h = torch.empty_like(g)  # [b, m, s]
    denom = torch.empty(blocks, m, dtype=g.dtype, device=g.device)  # [b, m]
    for i in range(m):
        gi = g[:, i]  # [b, s]
        hi = gi / damping  # [b, s]
        if i:
            coef = torch.einsum("bjs,bs->bj", h[:, :i], gi) / denom[:, :i]  # [b, i]
            hi = hi - torch.einsum("bj,bjs->bs", coef, h[:, :i])  # [b, s]
        h[:, i] = hi
        denom[:, i] = m + (gi * hi).sum(-1)
    return h, denom
