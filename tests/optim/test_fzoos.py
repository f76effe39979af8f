"""FZooS: GP surrogate gradients against finite differences, numpy closed forms and scikit-learn; RFF
kernel and surrogate convergence; query counting; the benchmark's closed-form optimum against scipy."""

import math

import numpy as np
import pytest
import scipy.optimize
import torch
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, Matern

from gradinfo.optim._federated_functions import heterogeneous_quadratic
from gradinfo.optim.fzoos import (
    fit_gp,
    fzoos,
    gp_grad_variance,
    gp_mean,
    gp_mean_grad,
    kernel_matrix,
    rff_features,
    rff_grad,
    rff_map,
    rff_weights,
)


def smooth_data(n: int = 30, d: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=gen, dtype=torch.float64)  # [n, d]
    y = torch.sin(3 * x[:, 0]) + x[:, 1:].square().sum(-1) + 0.5  # [n]
    return x, y


@pytest.mark.parametrize("kernel", ["matern52", "rbf"])
def test_mean_grad_matches_central_differences_of_the_mean(kernel: str) -> None:
    x, y = smooth_data()
    gp = fit_gp(x, y, kernel=kernel)
    points = torch.rand(4, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)  # [4, 3]
    h = 1e-5
    fd = torch.stack(
        [
            (gp_mean(gp, points + h * e) - gp_mean(gp, points - h * e)) / (2 * h)
            for e in torch.eye(3).double()
        ],
        dim=1,
    )  # [4, 3]
    torch.testing.assert_close(gp_mean_grad(gp, points), fd, rtol=1e-6, atol=1e-7)


def test_rbf_mean_and_grad_match_numpy_closed_form_and_sklearn() -> None:
    x, y = smooth_data()
    ls, noise = 0.4, 1e-6
    gp = fit_gp(x, y, kernel="rbf", lengthscale=ls, noise=noise)
    xn, yn = x.numpy(), y.numpy()
    y_norm = (yn - yn.min()) / (yn.max() - yn.min())
    sq = ((xn[:, None, :] - xn[None, :, :]) ** 2).sum(-1)
    alpha = np.linalg.solve(np.exp(-sq / (2 * ls**2)) + noise * np.eye(len(xn)), y_norm)
    points = np.array([[0.2, 0.5, 0.7], [0.9, 0.1, 0.3]])
    mean = np.zeros(2)
    grad = np.zeros((2, 3))
    for c, p in enumerate(points):
        for j in range(len(xn)):
            k = math.exp(-((p - xn[j]) ** 2).sum() / (2 * ls**2))
            mean[c] += alpha[j] * k
            grad[c] += -alpha[j] * k * (p - xn[j]) / ls**2
    scale = yn.max() - yn.min()
    pt = torch.from_numpy(points)
    torch.testing.assert_close(
        gp_mean(gp, pt), torch.from_numpy(yn.min() + scale * mean), rtol=1e-9, atol=1e-9
    )
    torch.testing.assert_close(gp_mean_grad(gp, pt), torch.from_numpy(scale * grad), rtol=1e-8, atol=1e-8)
    sk = GaussianProcessRegressor(RBF(ls, length_scale_bounds="fixed"), alpha=noise, optimizer=None)
    sk.fit(xn, y_norm)
    torch.testing.assert_close(
        gp_mean(gp, pt), torch.from_numpy(yn.min() + scale * sk.predict(points)), rtol=1e-8, atol=1e-8
    )


def test_fitted_matern_lengthscale_matches_sklearn_maximum_likelihood() -> None:
    x, y = smooth_data(n=40)
    gp = fit_gp(x, y)
    y_norm = ((y - y.min()) / (y.max() - y.min())).numpy()
    sk = GaussianProcessRegressor(Matern(nu=2.5), alpha=1e-6, n_restarts_optimizer=5, random_state=0)
    sk.fit(x.numpy(), y_norm)
    assert gp.lengthscale == pytest.approx(sk.kernel_.length_scale, rel=0.02)
    torch.testing.assert_close(
        gp_mean(gp, x[:5]),
        torch.from_numpy(y.min().item() + (y.max() - y.min()).item() * sk.predict(x[:5].numpy())),
        rtol=1e-3,
        atol=1e-3,
    )


