"""FZooS: federated zeroth-order optimisation with trajectory-informed GP surrogate gradients.

From "Federated Zeroth-Order Optimization using Trajectory-Informed Surrogate Gradients" (2024, Shu,
Lin, Dai, Low; arXiv:2308.04077; official code shuyao95/FZooS, ``optimizers.py::fzoos_opt``,
``settings.py::FedZoo``). Client ``i`` never sees a gradient; it keeps every query ``(x, f_i(x))`` it
made and, at each local step,

1. **local surrogate**: fits a GP (Matern-5/2 kernel, unit prior variance, noise ``1e-6``, lengthscale by
   maximum marginal likelihood) to the ``n = 150`` past queries nearest the current ``x`` with the values
   min-max normalised, ``y~ = (y - y_min) / (y_max - y_min)``; its surrogate gradient is the gradient of
   the posterior mean, rescaled,

       grad mu_i(x) = (y_max - y_min) sum_j alpha_j grad_x k(x, x_j),    alpha = (K + 1e-6 I)^{-1} y~;

2. **adaptive gradient correction** (from the second round on): with ``gamma_t = 1 / (t + 1)``,

       g = grad mu_i(x) + gamma_t (grad F^(x) - grad f^_i(x)),

   where ``f^_i(x) = phi(x)^T nu_i`` is the client's random-Fourier-feature (RFF) surrogate and
   ``F^ = (1/N) sum_i f^_i`` the server's average of them, ``phi(x) = sqrt(2/M) cos(Omega^T x + b)``
   with ``Omega ~ N(0, I / l^2)``, ``b ~ U[0, 2 pi)`` shared by all (``M = 10,000``, ``l = 1``), so

       grad f^(x) = -sqrt(2/M) sum_m nu_m omega_m sin(omega_m^T x + b_m);

3. a step of the local optimiser (Adam, lr 0.01 as in the official experiments) and one query at the
   new ``x``; then **trajectory exploration**: among 100 points drawn uniformly from the box of radius
   0.01 around ``x``, query the 5 where the GP's gradient is most uncertain, i.e. the largest trace of
   the posterior covariance of ``grad f_i``,

       tr Cov[grad f_i(x)] = d c(0) - sum_a G_a^T (K + 1e-6 I)^{-1} G_a,    G_{ja} = d k(x, x_j) / d x_a.

After ``T`` local steps the server averages the clients' points. At the start of every later round each
client queries the new global point and 50 more chosen the same way (from 200 candidates in a box of
radius ``mean|x - x_i| / 2``, half the mean move between its last point and the new global one), fits
``nu_i`` by ridge regression of ``y - y_min`` on ``phi`` over its 500 nearest queries (the dual form
``nu = Phi^T (Phi Phi^T + lambda I)^{-1} (y - y_min)``; ``lambda = 1e-6`` where the official code takes
the minimum-norm interpolant), and sends only ``nu_i`` (``M`` numbers): the correction costs no query
beyond these.

Deviations from the official code, all stated: the posterior-mean gradient is analytic (the official
code takes a finite difference with step 1e-20); the lengthscale's maximum likelihood is found by a
coarse-to-fine grid over ``[1e-5, 1e5]``, after a round's first step searched first within a quarter
decade of the previous step's value (the official: L-BFGS with 20 restarts at every step); the gradient
variance uses the fitted kernel (the official code plugs the Matern lengthscale into an RBF, for the
first coordinate only); the exploration radius around the global point is at least ``radius``; the
global point is the plain average (the official server also rejects an average that increases the
true ``F``, which would spend uncounted queries); the RFF queries are made at the start of rounds 2..R
(the official code also makes them after the last round, where they serve nothing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from gradinfo.core.registry import Conformance, register
from gradinfo.core.validate import one_of, positive, positive_int
from gradinfo.optim.fedzo import FederatedResult, Objective, _check_run, _local_optimizer

KERNELS: tuple[str, ...] = ("matern52", "rbf")
_SQRT5 = math.sqrt(5.0)


@dataclass(frozen=True)
class GaussianProcess:
    """A fitted GP on min-max normalised values (unit prior variance, zero prior mean).

    Attributes:
        inputs: ``[n, d]`` training inputs.
        chol: ``[n, n]`` lower Cholesky factor of ``K + noise I``.
        alpha: ``[n]`` ``(K + noise I)^{-1} y~``.
        lengthscale: the kernel lengthscale.
        kernel: ``"matern52"`` or ``"rbf"``.
        noise: the observation-noise variance added to the diagonal.
        y_min: the smallest training value (the normalisation's shift).
        y_scale: ``y_max - y_min`` (the normalisation's scale; 0 when all values are equal).
    """

    inputs: Tensor
    chol: Tensor
    alpha: Tensor
    lengthscale: float
    kernel: str
    noise: float
    y_min: float
    y_scale: float


def _kernel_from_sqdist(sqdist: Tensor, lengthscale: Tensor | float, kernel: str) -> Tensor:
    """``k`` from squared distances ``[..., n, m]``; ``lengthscale`` broadcasts against them."""
    if kernel == "rbf":
        return torch.exp(sqdist / (-2.0 * lengthscale**2))
    s = sqdist.clamp_min(0.0).sqrt() * (_SQRT5 / lengthscale)
    return (1.0 + s * (1.0 + s / 3.0)) * torch.exp(-s)


def _grad_coefficient(sqdist: Tensor, lengthscale: float, kernel: str) -> Tensor:
    """``c(r)`` with ``grad_x k(x, x') = -c(r) (x - x')`` (``c(0)``: the prior gradient variance per axis)."""
    if kernel == "rbf":
        return torch.exp(-0.5 * sqdist / lengthscale**2) / lengthscale**2
    s = _SQRT5 * sqdist.clamp_min(0.0).sqrt() / lengthscale
    return 5.0 / (3.0 * lengthscale**2) * (1.0 + s) * torch.exp(-s)


def kernel_matrix(a: Tensor, b: Tensor, *, lengthscale: float, kernel: str = "matern52") -> Tensor:
    """The kernel matrix ``k(a_i, b_j)``.

    Args:
        a: ``[n, d]`` inputs.
        b: ``[m, d]`` inputs.
        lengthscale: > 0.
        kernel: ``"matern52"`` (``(1 + s + s^2/3) e^{-s}``, ``s = sqrt(5) r / l``) or ``"rbf"``
            (``exp(-r^2 / (2 l^2))``).

    Returns:
        ``[n, m]``.
    """
    return _kernel_from_sqdist(torch.cdist(a, b).square(), lengthscale, kernel)


def kernel_grad(x: Tensor, inputs: Tensor, *, lengthscale: float, kernel: str = "matern52") -> Tensor:
    """``d k(x_c, inputs_j) / d x_c``: ``-c(r) (x_c - inputs_j)``.

    Args:
        x: ``[c, d]`` points.
        inputs: ``[n, d]`` training inputs.
        lengthscale: > 0.
        kernel: ``"matern52"`` or ``"rbf"``.

    Returns:
        ``[c, n, d]``.
    """
    diff = x[:, None, :] - inputs[None, :, :]  # [c, n, d]
    coef = _grad_coefficient(diff.square().sum(-1), lengthscale, kernel)  # [c, n]
    return -coef[..., None] * diff


def _log_marginal_likelihood(
    sqdist: Tensor, y: Tensor, log10_ls: Tensor, kernel: str, noise: float
) -> Tensor:
    """``log p(y | l)`` for each lengthscale ``10**log10_ls`` ``[L]`` (``-inf`` where Cholesky fails)."""
    ls = (10.0**log10_ls)[:, None, None]  # [L, 1, 1]
    eye = torch.eye(y.numel(), dtype=y.dtype)  # [n, n]
    k = _kernel_from_sqdist(sqdist[None], ls, kernel) + noise * eye  # [L, n, n]
    chol, info = torch.linalg.cholesky_ex(k)  # [L, n, n], [L]
    alpha = torch.cholesky_solve(y[None, :, None].expand(len(log10_ls), -1, 1), chol)  # [L, n, 1]
    fit = -0.5 * (y[None, :, None] * alpha).sum((1, 2))  # [L]
    logdet = torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)  # [L]
    lml = fit - logdet - 0.5 * y.numel() * math.log(2 * math.pi)  # [L]
    return torch.where(info == 0, lml.nan_to_num(nan=-math.inf), torch.full_like(lml, -math.inf))


def _fit_lengthscale(sqdist: Tensor, y: Tensor, kernel: str, noise: float, near: float | None) -> float:
    """Maximise the marginal likelihood over ``log10 l`` in ``[-5, 5]``: a 0.25-decade grid (or, given
    ``near``, a window of +-0.25 decades around it, left for the full grid when its best point is on
    the window's edge), then grids of 0.05 and 0.01 decades around the best point."""
    if near is not None:
        centre = math.log10(near)
        grid = torch.linspace(centre - 0.25, centre + 0.25, 11, dtype=y.dtype).clamp(-5.0, 5.0)  # [11]
        lml = _log_marginal_likelihood(sqdist, y, grid, kernel, noise)  # [11]
        best = int(torch.argmax(lml))
        if 0 < best < len(grid) - 1 and torch.isfinite(lml[best]):
            half_widths: tuple[float, ...] = (0.05,)
        else:
            near = None
    if near is None:
        grid = torch.linspace(-5.0, 5.0, 41, dtype=y.dtype)  # [41]
        lml = _log_marginal_likelihood(sqdist, y, grid, kernel, noise)  # [41]
        if not torch.isfinite(lml).any():
            raise ValueError("the GP kernel matrix is not positive definite for any lengthscale; raise noise")
        half_widths = (0.25, 0.05)
    for half_width in half_widths:
        best_log = float(grid[int(torch.argmax(lml))])
        grid = torch.linspace(best_log - half_width, best_log + half_width, 11, dtype=y.dtype).clamp(
            -5.0, 5.0
        )
        lml = _log_marginal_likelihood(sqdist, y, grid, kernel, noise)  # [11]
    return float(10.0 ** grid[int(torch.argmax(lml))])


def fit_gp(
    inputs: Tensor,
    values: Tensor,
    *,
    kernel: Literal["matern52", "rbf"] = "matern52",
    noise: float = 1e-6,
    lengthscale: float | None = None,
    near: float | None = None,
) -> GaussianProcess:
    """Fit a GP to ``(inputs, values)`` after min-max normalising the values.

    Args:
        inputs: ``[n, d]`` query points (n >= 1).
        values: ``[n]`` their function values.
        kernel: ``"matern52"`` (the paper's) or ``"rbf"``.
        noise: observation-noise variance on the normalised values (1e-6, the paper's ``alpha``).
        lengthscale: a fixed lengthscale; None fits it by maximum marginal likelihood.
        near: a previous fit's lengthscale: the search starts in a quarter-decade window around it
            (falling back to the full search when the optimum is not inside that window).

    Returns:
        The fitted :class:`GaussianProcess` (float64).

    Raises:
        TypeError: ``inputs``/``values`` are not floating point tensors.
        ValueError: mismatched shapes, ``noise`` or ``lengthscale`` <= 0, an unknown kernel, or a kernel
            matrix that is not positive definite.
    """
    for name, t, dims in (("inputs", inputs, 2), ("values", values, 1)):
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise TypeError(f"{name} must be a floating point tensor, got {type(t).__name__}")
        if t.dim() != dims:
            raise ValueError(f"{name} must be {dims}-D, got shape {tuple(t.shape)}")
    if inputs.shape[0] != values.shape[0] or inputs.shape[0] == 0:
        raise ValueError(
            f"inputs [n, d] and values [n] must hold the same n >= 1 points, got shapes "
            f"{tuple(inputs.shape)} and {tuple(values.shape)}"
        )
    one_of("kernel", kernel, KERNELS)
    noise = positive("noise", noise)
    inputs, values = inputs.detach().to(torch.float64), values.detach().to(torch.float64)
    y_min, y_scale = float(values.min()), float(values.max() - values.min())
    y = (values - y_min) / y_scale if y_scale > 0 else torch.zeros_like(values)  # [n]
    sqdist = torch.cdist(inputs, inputs).square()  # [n, n]
    if lengthscale is None:
        ls = _fit_lengthscale(sqdist, y, kernel, noise, None if near is None else positive("near", near))
    else:
        ls = positive("lengthscale", lengthscale)
    k = _kernel_from_sqdist(sqdist, ls, kernel) + noise * torch.eye(len(y), dtype=y.dtype)  # [n, n]
    chol, info = torch.linalg.cholesky_ex(k)  # [n, n]
    if info != 0:
        raise ValueError(f"the GP kernel matrix is not positive definite (lengthscale {ls}); raise noise")
    alpha = torch.cholesky_solve(y[:, None], chol)[:, 0]  # [n]
    return GaussianProcess(inputs, chol, alpha, ls, kernel, noise, y_min, y_scale)


def gp_mean(gp: GaussianProcess, x: Tensor) -> Tensor:
    """Posterior mean in the original value units: ``y_min + (y_max - y_min) k(x, X) alpha``.

    Args:
        gp: a fitted :class:`GaussianProcess`.
        x: ``[c, d]`` points.

    Returns:
        ``[c]``.
    """
    k = kernel_matrix(x.to(torch.float64), gp.inputs, lengthscale=gp.lengthscale, kernel=gp.kernel)  # [c, n]
    return gp.y_min + gp.y_scale * (k @ gp.alpha)


def gp_mean_grad(gp: GaussianProcess, x: Tensor) -> Tensor:
    """Gradient of the posterior mean, the surrogate gradient: ``(y_max - y_min) sum_j alpha_j grad k``.

    Args:
        gp: a fitted :class:`GaussianProcess`.
        x: ``[c, d]`` points.

    Returns:
        ``[c, d]``.
    """
    dk = kernel_grad(
        x.to(torch.float64), gp.inputs, lengthscale=gp.lengthscale, kernel=gp.kernel
    )  # [c, n, d]
    return gp.y_scale * torch.einsum("cnd,n->cd", dk, gp.alpha)


def _grad_variance(inputs: Tensor, lengthscale: float, kernel: str, noise: float, x: Tensor) -> Tensor:
    """``tr Cov[grad f(x_c) | inputs]`` (normalised units) ``[c]`` for a GP conditioned on ``inputs``."""
    k = kernel_matrix(inputs, inputs, lengthscale=lengthscale, kernel=kernel)  # [n, n]
    chol = torch.linalg.cholesky(k + noise * torch.eye(len(inputs), dtype=k.dtype))  # [n, n]
    g = kernel_grad(x, inputs, lengthscale=lengthscale, kernel=kernel)  # [c, n, d]
    c, n, d = g.shape
    v = torch.linalg.solve_triangular(chol, g.permute(1, 0, 2).reshape(n, c * d), upper=False)  # [n, c*d]
    explained = v.square().sum(0).reshape(c, d).sum(-1)  # [c]
    prior = d * float(_grad_coefficient(torch.zeros(()), lengthscale, kernel))
    return prior - explained


def gp_grad_variance(gp: GaussianProcess, x: Tensor) -> Tensor:
    """Trace of the posterior covariance of ``grad f`` at each point, on the normalised scale.

    Args:
        gp: a fitted :class:`GaussianProcess`.
        x: ``[c, d]`` points.

    Returns:
        ``[c]``: ``d c(0) - sum_a G_a^T (K + noise I)^{-1} G_a`` with ``G_{ja} = d k(x, x_j) / d x_a``.
    """
    return _grad_variance(gp.inputs, gp.lengthscale, gp.kernel, gp.noise, x.to(torch.float64))


def rff_features(
    dim: int, features: int, *, lengthscale: float = 1.0, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Random Fourier features of the RBF kernel ``exp(-|x - x'|^2 / (2 l^2))`` (Rahimi & Recht 2007).

    Args:
        dim: input dimension ``d``.
        features: ``M``.
        lengthscale: ``l`` > 0.
        generator: the source of randomness (shared by all clients so their surrogates add up).

    Returns:
        ``omega`` ``[d, M]`` with entries ``N(0, 1 / l^2)`` and ``offset`` ``[M]`` uniform on ``[0, 2 pi)``.
    """
    positive_int("dim", dim)
    positive_int("features", features)
    lengthscale = positive("lengthscale", lengthscale)
    omega = torch.randn(dim, features, generator=generator, dtype=torch.float64) / lengthscale  # [d, M]
    offset = 2 * math.pi * torch.rand(features, generator=generator, dtype=torch.float64)  # [M]
    return omega, offset


def rff_map(x: Tensor, omega: Tensor, offset: Tensor) -> Tensor:
    """``phi(x) = sqrt(2 / M) cos(x Omega + b)``: ``[c, d] -> [c, M]``, so ``phi(x) . phi(x') ~ k(x, x')``."""
    return math.sqrt(2.0 / omega.shape[1]) * torch.cos(x.to(torch.float64) @ omega + offset)


def rff_weights(
    inputs: Tensor, values: Tensor, omega: Tensor, offset: Tensor, *, ridge: float = 1e-6
) -> Tensor:
    """Ridge weights ``nu = Phi^T (Phi Phi^T + ridge I)^{-1} (y - y_min)`` of a client's RFF surrogate.

    Args:
        inputs: ``[n, d]`` the client's queries.
        values: ``[n]`` their values.
        omega: ``[d, M]`` and ``offset``: ``[M]`` from :func:`rff_features`.
        ridge: > 0.

    Returns:
        ``nu`` ``[M]``: the only thing a client sends.
    """
    phi = rff_map(inputs, omega, offset)  # [n, M]
    y = values.to(torch.float64) - values.min()  # [n]
    gram = phi @ phi.T + ridge * torch.eye(len(y), dtype=phi.dtype)  # [n, n]
    return phi.T @ torch.linalg.solve(gram, y)


def rff_grad(x: Tensor, weights: Tensor, omega: Tensor, offset: Tensor) -> Tensor:
    """Gradient of ``phi(x)^T nu``: ``-sqrt(2/M) sum_m nu_m omega_m sin(omega_m^T x + b_m)``.

    Args:
        x: ``[c, d]`` points.
        weights: ``nu`` ``[M]``.
        omega: ``[d, M]``; offset: ``[M]``.

    Returns:
        ``[c, d]``.
    """
    s = torch.sin(x.to(torch.float64) @ omega + offset)  # [c, M]
    return -math.sqrt(2.0 / omega.shape[1]) * (s * weights) @ omega.T


def _nearest(xs: Tensor, ys: Tensor, target: Tensor, count: int) -> tuple[Tensor, Tensor]:
    """The ``count`` queries nearest ``target`` ``[d]``: ``[k, d]``, ``[k]``."""
    if len(xs) <= count:
        return xs, ys
    idx = torch.topk((xs - target).square().sum(-1), count, largest=False).indices  # [count]
    return xs[idx], ys[idx]


def _most_uncertain(
    gp: GaussianProcess,
    base: Tensor,
    centre: Tensor,
    radius: float,
    candidates: int,
    count: int,
    gen: torch.Generator,
) -> Tensor:
    """Of ``candidates`` uniform points in the box of ``radius`` around ``centre``, the ``count`` with the
    largest gradient variance given ``base`` ``[n, d]``: ``[count, d]``."""
    box = 2 * torch.rand(candidates, centre.numel(), generator=gen, dtype=torch.float64) - 1  # [C, d]
    cand = centre + radius * box  # [C, d]
    var = _grad_variance(base, gp.lengthscale, gp.kernel, gp.noise, cand)  # [C]
    return cand[torch.topk(var, min(count, candidates)).indices]


@register(
    "fzoos",
    family="optim",
    paper=8,
    summary="Federated zeroth-order steps on GP surrogate gradients; a shared RFF surrogate corrects drift",
    claim="gradinfo.claims.fzoos:check",
    example="gradinfo.optim.fzoos:CONFORMANCE",
)
def fzoos(
    functions: Sequence[Objective],
    x0: Tensor,
    *,
    rounds: int = 10,
    local_steps: int = 10,
    lr: float = 0.01,
    optimizer: Literal["adam", "sgd"] = "adam",
    init_queries: int = 10,
    history: int = 150,
    explore: int = 5,
    candidates: int = 100,
    radius: float = 0.01,
    kernel: Literal["matern52", "rbf"] = "matern52",
    noise: float = 1e-6,
    features: int = 10_000,
    rff_lengthscale: float = 1.0,
    rff_explore: int = 50,
    rff_candidates: int = 200,
    rff_history: int = 500,
    rff_ridge: float = 1e-6,
    seed: int = 0,
) -> FederatedResult:
    """Minimise ``F = (1/N) sum_i f_i`` by FZooS from function values only.

    "Federated Zeroth-Order Optimization using Trajectory-Informed Surrogate Gradients" (2024). Local
    step ``t`` of client ``i``: ``g = grad mu_i(x) + gamma_t (grad F^(x) - grad f^_i(x))``,
    ``gamma_t = 1/(t+1)``, where ``mu_i`` is the posterior mean of a GP fitted to the client's query
    trajectory and ``F^``, ``f^_i`` are the server's averaged and the client's own RFF surrogates (see
    the module docstring for every formula and the official defaults used here).

    Caveats: cost grows with ``history`` (a Cholesky per lengthscale tried per step) and with
    ``features`` x ``rff_history`` (one RFF fit per client and round).

    Args:
        functions: ``N`` client black boxes, each ``[d] -> scalar`` (tensor or float).
        x0: ``[d]`` floating point start.
        rounds: communication rounds ``R``.
        local_steps: local steps ``T`` per round.
        lr: local optimiser learning rate (0.01).
        optimizer: ``"adam"`` (the official experiments) or ``"sgd"``.
        init_queries: queries in the box of ``radius`` around ``x0`` before the first round (10).
        history: past queries nearest ``x`` the local GP is fitted to (150).
        explore: exploration queries after every local step but the last (5).
        candidates: uniform candidates they are chosen from (100).
        radius: half-width of the exploration box (0.01).
        kernel: the local GP's kernel, ``"matern52"`` (the paper's) or ``"rbf"``.
        noise: the GP's noise variance on normalised values (1e-6).
        features: RFF features ``M`` (10,000).
        rff_lengthscale: the RFF kernel's lengthscale (1.0).
        rff_explore: queries added around each new global point before the RFF fit (50).
        rff_candidates: candidates they are chosen from (200).
        rff_history: queries nearest the global point the RFF surrogate is fitted to (500).
        rff_ridge: ridge of the RFF fit (1e-6).
        seed: seeds the features, exploration draws and initial queries.

    Returns:
        A :class:`FederatedResult` (float64) whose ``queries`` count every evaluation of every ``f_i``:
        ``init_queries + 1 + T + explore (T - 1)`` in the first round, ``1 + rff_explore + T +
        explore (T - 1)`` in each later one.

    Raises:
        TypeError: ``functions`` is not a sequence of callables, ``x0`` is not a floating tensor, or a
            count/seed is not an int.
        ValueError: ``x0`` is not 1-D, a count out of range, a scale <= 0, or an unknown kernel/optimizer.
    """
    _check_run(functions, x0, rounds, local_steps, lr, optimizer, seed)
    positive_int("init_queries", init_queries, minimum=0)
    positive_int("history", history, minimum=2)
    positive_int("explore", explore, minimum=0)
    positive_int("candidates", candidates)
    positive_int("rff_explore", rff_explore, minimum=0)
    positive_int("rff_candidates", rff_candidates)
    positive_int("rff_history", rff_history, minimum=2)
    positive("radius", radius)
    positive("noise", noise)
    positive("rff_ridge", rff_ridge)
    one_of("kernel", kernel, KERNELS)
    gen = torch.Generator().manual_seed(seed)
    dim, n_clients = x0.numel(), len(functions)
    omega, offset = rff_features(dim, features, lengthscale=rff_lengthscale, generator=gen)  # [d, M], [M]
    xs: list[Tensor] = [torch.empty(0, dim, dtype=torch.float64) for _ in functions]
    ys: list[Tensor] = [torch.empty(0, dtype=torch.float64) for _ in functions]

    def query(i: int, points: Tensor) -> None:
        values = torch.tensor([float(functions[i](p)) for p in points], dtype=torch.float64)  # [k]
        xs[i], ys[i] = torch.cat([xs[i], points]), torch.cat([ys[i], values])

    x = x0.detach().to(torch.float64).clone()  # [d]
    for i in range(n_clients):
        box = 2 * torch.rand(init_queries, dim, generator=gen, dtype=torch.float64) - 1  # [n0, d]
        query(i, x + radius * box)
    iterates, counts = [x.clone()], [[len(y) for y in ys]]
    ends = [x] * n_clients
    corrections: list[Tensor | None] = [None] * n_clients
    for r in range(rounds):
        for i in range(n_clients):
            query(i, x[None])
            if r == 0:
                continue
            base, values = _nearest(xs[i], ys[i], x, history)
            gp = fit_gp(base, values, kernel=kernel, noise=noise)
            box_radius = max(float((x - ends[i]).abs().mean()) / 2, radius)
            query(i, _most_uncertain(gp, base, x, box_radius, rff_candidates, rff_explore, gen))
        if r > 0:
            weights = [
                rff_weights(*_nearest(xs[i], ys[i], x, rff_history), omega, offset, ridge=rff_ridge)
                for i in range(n_clients)
            ]  # N x [M]
            global_weights = torch.stack(weights).mean(0)  # [M]
            corrections = [global_weights - w for w in weights]  # grad F^ - grad f^_i is linear in nu
        for i in range(n_clients):
            xi = x.clone().requires_grad_(True)  # [d]
            opt = _local_optimizer(optimizer, xi, lr)
            for t in range(local_steps):
                base, values = _nearest(xs[i], ys[i], xi.detach(), history)
                gp = fit_gp(base, values, kernel=kernel, noise=noise, near=None if t == 0 else gp.lengthscale)
                g = gp_mean_grad(gp, xi.detach()[None])[0]  # [d]
                if corrections[i] is not None:
                    g = g + rff_grad(xi.detach()[None], corrections[i], omega, offset)[0] / (t + 1)
                xi.grad = g
                opt.step()
                point = xi.detach().clone()  # [d]
                query(i, point[None])
                if t < local_steps - 1 and explore > 0:
                    base = torch.cat([gp.inputs, point[None]])  # [n + 1, d]
                    query(i, _most_uncertain(gp, base, point, radius, candidates, explore, gen))
            ends[i] = xi.detach()
        x = torch.stack(ends).mean(0)  # [d]
        iterates.append(x.clone())
        counts.append([len(y) for y in ys])
    return FederatedResult(x=x, iterates=torch.stack(iterates), queries=torch.tensor(counts))


def _conformance(seed: int) -> FederatedResult:
    def quad(c: float):
        return lambda x: ((x - c) ** 2).sum()

    return fzoos(
        [quad(0.2), quad(0.6)],
        torch.zeros(3, dtype=torch.float64),
        rounds=2,
        local_steps=3,
        features=64,
        rff_explore=4,
        rff_candidates=16,
        candidates=16,
        seed=seed,
    )


CONFORMANCE = Conformance(
    call=_conformance,
    bad_calls=(
        lambda: fzoos([], torch.zeros(3)),
        lambda: fzoos([lambda x: x.sum()], torch.zeros(2, 2)),
        lambda: fzoos([lambda x: x.sum()], torch.zeros(3, dtype=torch.int64)),
        lambda: fzoos([lambda x: x.sum()], torch.zeros(3), rounds=0),
        lambda: fzoos([lambda x: x.sum()], torch.zeros(3), kernel="matern32"),
        lambda: fzoos([lambda x: x.sum()], torch.zeros(3), radius=-1.0),
    ),
)
