"""task_grads against one plain backward pass per loss (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradinfo.capture.tasks import task_grads


class TwoHeads(nn.Module):
    """Shared trunk, two heads, one frozen parameter and one the losses never reach."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(5, 8), nn.Tanh())
        self.head_a = nn.Linear(8, 3)
        self.head_b = nn.Linear(8, 1)
        self.frozen = nn.Linear(8, 1)
        self.frozen.requires_grad_(False)
        self.unused = nn.Parameter(torch.randn(4))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.head_a(h), self.head_b(h) + self.frozen(h)


def _losses(model: TwoHeads) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    ya = torch.randint(0, 3, (6,), generator=gen)
    yb = torch.randn(6, 1, generator=gen, dtype=torch.float64)
    out_a, out_b = model(x)
    return [
        nn.functional.cross_entropy(out_a, ya),
        nn.functional.mse_loss(out_b, yb),
        (out_a.pow(2).sum() + out_b.sum()) / 7,
    ]


def _reference(model: TwoHeads) -> dict[str, torch.Tensor]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    rows = []
    for t in range(3):
        loss = _losses(model)[t]
        grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
        rows.append([torch.zeros_like(p) if g is None else g for (_, p), g in zip(named, grads, strict=True)])
    return {n: torch.stack([row[i] for row in rows]) for i, (n, _) in enumerate(named)}


@pytest.fixture
def model() -> TwoHeads:
    torch.manual_seed(0)
    return TwoHeads().double()


def test_matches_one_backward_per_loss(model: TwoHeads) -> None:
    got = task_grads(model, _losses(model))
    want = _reference(model)
    assert list(got) == list(want)  # trainable only, named_parameters order
    assert "frozen.weight" not in got
    for name in want:
        assert got[name].shape == (3, *dict(model.named_parameters())[name].shape)
        torch.testing.assert_close(got[name], want[name], rtol=1e-10, atol=1e-12)
    assert torch.count_nonzero(got["unused"]) == 0
    assert torch.count_nonzero(got["head_b.weight"][0]) == 0  # loss 0 never reaches head b
    assert all(p.grad is None for p in model.parameters())


def test_tensor_input_and_graph_kept(model: TwoHeads) -> None:
    losses = torch.stack(_losses(model))
    got = task_grads(model, losses)
    want = _reference(model)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-10, atol=1e-12)
    losses.sum().backward()  # the graph is still alive
    torch.testing.assert_close(model.head_a.weight.grad, want["head_a.weight"].sum(0), rtol=1e-10, atol=1e-12)


def test_loop_fallback_matches(model: TwoHeads, monkeypatch: pytest.MonkeyPatch) -> None:
    real_grad = torch.autograd.grad

    def no_batching(*args, **kwargs):
        if kwargs.get("is_grads_batched"):
            raise RuntimeError("no batching rule")
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", no_batching)
    got = task_grads(model, _losses(model))
    monkeypatch.undo()
    want = _reference(model)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-10, atol=1e-12)
    assert torch.count_nonzero(got["unused"]) == 0


def test_bad_input(model: TwoHeads) -> None:
    losses = _losses(model)
    with pytest.raises(ValueError, match="empty"):
        task_grads(model, [])
    with pytest.raises(ValueError, match="scalar"):
        task_grads(model, [losses[0], torch.ones(2, requires_grad=True)])
    with pytest.raises(ValueError, match="1-D"):
        task_grads(model, torch.stack(losses)[None])
    with pytest.raises(ValueError, match="require grad"):
        task_grads(model, [torch.tensor(1.0)])
    with pytest.raises(TypeError, match="not tensors"):
        task_grads(model, [losses[0], 1.0])
    with pytest.raises(TypeError, match="sequence"):
        task_grads(model, 1.0)
    with pytest.raises(TypeError, match="Module"):
        task_grads(lambda x: x, losses)
