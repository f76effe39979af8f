"""FedAvg loop and non-IID split, against hand-computed references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradinfo.privacy import DPSGD
from gradinfo.privacy.fedavg import fedavg, split_non_iid
from gradinfo.transform import chain, desketch, scale, sketch, sketch_matrix, topk_sparsify


def _lin() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(3, 2).double()


def _clients() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(n, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (n,), generator=g))
        for n in (4, 8)
    ]


def test_one_round_is_weighted_mean_of_local_sgd() -> None:
    clients = _clients()
    h = fedavg(_lin, clients, 1, 2, 0.1, test=clients[0])
    deltas = []
    for x, y in clients:
        m = _lin()
        start = [p.detach().clone() for p in m.parameters()]
        for _ in range(2):
            grads = torch.autograd.grad(F.cross_entropy(m(x), y), list(m.parameters()))
            with torch.no_grad():
                for p, g in zip(m.parameters(), grads, strict=True):
                    p.sub_(0.1 * g)
        deltas.append([s - p.detach() for s, p in zip(start, m.parameters(), strict=True)])
    ref = _lin()
    for i, p in enumerate(ref.parameters()):
        want = p.detach() - (4 * deltas[0][i] + 8 * deltas[1][i]) / 12
        torch.testing.assert_close(list(h.model.parameters())[i], want, rtol=1e-12, atol=1e-12)
    assert len(h.accuracy) == 2 and len(h.loss) == 1


def test_personal_parameters_stay_local() -> None:
    clients = _clients()
    make = lambda: nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)).double()  # noqa: E731
    torch.manual_seed(0)
    h = fedavg(lambda: (torch.manual_seed(0), make())[1], clients, 2, 2, 0.1, test=clients, personal=("1",))
    assert set(h.personal[0]) == {"1.weight", "1.bias"}
    assert not torch.equal(h.personal[0]["1.weight"], h.personal[1]["1.weight"])
    torch.manual_seed(0)
    torch.testing.assert_close(h.model[1].weight, make()[1].weight)  # the global head never moves


def test_defenses_run_and_topk_keeps_k_entries() -> None:
    clients = _clients()
    h = fedavg(_lin, clients, 1, 1, 0.1, test=clients[0], defense=topk_sparsify(0.25))
    moved = sum(
        int((p.detach() != q.detach()).sum())
        for p, q in zip(h.model.parameters(), _lin().parameters(), strict=True)
    )
    assert moved <= 2 * 2  # each client moves at most 2 of the 8 entries
    h2 = fedavg(_lin, clients, 2, 2, 0.1, test=clients[0], defense=DPSGD(1.0, 0.5), batch_size=2, seed=3)
    h3 = fedavg(_lin, clients, 2, 2, 0.1, test=clients[0], defense=DPSGD(1.0, 0.5), batch_size=2, seed=3)
    torch.testing.assert_close(h2.model.weight, h3.model.weight, rtol=0, atol=0)


def test_split_classes_per_client_and_matching_test_split() -> None:
    y = torch.arange(10).repeat(20)
    x = torch.arange(200).double().unsqueeze(1)
    parts = split_non_iid((x, y), 5, classes_per_client=2, seed=0)
    held = [set(p[1].tolist()) for p in parts]
    assert all(len(h) == 2 for h in held)
    assert sorted(int(v) for p in parts for v in p[0].flatten()) == list(range(200))  # a partition
    again = split_non_iid((x[:100], y[:100]), 5, classes_per_client=2, seed=0)
    assert [set(p[1].tolist()) for p in again] == held


def test_split_dirichlet_is_a_partition() -> None:
    y = torch.arange(4).repeat(50)
    x = torch.arange(200).unsqueeze(1)
    parts = split_non_iid((x, y), 3, alpha=0.5, seed=2)
    assert sorted(int(v) for p in parts for v in p[0].flatten()) == list(range(200))
    for px, py in parts:
        torch.testing.assert_close(py, y[px.flatten()])


def test_bad_arguments() -> None:
    clients = _clients()
    with pytest.raises(ValueError, match="rounds"):
        fedavg(_lin, clients, 0, 1, 0.1, test=clients[0])
    with pytest.raises(ValueError, match="test"):
        fedavg(_lin, clients, 1, 1, 0.1, test=[clients[0]])
    with pytest.raises(ValueError, match="personal"):
        fedavg(_lin, clients, 1, 1, 0.1, test=clients[0], personal=("weight", "bias"))
    with pytest.raises(ValueError, match="exactly one"):
        split_non_iid(clients[0], 2, seed=0)


def test_fresh_sketch_per_round_is_shared_by_clients_and_composes_after_dpsgd() -> None:
    """Reference: per round t, every client's delta is mapped by R_t^T R_t (one R_t per round)."""
    clients, dim = _clients(), 5
    lossy = chain(sketch(dim, seed=9, fresh=True), desketch(dim, seed=9, fresh=True))
    h = fedavg(_lin, clients, 3, 2, 0.1, test=clients[0], defense=(DPSGD(1e6, 0.0), lossy))
    ref = _lin()
    names = sorted(n for n, _ in ref.named_parameters())  # the sketch flattens in sorted-name order
    params = dict(ref.named_parameters())
    for t in range(3):
        R = sketch_matrix(8, dim, seed=9, round=t, dtype=torch.float64)  # [dim, 8]
        deltas = []
        for x, y in clients:
            m = _lin()
            m.load_state_dict(ref.state_dict())
            start = [p.detach().clone() for p in m.parameters()]
            for _ in range(2):
                grads = torch.autograd.grad(F.cross_entropy(m(x), y), list(m.parameters()))
                with torch.no_grad():
                    for p, g in zip(m.parameters(), grads, strict=True):
                        p.sub_(0.1 * g)
            delta = dict(
                zip(
                    [n for n, _ in m.named_parameters()],
                    [s - p.detach() for s, p in zip(start, m.parameters(), strict=True)],
                    strict=True,
                )
            )
            flat = torch.cat([delta[n].flatten() for n in names])  # [8]
            deltas.append(R.T @ (R @ flat))
        step = (4 * deltas[0] + 8 * deltas[1]) / 12
        with torch.no_grad():
            offset = 0
            for n in names:
                size = params[n].numel()
                params[n].sub_(step[offset : offset + size].view_as(params[n]))
                offset += size
    for n, p in h.model.named_parameters():
        torch.testing.assert_close(p, params[n], rtol=1e-10, atol=1e-12)


