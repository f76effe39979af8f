"""as_optimizer: equals torch.optim.SGD for identity, works with LR schedulers, resumes bit-identically."""

import copy
import io

import pytest
import torch
from torch import nn

from gradinfo.transform import (
    GradTransform,
    TransformOptimizer,
    add_gaussian_noise,
    as_optimizer,
    chain,
    clip_by_global_norm,
    desketch,
    identity,
    scale,
    sketch,
    stochastic_quantize,
    topk_sparsify,
)


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1000 + step)
    return torch.randn(16, 4, generator=gen), torch.randint(0, 3, (16,), generator=gen)


def train(model: nn.Module, opt: torch.optim.Optimizer, steps: range, scheduler=None) -> None:
    for step in steps:
        x, y = batch(step)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()


def groups(model: nn.Module) -> list[dict]:
    return [
        {"params": list(model[0].parameters()), "lr": 0.3},
        {"params": list(model[2].parameters())},
    ]


def assert_same_params(a: nn.Module, b: nn.Module) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_identity_chain_equals_sgd_with_param_groups() -> None:
    ours, ref = make_model(), make_model()
    train(ours, as_optimizer(chain(identity()), groups(ours), lr=0.1), range(6))
    train(ref, torch.optim.SGD(groups(ref), lr=0.1), range(6))
    assert_same_params(ours, ref)
    assert not torch.equal(ours[0].weight, make_model()[0].weight)  # it did move


def test_sign_convention_scale_two_equals_double_lr() -> None:
    ours, ref = make_model(), make_model()
    train(ours, as_optimizer(scale(2.0), ours.parameters(), lr=0.05), range(3))
    train(ref, torch.optim.SGD(ref.parameters(), lr=0.1), range(3))
    for p, q in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_step_lr_scheduler_changes_step_size() -> None:
    ours, ref = make_model(), make_model()
    opt = as_optimizer(identity(), groups(ours), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    ref_opt = torch.optim.SGD(groups(ref), lr=0.1)
    ref_sched = torch.optim.lr_scheduler.StepLR(ref_opt, step_size=2, gamma=0.1)
    train(ours, opt, range(5), sched)
    train(ref, ref_opt, range(5), ref_sched)
    assert_same_params(ours, ref)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.3 * 0.01, 0.1 * 0.01])

    # the displacement of one step scales with the scheduled lr
    before = ours[2].bias.detach().clone()
    x, y = batch(99)
    opt.zero_grad()
    nn.functional.cross_entropy(ours(x), y).backward()
    grad = ours[2].bias.grad.clone()
    opt.step()
    torch.testing.assert_close(
        before - ours[2].bias, 0.1 * 0.01 * grad, rtol=1e-3, atol=1e-7
    )  # float32 cancellation


def stateful_chain() -> GradTransform:
    return chain(
        clip_by_global_norm(1.0),
        topk_sparsify(0.5, error_feedback=True),
        stochastic_quantize(4, seed=1),
        sketch(20, seed=2, kind="gaussian", fresh=True),
        desketch(20, seed=2, kind="gaussian", fresh=True),
        add_gaussian_noise(0.01, seed=3),
    )


def test_state_dict_round_trip_resumes_bit_identically() -> None:
    straight = make_model()
    train(straight, as_optimizer(stateful_chain(), straight.named_parameters(), lr=0.2), range(8))

    first = make_model()
    opt = as_optimizer(stateful_chain(), first.named_parameters(), lr=0.2)
    train(first, opt, range(4))
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    resumed = make_model(seed=123)  # different init, overwritten by the checkpoint
    resumed.load_state_dict(saved["model"])
    resumed_opt = as_optimizer(stateful_chain(), resumed.named_parameters(), lr=0.2)
    resumed_opt.load_state_dict(saved["opt"])
    train(resumed, resumed_opt, range(4, 8))
    assert_same_params(straight, resumed)

    # the transform state travelled: the chain's sketch counted all 8 rounds
    assert resumed_opt.state_dict()["state"]["transform_state"][0] == ()
    assert resumed_opt.state_dict()["state"]["transform_state"][3]["round"] == 8


def test_deepcopy_mid_training_continues_identically() -> None:
    model = make_model()
    opt = as_optimizer(stateful_chain(), model.named_parameters(), lr=0.2)
    train(model, opt, range(3))
    twin, twin_opt = copy.deepcopy((model, opt))  # one memo: the copied optimizer steps the copied model
    fresh = as_optimizer(stateful_chain(), (restarted := copy.deepcopy(model)).named_parameters(), lr=0.2)
    train(model, opt, range(3, 6))
    train(twin, twin_opt, range(3, 6))
    train(restarted, fresh, range(3, 6))
    assert_same_params(model, twin)
    assert not torch.equal(model[0].weight, restarted[0].weight)  # the state matters: losing it differs