def test_warm_started_lengthscale_search_finds_the_same_optimum() -> None:
    x, y = smooth_data(n=40)
    full = fit_gp(x, y).lengthscale
    assert fit_gp(x, y, near=full * 1.3).lengthscale == pytest.approx(full, rel=0.03)
    assert fit_gp(x, y, near=full * 100).lengthscale == pytest.approx(
        full, rel=1e-12
    )  # falls back to the grid


@pytest.mark.parametrize("kernel", ["matern52", "rbf"])
def test_grad_variance_matches_finite_difference_covariances(kernel: str) -> None:
    x, y = smooth_data(n=12, seed=2)
    gp = fit_gp(x, y, kernel=kernel, lengthscale=0.5, noise=1e-4)
    point = torch.tensor([[0.3, 0.6, 0.2]], dtype=torch.float64)  # [1, 3]
    h = 1e-4

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return kernel_matrix(a, b, lengthscale=0.5, kernel=kernel)

    prior, cross = 0.0, []
    for e in torch.eye(3).double():
        p, m = point + h * e, point - h * e
        prior += float((k(p, p) - k(p, m) - k(m, p) + k(m, m)) / (4 * h * h))
        cross.append(((k(p, x) - k(m, x)) / (2 * h))[0].numpy())  # [n]
    gram = k(x, x).numpy() + 1e-4 * np.eye(len(x))
    reference = prior - sum(c @ np.linalg.solve(gram, c) for c in cross)
    assert float(gp_grad_variance(gp, point)[0]) == pytest.approx(reference, rel=1e-5)
    far = gp_grad_variance(gp, torch.full((1, 3), 5.0, dtype=torch.float64))
    assert float(far[0]) == pytest.approx(prior, rel=1e-6)  # no information far from the data


def test_rff_kernel_converges_to_the_exact_rbf_kernel() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(15, 4, generator=gen).double(), torch.rand(10, 4, generator=gen).double()
    exact = kernel_matrix(a, b, lengthscale=0.7, kernel="rbf")  # [15, 10]
    errors = []
    for m in (100, 1_000, 10_000, 100_000):
        omega, offset = rff_features(4, m, lengthscale=0.7, generator=torch.Generator().manual_seed(m))
        errors.append(float((rff_map(a, omega, offset) @ rff_map(b, omega, offset).T - exact).abs().max()))
    assert errors == sorted(errors, reverse=True)
    assert errors[0] / errors[2] > 3  # O(1/sqrt(M)): 10x for 100x the features, with slack
    assert errors[3] < 0.02


