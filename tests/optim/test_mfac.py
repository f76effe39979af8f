"""M-FAC optimizer: the sliding window equals the static algorithm recomputed from scratch."""

import copy

import pytest
import torch
from torch import nn

from gradinfo.capture import InverseFisher
from gradinfo.optim.mfac import MFAC, mfac_transform


def flat(tree: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    return torch.cat([tree[n].reshape(-1) for n in names])


@pytest.mark.parametrize("ngrads", [1, 4])
def test_window_equals_recomputation_from_scratch(ngrads: int) -> None:
    gen = torch.Generator().manual_seed(0)
    params = {
        "w": torch.randn(3, 5, generator=gen, dtype=torch.float64),
        "b": torch.zeros(5, dtype=torch.float64),
    }
    names = list(params)
    transform = mfac_transform(ngrads=ngrads, damping=1e-2)
    state = transform.init(params)
    history = []
    for _ in range(3 * ngrads + 2):
        grads = {n: torch.randn(p.shape, generator=gen, dtype=torch.float64) for n, p in params.items()}
        g = flat(grads, names)
        history.append(g)
        out, state = transform.update(grads, state, params)
        window = torch.stack(history[-ngrads:])
        window = torch.cat([window, torch.zeros(ngrads - len(window), g.numel(), dtype=torch.float64)])
        torch.testing.assert_close(
            flat(out, names), InverseFisher(window, 1e-2).ihvp(g), rtol=1e-9, atol=1e-9
        )


def test_momentum_and_weight_decay_follow_the_official_optimizer() -> None:
    gen = torch.Generator().manual_seed(1)
    params = {"w": torch.randn(6, generator=gen, dtype=torch.float64)}
    transform = mfac_transform(ngrads=2, damping=0.1, momentum=0.9, weight_decay=0.01)
    state = transform.init(params)
    velocity, history = torch.zeros(6, dtype=torch.float64), []
    for _ in range(4):
        grads = {"w": torch.randn(6, generator=gen, dtype=torch.float64)}
        g = grads["w"] + 0.01 * params["w"]
        history.append(g)
        window = torch.stack(history[-2:]) if len(history) >= 2 else torch.stack([g, torch.zeros_like(g)])
        velocity = 0.9 * velocity + 0.1 * InverseFisher(window, 0.1).ihvp(g)
        out, state = transform.update(grads, state, params)
        torch.testing.assert_close(out["w"], velocity, rtol=1e-9, atol=1e-9)


def test_update_leaves_inputs_untouched() -> None:
    params = {"w": torch.ones(4)}
    transform = mfac_transform(ngrads=3, damping=1e-3, momentum=0.5)
    state = transform.init(params)
    grads = {"w": torch.arange(4.0)}
    _, state = transform.update(grads, state, params)
    before = copy.deepcopy(state)
    out, _ = transform.update(grads, state, params)
    grads["w"].zero_()
    torch.testing.assert_close(state["gram"], before["gram"], rtol=0, atol=0)
    for a, b in zip(state["rows"], before["rows"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert out["w"].abs().sum() > 0


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


def train(model: nn.Module, opt: torch.optim.Optimizer, steps: range) -> None:
    for step in steps:
        gen = torch.Generator().manual_seed(step)
        x, y = torch.randn(16, 4, generator=gen), torch.randint(0, 3, (16,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def test_optimizer_applies_lr_times_transform_and_resumes_from_state_dict() -> None:
    model = make_model()
    opt = MFAC(model.named_parameters(), lr=0.05, ngrads=4, damping=1e-3, momentum=0.5)
    train(model, opt, range(3))
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    train(model, opt, range(3, 8))
    resumed = make_model()
    resumed.load_state_dict(saved_model)
    opt2 = MFAC(resumed.named_parameters(), lr=0.05, ngrads=4, damping=1e-3, momentum=0.5)
    opt2.load_state_dict(saved_opt)
    train(resumed, opt2, range(3, 8))
    for a, b in zip(model.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_first_step_is_lr_times_inverse_fisher_of_the_gradient() -> None:
    model = make_model()
    before = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
    opt = MFAC(model.parameters(), lr=0.1, ngrads=3, damping=1e-2)
    train(model, opt, range(1))
    g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    window = torch.stack([g, torch.zeros_like(g), torch.zeros_like(g)]).double()
    expected = before.double() - 0.1 * InverseFisher(window, 1e-2).ihvp(g.double())
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(after.double(), expected, rtol=1e-4, atol=1e-5)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="momentum"):
        mfac_transform(momentum=1.0)
    with pytest.raises(ValueError, match="ngrads"):
        MFAC(make_model().parameters(), ngrads=0)
    transform = mfac_transform(ngrads=2, weight_decay=0.1)
    state = transform.init({"w": torch.ones(2)})
    with pytest.raises(ValueError, match="needs params"):
        transform.update({"w": torch.ones(2)}, state, None)
    with pytest.raises(ValueError, match="keys"):
        transform.update({"v": torch.ones(2)}, state, {"v": torch.ones(2)})


def test_float32_is_accurate_when_woodbury_cancels() -> None:
    # small damping: g / lambda and the window term nearly cancel; u stays accurate in float32
    gen = torch.Generator().manual_seed(2)
    params = {"w": torch.zeros(20_000)}
    transform = mfac_transform(ngrads=8, damping=1e-5)
    state = transform.init(params)
    history = [torch.randn(20_000, generator=gen) * 1e-2 for _ in range(10)]
    for g in history:
        out, state = transform.update({"w": g}, state, params)
    window = torch.stack(history[-8:]).double()
    expected = InverseFisher(window, 1e-5).ihvp(history[-1].double())
    error = (out["w"].double() - expected).norm() / expected.norm()
    assert error < 1e-5, f"relative error {error:.2e}"


def test_parameters_without_gradients_are_refused_by_the_joint_window() -> None:
    model = make_model()
    opt = MFAC(model.named_parameters(), lr=0.1, ngrads=3, damping=1e-2)
    model[0].requires_grad_(False)
    with pytest.raises(ValueError, match=r"\['0.weight', '0.bias'\] have none"):
        train(model, opt, range(1))
    frozen = make_model()
    frozen[0].requires_grad_(False)
    trainable = [(n, p) for n, p in frozen.named_parameters() if p.requires_grad]
    train(frozen, MFAC(trainable, lr=0.1, ngrads=3, damping=1e-2), range(2))  # the fix the error names
    assert torch.equal(frozen[0].weight, make_model()[0].weight)