def recording(seen: list) -> GradTransform:
    def update(grads, state, params):
        seen.append((list(grads), list(params)))
        return grads, state

    return GradTransform(lambda params: (), update)


def test_names_from_named_parameters_or_generated() -> None:
    model, seen = make_model(), []
    train(model, as_optimizer(recording(seen), model.named_parameters(), lr=0.1), range(1))
    names = [n for n, _ in model.named_parameters()]
    assert seen == [(names, names)]
    seen.clear()
    train(model, as_optimizer(recording(seen), groups(model), lr=0.1), range(1))
    assert seen[0][0] == ["g0.p0", "g0.p1", "g1.p0", "g1.p1"]


def test_params_without_grad_are_skipped() -> None:
    model = make_model()
    model[0].requires_grad_(False)
    frozen = model[0].weight.detach().clone()
    head = model[2].weight.detach().clone()
    opt = as_optimizer(topk_sparsify(0.5, error_feedback=True), model.named_parameters(), lr=0.1)
    train(model, opt, range(2))
    assert torch.equal(model[0].weight, frozen)
    assert not torch.equal(model[2].weight, head)
    assert torch.equal(opt.state["transform_state"]["residual"]["0.weight"], torch.zeros(8, 4))


def test_skipped_parameter_keeps_its_table_entries_and_shared_counters_advance() -> None:
    model = make_model()
    opt = as_optimizer(
        chain(topk_sparsify(0.5, error_feedback=True), add_gaussian_noise(0.01, seed=3)),
        model.named_parameters(),
        lr=0.1,
    )
    train(model, opt, range(2))
    before = copy.deepcopy(opt.state["transform_state"])
    head = model[2].weight.detach().clone()
    x, y = batch(2)
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    model[2].weight.grad = None  # skipped this step
    opt.step()
    residual, old = opt.state["transform_state"][0]["residual"], before[0]["residual"]
    assert list(residual) == list(old)  # the table keeps its layout and order
    assert torch.equal(residual["2.weight"], old["2.weight"]) and torch.equal(model[2].weight, head)
    assert not torch.equal(residual["0.weight"], old["0.weight"])
    assert opt.state["transform_state"][1]["count"] == 3  # the noise round was used

    opt.zero_grad()  # a step without any gradient changes nothing
    before = copy.deepcopy(opt.state["transform_state"])
    opt.step()
    now = opt.state["transform_state"]
    assert now[1]["count"] == 3
    assert all(torch.equal(now[0]["residual"][n], r) for n, r in before[0]["residual"].items())


def test_sparse_gradients_raise() -> None:
    emb = nn.Embedding(5, 2, sparse=True)
    opt = as_optimizer(identity(), emb.named_parameters(), lr=0.1)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(TypeError, match="'weight' has a sparse gradient"):
        opt.step()


def test_closure_loss_is_returned() -> None:
    model = make_model()
    opt = as_optimizer(identity(), model.parameters(), lr=0.1)
    x, y = batch(0)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert isinstance(opt, torch.optim.Optimizer) and isinstance(opt, TransformOptimizer)
    torch.testing.assert_close(loss, nn.functional.cross_entropy(make_model()(x), y), rtol=1e-6, atol=0)


def test_bad_arguments_raise() -> None:
    model = make_model()
    with pytest.raises(ValueError, match="lr"):
        as_optimizer(identity(), model.parameters(), lr=-0.1)
    with pytest.raises(ValueError, match="lr"):
        as_optimizer(identity(), [{"params": model.parameters(), "lr": float("nan")}], lr=0.1)
    with pytest.raises(TypeError, match="transform must be a GradTransform"):
        as_optimizer(identity, model.parameters(), lr=0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a mix"):
        as_optimizer(identity(), [("w", model[0].weight), model[0].bias], lr=0.1)
    with pytest.raises(ValueError, match="unique"):
        as_optimizer(identity(), [("w", model[0].weight), ("w", model[0].bias)], lr=0.1)


def test_transform_output_missing_parameters_raises() -> None:
    model = make_model()
    opt = as_optimizer(sketch(4), model.named_parameters(), lr=0.1)
    with pytest.raises(ValueError, match="lacks"):
        train(model, opt, range(1))
