"""sketched_inversion: the projection equals the sketch transform; with R = I it is Inverting Gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gradinfo.models import mlp
from gradinfo.privacy import share
from gradinfo.privacy.attacks.matching import match_gradients
from gradinfo.privacy.attacks.objective import cosine_distance
from gradinfo.privacy.attacks.optimizers import Adam, MultiStep
from gradinfo.privacy.attacks.search import Inputs
from gradinfo.privacy.attacks.sketched_inversion import (
    dense_projection,
    sketch_projection,
    sketched_inversion,
)
from gradinfo.transform import sketch


def _victim() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    model = mlp(16, 3, hidden=(8,), seed=0).double()
    x = torch.rand(1, 1, 4, 4, generator=gen, dtype=torch.float64)  # [1, 1, 4, 4]
    return model, x, torch.tensor([2])


@pytest.mark.parametrize("kind", ["gaussian", "rademacher", "countsketch"])
@pytest.mark.parametrize("round_", [0, 3])
def test_projection_equals_the_sketch_transform(kind: str, round_: int) -> None:
    model, x, y = _victim()
    grads = share(model, F.cross_entropy, x, y).grads
    transform = sketch(40, seed=5, kind=kind, fresh=True)
    state = transform.init(grads)
    state["round"] = round_
    expected, _ = transform.update(grads, state)
    got = sketch_projection(model, 40, 5, kind, round=round_)(grads)
    torch.testing.assert_close(got["sketch"], expected["sketch"], rtol=1e-12, atol=1e-12)


def test_identity_sketch_objective_equals_the_unsketched_one() -> None:
    model, x, y = _victim()
    target = share(model, F.cross_entropy, x, y).grads
    names = sorted(target)
    flat = torch.cat([target[n].reshape(-1) for n in names])  # [P]
    identity = dense_projection(torch.eye(flat.numel(), dtype=torch.float64), names)
    dummy = share(model, F.cross_entropy, torch.rand(1, 1, 4, 4, dtype=torch.float64), y).grads
    torch.testing.assert_close(
        cosine_distance(identity(dummy), {"sketch": flat}),
        cosine_distance(dummy, target),
        rtol=1e-12,
        atol=0,
    )
    kwargs = {
        "search": Inputs((1, 4, 4)),
        "optimizer": Adam(0.1, signed=True, schedule=MultiStep()),
        "batch_size": 1,
        "labels": y,
        "iterations": 5,
        "restarts": 2,
        "seed": 1,
    }
    sketched = match_gradients(model, {"sketch": flat}, project=identity, **kwargs)
    plain = match_gradients(model, target, **kwargs)
    torch.testing.assert_close(torch.tensor(sketched.trace), torch.tensor(plain.trace), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(sketched.inputs, plain.inputs, rtol=1e-9, atol=1e-12)


def test_attack_recovers_an_input_through_a_gaussian_sketch() -> None:
    model, x, y = _victim()
    dim = sum(p.numel() for p in model.parameters()) // 2
    update = share(model, F.cross_entropy, x, y, defense=sketch(dim, seed=3))
    rec = sketched_inversion(model, update, input_shape=(1, 4, 4), sketch_seed=3, iterations=150, restarts=1)
    assert rec.labels.tolist() == [2]
    wrong = sketched_inversion(
        model, update, input_shape=(1, 4, 4), sketch_seed=4, iterations=150, restarts=1
    )
    err, err_wrong = (rec.inputs - x).abs().mean(), (wrong.inputs - x).abs().mean()
    assert err < 0.05 and err_wrong > 2 * err


def test_bad_updates_raise() -> None:
    model, x, y = _victim()
    with pytest.raises(ValueError, match="sketch"):
        sketched_inversion(model, share(model, F.cross_entropy, x, y), input_shape=(1, 4, 4), sketch_seed=0)
    with pytest.raises(ValueError, match="countsketch"):
        sketch_projection(mlp(4096, 10, hidden=(512,)), 20000, 0)
