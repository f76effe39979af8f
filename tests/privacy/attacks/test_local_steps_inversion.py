"""local_steps_inversion: the unrolled delta equals the K-step delta of share(); the attack inverts it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gradinfo.models import mlp
from gradinfo.privacy import share
from gradinfo.privacy.attacks.local_steps_inversion import local_steps_inversion, unrolled_delta


@pytest.mark.parametrize("steps", [1, 3, 5])
def test_unrolled_delta_equals_the_clients_delta(steps: int) -> None:
    model = mlp(12, 4, hidden=(8,), activation="tanh", seed=1).double()
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(3, 12, generator=gen, dtype=torch.float64)  # [3, 12]
    y = torch.tensor([0, 3, 1])
    shared = share(model, F.cross_entropy, x, y, local_steps=steps, lr=0.3)
    params = {n: p.detach() for n, p in model.named_parameters()}
    delta = unrolled_delta(steps, 0.3)(model, params, {}, x, y)
    expected = shared.grads if steps > 1 else {n: 0.3 * g for n, g in shared.grads.items()}
    for n in params:
        torch.testing.assert_close(delta[n], expected[n], rtol=1e-12, atol=1e-14)


def test_attack_inverts_a_five_step_delta_better_than_a_one_step_model() -> None:
    model = mlp(16, 3, hidden=(8,), seed=0).double()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 4, 4, generator=gen, dtype=torch.float64)  # [1, 1, 4, 4]
    update = share(model, F.cross_entropy, x, torch.tensor([1]), local_steps=5, lr=1.0)
    rec = local_steps_inversion(model, update, input_shape=(1, 4, 4), iterations=150, restarts=1)
    assert rec.labels.tolist() == [1]
    assert (rec.inputs - x).abs().mean() < 0.05


def test_bad_arguments_raise() -> None:
    model = mlp(16, 3, hidden=(8,), seed=0)
    update = share(model, F.cross_entropy, torch.rand(1, 16), torch.tensor([1]), local_steps=2)
    with pytest.raises(ValueError, match="steps"):
        unrolled_delta(0, 0.1)
    with pytest.raises(ValueError, match="lr"):
        unrolled_delta(2, -1.0)
    with pytest.raises(TypeError, match="input_shape"):
        local_steps_inversion(model, update, input_shape=16)  # type: ignore[arg-type]
