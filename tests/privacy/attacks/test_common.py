"""The shared argument checks of the optimisation attacks (_common.check_attack_args and its callers).

Every attack built on the matching engine must reject each bad argument with an error that names the
argument, the value received and what was expected, before any label recovery or optimisation runs.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from gradinfo.privacy import SharedUpdate, share
from gradinfo.privacy.attacks import (
    dlg,
    dropout_inversion,
    generative_prior,
    inverting_gradients,
    local_steps_inversion,
    sketched_inversion,
)
from gradinfo.privacy.attacks._common import (
    check_attack_args,
    check_shared,
    check_update,
    example_model,
    example_update,
)
from gradinfo.privacy.attacks.generative_prior import fit_decoder
from gradinfo.transform import sketch

SHAPE = (3, 8, 8)
DIA_MODULE = importlib.import_module(
    "gradinfo.privacy.attacks.dropout_inversion"
)  # the package exports the function


def _update(local_steps: int = 1, batch: int = 1, **kw: object) -> SharedUpdate:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, *SHAPE, generator=gen)  # [B, 3, 8, 8]
    y = torch.randint(0, 4, (batch,), generator=gen)  # [B]
    steps = {"local_steps": local_steps, "lr": 0.1} if local_steps > 1 else {}
    return share(example_model(0), F.cross_entropy, x, y, seed=0, **steps, **kw)  # type: ignore[arg-type]


def _sketched() -> SharedUpdate:
    dim = math.ceil(sum(p.numel() for p in example_model(0).parameters()) / 4)
    return _update(defense=sketch(dim, seed=0))


def _decoder() -> torch.nn.Module:
    public = torch.rand(8, *SHAPE, generator=torch.Generator().manual_seed(1))  # [8, 3, 8, 8]
    return fit_decoder(public, 4, steps=1, hidden=8)


# each attack with valid arguments; a test overrides one of them
ATTACKS: dict[str, tuple[Callable[..., object], Callable[[], dict[str, object]]]] = {
    "dlg": (dlg, lambda: {"update": example_update(0)}),
    "inverting_gradients": (inverting_gradients, lambda: {"update": example_update(0)}),
    "dropout_inversion": (dropout_inversion, lambda: {"update": example_update(0)}),
    "local_steps_inversion": (local_steps_inversion, lambda: {"update": _update(local_steps=3)}),
    "sketched_inversion": (sketched_inversion, lambda: {"update": _sketched(), "sketch_seed": 0}),
    "generative_prior": (
        generative_prior,
        lambda: {"update": example_update(0), "decoder": _decoder(), "latent_dim": 4},
    ),
}

BAD_ARGS = [
    ("model", "cnn", TypeError, r"model must be a torch\.nn\.Module .*got str"),
    ("update", None, TypeError, r"update must be a gradinfo\.privacy\.SharedUpdate, got NoneType"),
    ("input_shape", "3x8x8", TypeError, r"input_shape must be a non-empty tuple of ints .*got '3x8x8'"),
    ("input_shape", (), TypeError, r"input_shape must be a non-empty tuple of ints .*got \(\)"),
    ("input_shape", (3, 0, 8), ValueError, r"input_shape entries must be >= 1, got 0"),
    ("iterations", 0, ValueError, r"iterations must be >= 1, got 0"),
    ("iterations", 2.5, TypeError, r"iterations must be an int, got float 2\.5"),
    ("iterations", True, TypeError, r"iterations must be an int, got bool True"),
    ("restarts", -1, ValueError, r"restarts must be >= 1, got -1"),
    ("restarts", "2", TypeError, r"restarts must be an int, got str '2'"),
]


@pytest.mark.parametrize("name", list(ATTACKS))
@pytest.mark.parametrize(("arg", "value", "error", "message"), BAD_ARGS)
def test_every_attack_names_the_bad_argument_its_value_and_the_expectation(
    name: str, arg: str, value: object, error: type[Exception], message: str
) -> None:
    attack, valid = ATTACKS[name]
    kwargs: dict[str, object] = {
        "model": example_model(0),
        "input_shape": SHAPE,
        "iterations": 1,
        "restarts": 1,
        **valid(),
    }
    kwargs[arg] = value
    model, update = kwargs.pop("model"), kwargs.pop("update")
    with pytest.raises(error, match=message):
        attack(model, update, **kwargs)


def test_bad_arguments_are_rejected_before_label_recovery_or_optimisation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(DIA_MODULE, "label_recovery", forbidden)
    monkeypatch.setattr(DIA_MODULE, "match_gradients", forbidden)
    update = example_update(0)
    with pytest.raises(ValueError, match="restarts"):
        dropout_inversion(example_model(0), update, input_shape=SHAPE, restarts=0)
    with pytest.raises(ValueError, match="iterations"):
        dropout_inversion(example_model(0), update, input_shape=SHAPE, iterations=0)
    with pytest.raises(AssertionError, match="work started"):  # the patch is live: valid calls reach it
        dropout_inversion(example_model(0), update, input_shape=SHAPE, iterations=1)


def test_check_attack_args_returns_the_batch_size_and_the_shape_as_a_tuple() -> None:
    update = _update(batch=3)
    batch, shape = check_attack_args(
        example_model(0), update, input_shape=[3, 8, 8], iterations=2, restarts=4
    )
    assert (batch, shape) == (3, (3, 8, 8))
    assert check_update(example_model(0), update) == 3
    model = example_model(0)
    assert check_shared(model, update) == (model, update)


def test_gradient_updates_must_be_one_step_gradients_that_fit_the_model() -> None:
    delta = _update(local_steps=3, batch=2)
    with pytest.raises(ValueError, match=r"kind 'gradient'.*got kind 'delta' with 3 local steps"):
        check_attack_args(example_model(0), delta, input_shape=SHAPE, iterations=1)
    with pytest.raises(ValueError, match="does not fit the model"):
        check_attack_args(torch.nn.Linear(2, 2), example_update(0), input_shape=SHAPE, iterations=1)
    # gradient=False leaves kind and keys to the attack: deltas and sketches pass
    assert check_attack_args(example_model(0), delta, input_shape=SHAPE, iterations=1, gradient=False) == (
        2,
        SHAPE,
    )
    assert check_attack_args(
        example_model(0), _sketched(), input_shape=SHAPE, iterations=1, gradient=False
    ) == (1, SHAPE)
    with pytest.raises(TypeError, match=r"update must be a gradinfo\.privacy\.SharedUpdate, got dict"):
        check_attack_args(example_model(0), {}, input_shape=SHAPE, iterations=1, gradient=False)
