"""HyperFL: generated weights, shared update restricted to the hypernetwork, federated rounds."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradinfo.privacy.defenses import HyperFLNet, hyperfl_model, hyperfl_share, hyperfl_train


def _model(seed: int = 0) -> HyperFLNet:
    extractor = nn.Sequential(nn.Linear(4, 3), nn.Tanh())
    return hyperfl_model(extractor, nn.Linear(3, 2), embed_dim=2, hidden_dim=5, seed=seed).double()


def test_forward_is_head_of_extractor_with_generated_weights() -> None:
    model = _model()
    x = torch.randn(5, 4, dtype=torch.float64)
    body = model.hypernetwork["body"]
    hidden = torch.relu(body[0].weight @ model.embedding + body[0].bias)  # [H]
    w = (model.hypernetwork["0_weight"].weight @ hidden + model.hypernetwork["0_weight"].bias).view(3, 4)
    b = model.hypernetwork["0_bias"].weight @ hidden + model.hypernetwork["0_bias"].bias
    want = model.head(torch.tanh(x @ w.T + b))
    torch.testing.assert_close(model(x), want, rtol=1e-12, atol=1e-12)
    names = {n for n, _ in model.named_parameters()}
    assert {"embedding", "head.weight", "head.bias"} <= names
    assert not any(n.startswith("extractor") for n in names)


def test_share_holds_only_the_hypernetwork_gradient_by_chain_rule() -> None:
    model = _model()
    x, y = torch.randn(3, 4, dtype=torch.float64), torch.tensor([0, 1, 1])
    update = hyperfl_share(model, F.cross_entropy, x, y)
    assert set(update.grads) == {n for n, _ in model.named_parameters() if n.startswith("hypernetwork.")}
    # J_h^T grad_theta: the output-layer bias gradient of each generated weight equals that weight's gradient
    theta = {k: v.detach().requires_grad_(True) for k, v in model.generate().items()}
    out = model.head(torch.func.functional_call(model.extractor, theta, (x,)))
    g = torch.autograd.grad(F.cross_entropy(out, y), list(theta.values()))
    torch.testing.assert_close(
        update.grads["hypernetwork.0_weight.bias"], g[0].flatten(), rtol=1e-10, atol=1e-12
    )
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    for n, p in model.named_parameters():
        if n in update.grads:
            torch.testing.assert_close(update.grads[n], p.grad, rtol=1e-10, atol=1e-12)


def test_train_shares_hypernetwork_and_keeps_personal_parts() -> None:
    torch.manual_seed(0)
    centres = torch.randn(2, 4) * 3
    clients = []
    for k in range(3):
        y = torch.randint(0, 2, (40,))
        clients.append((centres[y] + torch.randn(40, 4) * 0.3 + k, y))
    h = hyperfl_train(lambda: _model().float(), clients, 3, test=clients, local_epochs=2, batch_size=10)
    assert len(h.accuracy) == 4 and len(h.loss) == 3 and h.accuracy[-1] > 0.9
    assert len(h.personal) == 3 and set(h.personal[0]) == {"embedding", "head.weight", "head.bias"}
    assert not torch.equal(h.personal[0]["embedding"], h.personal[1]["embedding"])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="no parameters"):
        hyperfl_model(nn.ReLU(), nn.Linear(2, 2))
    with pytest.raises(TypeError, match="HyperFLNet"):
        hyperfl_share(nn.Linear(2, 2), F.cross_entropy, torch.zeros(1, 2), torch.zeros(1).long())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rounds"):
        hyperfl_train(
            _model,
            [(torch.zeros(2, 4), torch.zeros(2).long())],
            0,
            test=[(torch.zeros(2, 4), torch.zeros(2).long())],
        )
