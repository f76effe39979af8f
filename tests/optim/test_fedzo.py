"""FedZO: the averaged local step is unbiased for the smoothed objective's gradient (statistical tests
against closed forms), queries are counted exactly, and it converges on a homogeneous quadratic."""

import math

import pytest
import torch

from gradinfo.optim._federated_functions import heterogeneous_quadratic
from gradinfo.optim.fedzo import fedzo

X0 = torch.tensor([0.3, -0.5, 1.0], dtype=torch.float64)


def one_step_estimates(functions, runs: int, queries: int, mu: float) -> torch.Tensor:
    """``x0 - x1`` after one SGD step with lr 1: the round's averaged gradient estimate, one per seed."""
    steps = [
        X0
        - fedzo(
            functions, X0, rounds=1, local_steps=1, queries=queries, mu=mu, lr=1.0, optimizer="sgd", seed=s
        ).x
        for s in range(runs)
    ]
    return torch.stack(steps)  # [runs, d]


def test_step_is_unbiased_for_the_gaussian_smoothed_gradient() -> None:
    # f(x) = sum_k sin(x_k): E_u f(x + mu u) = exp(-mu^2 / 2) sum_k sin(x_k), so the smoothed gradient is
    # exp(-mu^2 / 2) cos(x), visibly shorter than cos(x) at mu = 1.
    mu = 1.0
    samples = one_step_estimates([lambda x: torch.sin(x).sum()], runs=400, queries=8, mu=mu)
    mean, se = samples.mean(0), samples.std(0) / math.sqrt(len(samples))
    smoothed = math.exp(-(mu**2) / 2) * torch.cos(X0)
    assert torch.all((mean - smoothed).abs() < 4 * se), (mean, smoothed, se)
    assert torch.all((mean - torch.cos(X0)).abs() > 4 * se)  # it is not the unsmoothed gradient


def test_server_average_is_unbiased_for_the_global_gradient_of_heterogeneous_quadratics() -> None:
    a = torch.tensor([[1.0, 3.0, 0.5], [2.0, 0.2, 4.0]], dtype=torch.float64)
    c = torch.tensor([[1.0, -1.0, 0.0], [-2.0, 0.5, 1.0]], dtype=torch.float64)
    functions = [lambda x, i=i: 0.5 * (a[i] * (x - c[i]).square()).sum() for i in range(2)]
    samples = one_step_estimates(functions, runs=300, queries=5, mu=0.01)
    mean, se = samples.mean(0), samples.std(0) / math.sqrt(len(samples))
    true = (a * (X0 - c)).mean(0)  # grad of F = mean_i f_i
    assert torch.all((mean - true).abs() < 4 * se), (mean, true, se)


def test_counts_every_query() -> None:
    calls = [0, 0, 0]

    def counted(i: int):
        def f(x: torch.Tensor) -> torch.Tensor:
            calls[i] += 1
            return x.square().sum()

        return f

    result = fedzo([counted(i) for i in range(3)], X0, rounds=4, local_steps=3, queries=6)
    assert result.queries[-1].tolist() == calls == [4 * 3 * 7] * 3
    assert result.queries[:, 1].tolist() == [0, 21, 42, 63, 84]
    assert result.iterates.shape == (5, 3)
    torch.testing.assert_close(result.iterates[0], X0, rtol=0, atol=0)


def test_converges_on_a_homogeneous_quadratic() -> None:
    problem = heterogeneous_quadratic(clients=3, dim=5, heterogeneity=0.0, seed=4)
    result = fedzo(problem.functions, problem.x0, rounds=10, local_steps=10, lr=0.02, seed=1)
    assert problem.gap(result.x) < 0.01 * problem.gap(problem.x0)


def test_is_deterministic_given_the_seed_and_varies_with_it() -> None:
    problem = heterogeneous_quadratic(clients=2, dim=4, seed=0)
    runs = [fedzo(problem.functions, problem.x0, rounds=2, local_steps=2, seed=s).x for s in (5, 5, 6)]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    assert not torch.equal(runs[0], runs[2])


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"functions": []}, TypeError),
        ({"functions": [None]}, TypeError),
        ({"x0": [0.0, 1.0]}, TypeError),
        ({"x0": torch.zeros(2, 2)}, ValueError),
        ({"queries": 0}, ValueError),
        ({"mu": 0.0}, ValueError),
        ({"lr": -0.1}, ValueError),
        ({"rounds": True}, TypeError),
        ({"optimizer": "rmsprop"}, ValueError),
    ],
)
def test_bad_arguments_raise(kwargs: dict, error: type) -> None:
    args = {"functions": [lambda x: x.square().sum()], "x0": torch.zeros(3)} | kwargs
    with pytest.raises(error):
        fedzo(args.pop("functions"), args.pop("x0"), **args)