def test_defense_tuple_is_validated() -> None:
    clients = _clients()
    with pytest.raises(ValueError, match="DPSGD may only come first"):
        fedavg(_lin, clients, 1, 1, 0.1, test=clients[0], defense=(scale(1.0), DPSGD(1.0, 1.0)))


def _dp_reference(x: torch.Tensor, y: torch.Tensor, batch: int, seed: int, lr: float) -> list[torch.Tensor]:
    """One DP-SGD local step by hand: Poisson draw at rate b / n, unclipped sum (huge clip, no noise) / b."""
    m = _lin()
    torch.manual_seed(seed)
    keep = torch.rand(len(x)) < batch / len(x)
    total = [torch.zeros_like(p) for p in m.parameters()]
    for i in torch.nonzero(keep).flatten().tolist():
        grads = torch.autograd.grad(F.cross_entropy(m(x[i : i + 1]), y[i : i + 1]), list(m.parameters()))
        total = [t + g for t, g in zip(total, grads, strict=True)]
    return [lr * t / batch for t in total]


def test_dp_minibatches_are_poisson_sampled_and_divided_by_the_expected_size() -> None:
    from gradinfo.privacy.fedavg import client_seed, local_update

    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (40,), generator=g)
    dp = DPSGD(max_norm=1e6, noise_multiplier=0.0)
    sizes = []
    for seed in range(6):
        _, delta = local_update(_lin(), (x, y), F.cross_entropy, 1, 0.5, 10, dp, seed)
        want = _dp_reference(x, y, 10, seed, 0.5)
        for got, ref in zip(delta.values(), want, strict=True):
            torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
        torch.manual_seed(seed)
        sizes.append(int((torch.rand(40) < 0.25).sum()))
    assert len(set(sizes)) > 1  # the batch size varies, as Poisson sampling makes it
    assert client_seed(0, 0, 0) != client_seed(0, 0, 1)


def test_empty_poisson_draw_is_a_noise_only_step() -> None:
    from gradinfo.privacy.fedavg import local_update

    x, y = torch.randn(200, 3, dtype=torch.float64), torch.zeros(200, dtype=torch.long)
    seed = next(s for s in range(1000) if not (torch.manual_seed(s) and (torch.rand(200) < 1 / 200).any()))
    dp = DPSGD(max_norm=1.0, noise_multiplier=2.0)
    loss, delta = local_update(_lin(), (x, y), F.cross_entropy, 1, 1.0, 1, dp, seed)
    shapes = [p.detach() for p in _lin().parameters()]
    torch.manual_seed(seed)
    torch.rand(200)
    noise = [2.0 * torch.randn_like(p) for p in shapes]  # sigma C / b with b = 1
    assert loss != loss  # NaN: no example was drawn
    for got, ref in zip(delta.values(), noise, strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