def test_rff_grad_is_the_autograd_gradient_of_the_surrogate() -> None:
    omega, offset = rff_features(3, 500, generator=torch.Generator().manual_seed(0))
    nu = torch.randn(500, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = torch.rand(4, 3, dtype=torch.float64, requires_grad=True)
    (auto,) = torch.autograd.grad((rff_map(x, omega, offset) @ nu).sum(), x)
    torch.testing.assert_close(rff_grad(x.detach(), nu, omega, offset), auto, rtol=1e-12, atol=1e-12)


def test_rff_surrogate_gradient_approaches_the_exact_rbf_gp() -> None:
    x, y = smooth_data(n=25)
    ridge, ls = 1e-2, 0.5
    # Exact GP mean on y - y_min with noise = ridge: the kernel that the RFF surrogate approximates.
    alpha = torch.linalg.solve(
        kernel_matrix(x, x, lengthscale=ls, kernel="rbf") + ridge * torch.eye(25), y - y.min()
    )
    points = torch.rand(5, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    dk = (
        -kernel_matrix(points, x, lengthscale=ls, kernel="rbf")[..., None]
        * (points[:, None] - x[None])
        / ls**2
    )
    exact = torch.einsum("cnd,n->cd", dk, alpha)  # [5, 3]
    errors = []
    for m in (200, 50_000):
        omega, offset = rff_features(3, m, lengthscale=ls, generator=torch.Generator().manual_seed(0))
        approx = rff_grad(points, rff_weights(x, y, omega, offset, ridge=ridge), omega, offset)
        errors.append(float((approx - exact).norm() / exact.norm()))
    assert errors[1] < 0.05
    assert errors[1] < errors[0]


def test_gp_surrogate_gradient_of_a_quadratic_from_a_local_trajectory() -> None:
    problem = heterogeneous_quadratic(clients=1, dim=5, heterogeneity=0.0, seed=0)
    f = problem.functions[0]
    x0 = problem.x0
    gen = torch.Generator().manual_seed(0)
    pts = x0 + 0.05 * (2 * torch.rand(60, 5, generator=gen, dtype=torch.float64) - 1)  # [60, 5]
    gp = fit_gp(pts, torch.stack([f(p) for p in pts]))
    xg = x0.clone().requires_grad_(True)
    (true,) = torch.autograd.grad(f(xg), xg)
    est = gp_mean_grad(gp, x0[None])[0]
    assert torch.nn.functional.cosine_similarity(est, true, dim=0) > 0.999
    torch.testing.assert_close(est, true, rtol=0.02, atol=0.02 * float(true.norm()))


def test_counts_every_query_and_follows_the_formula() -> None:
    problem = heterogeneous_quadratic(clients=2, dim=3, seed=1)
    calls = [0, 0]

    def counted(i: int):
        def f(x: torch.Tensor) -> torch.Tensor:
            calls[i] += 1
            return problem.functions[i](x)

        return f

    rounds, steps = 3, 4
    result = fzoos(
        [counted(0), counted(1)],
        problem.x0,
        rounds=rounds,
        local_steps=steps,
        features=200,
        rff_explore=6,
        rff_candidates=20,
        candidates=20,
        init_queries=7,
        explore=3,
    )
    assert result.queries[-1].tolist() == calls
    first = 7 + 1 + steps + 3 * (steps - 1)
    later = 1 + 6 + steps + 3 * (steps - 1)
    assert result.queries[:, 0].tolist() == [7, first, first + later, first + 2 * later]
    assert result.iterates.shape == (rounds + 1, 3)
    torch.testing.assert_close(result.iterates[-1], result.x, rtol=0, atol=0)


def test_fzoos_approaches_the_optimum_of_a_heterogeneous_quadratic() -> None:
    problem = heterogeneous_quadratic(clients=3, dim=4, seed=2)
    result = fzoos(problem.functions, problem.x0, rounds=6, local_steps=6, lr=0.02, features=500, seed=0)
    gaps = [problem.gap(x) for x in result.iterates]
    assert gaps[-1] < 0.01 * gaps[0]


def test_quadratic_benchmark_optimum_matches_scipy() -> None:
    problem = heterogeneous_quadratic(clients=4, dim=6, heterogeneity=2.0, seed=3)

    def F(x: np.ndarray) -> float:
        return problem.global_value(torch.from_numpy(x))

    found = scipy.optimize.minimize(F, problem.x0.numpy(), method="BFGS", options={"gtol": 1e-10})
    np.testing.assert_allclose(problem.x_star.numpy(), found.x, atol=1e-5)
    assert problem.f_star == pytest.approx(found.fun, abs=1e-10)
    same = heterogeneous_quadratic(clients=3, dim=4, heterogeneity=0.0, seed=0)
    x = torch.rand(4, dtype=torch.float64)
    assert len({float(f(x)) for f in same.functions}) == 1


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"functions": "abc"}, TypeError),
        ({"functions": [1.0]}, TypeError),
        ({"x0": torch.zeros(3, dtype=torch.int64)}, TypeError),
        ({"x0": torch.zeros(0)}, ValueError),
        ({"rounds": 1.5}, TypeError),
        ({"local_steps": 0}, ValueError),
        ({"lr": 0.0}, ValueError),
        ({"optimizer": "adagrad"}, ValueError),
        ({"history": 1}, ValueError),
        ({"features": 0}, ValueError),
        ({"rff_lengthscale": -1.0}, ValueError),
        ({"seed": -1}, ValueError),
    ],
)
def test_bad_arguments_raise(kwargs: dict, error: type) -> None:
    args = {"functions": [lambda x: x.square().sum()], "x0": torch.zeros(3)} | kwargs
    with pytest.raises(error):
        fzoos(args.pop("functions"), args.pop("x0"), **args)


def test_fit_gp_and_benchmark_validate_their_inputs() -> None:
    x, y = smooth_data()
    with pytest.raises(ValueError, match="values"):
        fit_gp(x, y[:-1])
    with pytest.raises(ValueError, match="kernel"):
        fit_gp(x, y, kernel="matern32")
    with pytest.raises(TypeError, match="inputs"):
        fit_gp(x.long(), y)
    with pytest.raises(ValueError, match="heterogeneity"):
        heterogeneous_quadratic(clients=2, heterogeneity=2.0)
