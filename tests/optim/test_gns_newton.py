"""GNS Newton: the step formula, the minimiser against scipy, and the optimizer against the function."""

from functools import partial

import numpy as np
import pytest
import scipy.optimize
import torch
from torch import nn

from gradinfo.capture import hvp
from gradinfo.optim.gns_newton import GNSNewton, exact_hessian, gns_newton


def logistic_problem(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(40, 5, generator=gen, dtype=torch.float64)
    y = (torch.rand(40, generator=gen, dtype=torch.float64) < 0.5).double()

    def f(x: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(a @ x, y) + 0.01 * x.square().sum()

    return a, y, f


def test_first_step_is_the_regularised_newton_step() -> None:
    _, _, f = logistic_problem()
    x0 = torch.zeros(5, dtype=torch.float64)
    run = gns_newton(f, x0, iters=1)
    x = x0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x), x)
    h = torch.autograd.functional.hessian(f, x0)
    assert run.gammas[1] == 2.0  # accepted at the first try: gamma doubled
    lam = g.norm() / (1.0 + 1e-8)
    expected = x0 - torch.linalg.solve(h + lam * torch.eye(5, dtype=torch.float64), g)
    torch.testing.assert_close(run.x, expected, rtol=1e-12, atol=1e-12)


def test_converges_to_scipy_minimiser_and_losses_decrease() -> None:
    _, _, f = logistic_problem(1)
    run = gns_newton(f, torch.zeros(5, dtype=torch.float64), iters=50, grad_tol=1e-10)
    assert run.converged and run.iterations < 20
    assert bool((run.losses.diff() <= 0).all())  # the acceptance test implies descent

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        t = torch.tensor(x, requires_grad=True)
        value = f(t)
        (g,) = torch.autograd.grad(value, t)
        return float(value.detach()), g.numpy()

    ref = scipy.optimize.minimize(
        fun, np.zeros(5), jac=True, method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 0.0, "maxiter": 1000}
    )
    torch.testing.assert_close(run.x, torch.tensor(ref.x), rtol=1e-6, atol=1e-6)


def test_search_halves_gamma_until_the_decrease_test_holds() -> None:
    _, _, f = logistic_problem(2)
    run = gns_newton(f, torch.zeros(5, dtype=torch.float64), gamma0=1e6, iters=3)
    assert run.solves > run.iterations  # a huge gamma0 (tiny lambda) fails the test at first
    assert bool((run.losses.diff() <= 0).all())


def test_approximate_hessian_is_used() -> None:
    _, _, f = logistic_problem(3)
    x0 = torch.zeros(5, dtype=torch.float64)
    identity = gns_newton(f, x0, hessian=lambda x: torch.eye(5, dtype=torch.float64), iters=1)
    x = x0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x), x)
    lam = g.norm() / (identity.gammas[1] / 2 + 1e-8)  # the accepted try's gamma, doubled after acceptance
    torch.testing.assert_close(identity.x, x0 - g / (1 + lam), rtol=1e-12, atol=1e-12)


def test_optimizer_with_hvp_matches_the_function_with_exact_hessian() -> None:
    torch.manual_seed(0)
    inputs, targets = torch.randn(30, 4, dtype=torch.float64), torch.randint(0, 3, (30,))
    model = nn.Linear(4, 3).double()
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    start = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def f(x: torch.Tensor) -> torch.Tensor:
        w, b = x[:12].reshape(3, 4), x[12:]
        return nn.functional.cross_entropy(inputs @ w.T + b, targets)

    ref = gns_newton(f, start, hessian=exact_hessian(f), iters=4)
    opt = GNSNewton(
        model.named_parameters(), partial(hvp, model, nn.functional.cross_entropy, inputs, targets)
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(inputs), targets)
        loss.backward()
        return loss

    for _ in range(4):
        opt.step(closure)
    got = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(got, ref.x, rtol=1e-7, atol=1e-9)
    assert names == ["weight", "bias"] and shapes[0] == (3, 4)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="iters"):
        gns_newton(lambda x: x.sum(), torch.zeros(3), iters=0)
    with pytest.raises(ValueError, match=r"\[d\]"):
        gns_newton(lambda x: x.sum(), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="hessian"):
        gns_newton(lambda x: x.square().sum(), torch.zeros(3), hessian=lambda x: torch.eye(2))
    with pytest.raises(TypeError, match="named"):
        GNSNewton([torch.zeros(2, requires_grad=True)], lambda v: v)
    model = nn.Linear(2, 1)
    with pytest.raises(TypeError, match="closure"):
        GNSNewton(model.named_parameters(), lambda v: v).step()
