"""dlg, inverting_gradients, dropout_inversion end to end on small models, through SharedUpdate."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradinfo.privacy import psnr, share
from gradinfo.privacy.attacks import dlg, dropout_inversion, inverting_gradients, label_recovery

SHAPE = (3, 6, 6)


def _mlp(dropout: float = 0.0, act: type[nn.Module] = nn.ReLU, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(108, 32), act()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(32, 4))
    return nn.Sequential(*layers).train()


def _victim(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(1, *SHAPE, generator=gen), torch.randint(0, 4, (1,), generator=gen)


def test_dlg_recovers_input_and_label_of_a_tanh_mlp() -> None:
    model = _mlp(act=nn.Tanh).double()
    x, y = _victim(1)
    x = x.double()
    rec = dlg(model, share(model, F.cross_entropy, x, y), input_shape=SHAPE, iterations=80, seed=0)
    torch.testing.assert_close(rec.inputs, x, rtol=0, atol=1e-3)
    assert rec.labels.tolist() == y.tolist()
    assert rec.extras["soft_labels"].shape == (1, 4)
    assert len(rec.loss_trace) == 80 and rec.loss_trace[-1] < 1e-6 * rec.loss_trace[0]


def test_inverting_gradients_leaks_through_a_first_linear_layer() -> None:
    model = _mlp()
    x, y = _victim(2)
    rec = inverting_gradients(model, share(model, F.cross_entropy, x, y), input_shape=SHAPE, iterations=300)
    assert float(psnr(rec.inputs, x)) >= 30.0
    assert rec.labels.tolist() == y.tolist()
    extras = rec.extras
    torch.testing.assert_close(rec.inputs, extras["restart_inputs"][extras["best_restart"]])
    assert int(extras["restart_losses"].argmin()) == extras["best_restart"]
    assert len(rec.loss_trace) == 300
    assert float(rec.inputs.min()) >= 0.0 and float(rec.inputs.max()) <= 1.0


def test_dropout_inversion_without_dropout_is_inverting_gradients() -> None:
    model = _mlp()
    x, y = _victim(3)
    update = share(model, F.cross_entropy, x, y)
    dia = dropout_inversion(model, update, input_shape=SHAPE, iterations=20, restarts=2, seed=5)
    ig = inverting_gradients(
        model, update, input_shape=SHAPE, iterations=20, restarts=2, tv=1e-5, schedule="plateau", seed=5
    )
    torch.testing.assert_close(dia.inputs, ig.inputs, rtol=0, atol=0)
    assert dia.extras["masks"] == {}


def test_dropout_inversion_matches_what_inverting_gradients_cannot() -> None:
    """Under dropout, optimising the masks reaches a far lower gradient distance, and a better image."""
    gaps, psnr_gaps = [], []
    for seed in range(3):
        model = _mlp(dropout=0.5, seed=seed)
        x, y = _victim(10 + seed)
        update = share(model, F.cross_entropy, x, y, seed=seed)
        dia = dropout_inversion(model, update, input_shape=SHAPE, iterations=300, seed=seed)
        ig = inverting_gradients(
            model,
            update,
            input_shape=SHAPE,
            iterations=300,
            restarts=1,
            tv=1e-5,
            schedule="plateau",
            seed=seed,
        )
        (mask,) = dia.extras["masks"].values()
        assert mask.shape == (1, 32) and float(mask.min()) >= 0 and float(mask.max()) <= 1
        gaps.append(min(ig.loss_trace) - min(dia.loss_trace))
        psnr_gaps.append(float(psnr(dia.inputs, x) - psnr(ig.inputs, x)))
    assert min(gaps) > 0
    assert sum(psnr_gaps) / 3 > 3.0


@pytest.mark.parametrize("attack", [dlg, inverting_gradients, dropout_inversion])
def test_bad_updates_raise(attack) -> None:  # type: ignore[no-untyped-def]
    model = _mlp()
    x, y = _victim(0)
    with pytest.raises(ValueError, match="local_steps_inversion"):
        attack(model, share(model, F.cross_entropy, x, y, local_steps=2), input_shape=SHAPE)
    with pytest.raises(ValueError, match="does not fit"):
        attack(_mlp(act=nn.Tanh)[:-1], share(model, F.cross_entropy, x, y), input_shape=SHAPE)
    with pytest.raises(ValueError, match="iterations"):
        attack(model, share(model, F.cross_entropy, x, y), input_shape=SHAPE, iterations=0)
    with pytest.raises(ValueError, match="cannot take"):
        attack(model, share(model, F.cross_entropy, x, y), input_shape=(3, 6, 5), iterations=1)


def test_label_recovery_feeds_inverting_gradients_at_batch_two() -> None:
    model = _mlp()
    gen = torch.Generator().manual_seed(4)
    x, y = torch.rand(2, *SHAPE, generator=gen), torch.tensor([3, 1])
    update = share(model, F.cross_entropy, x, y)
    rec = inverting_gradients(model, update, input_shape=SHAPE, iterations=2, restarts=1)
    assert rec.labels.tolist() == label_recovery(model, update, input_shape=SHAPE).labels.tolist() == [1, 3]
    assert rec.inputs.shape == (2, *SHAPE)
