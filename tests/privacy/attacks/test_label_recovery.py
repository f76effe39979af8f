"""label_recovery: the iDLG rule is exact at B = 1; the count rule is exact where the softmax is known."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from gradinfo.models import cnn
from gradinfo.privacy import label_accuracy, share
from gradinfo.privacy.attacks import label_recovery


def _batch(seed: int, batch: int, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, 16, 16, generator=gen), torch.randint(0, classes, (batch,), generator=gen)


@pytest.mark.parametrize("bias", [True, False])
def test_single_example_is_exact_over_many_seeds(bias: bool) -> None:
    for seed in range(25):
        model = cnn(in_channels=3, image_size=16, width=4, hidden=16, dropout=0.25, seed=seed).train()
        if not bias:
            model.fc2.bias = None
        x, y = _batch(seed, 1)
        update = share(model, F.cross_entropy, x, y, seed=seed)
        rec = label_recovery(model, update)
        assert rec.labels.tolist() == y.tolist(), f"seed {seed}"
        assert rec.extras["rule"] == ("idlg-bias-sign" if bias else "idlg-weight-sign")


def test_scores_are_the_last_bias_gradient() -> None:
    model = cnn(in_channels=3, image_size=16, width=4, hidden=16, seed=1).double()
    x, y = _batch(1, 1)
    x = x.double()
    update = share(model, F.cross_entropy, x, y)
    p = model(x).softmax(-1)[0]  # [K]
    want = p - F.one_hot(y, 10)[0].double()  # closed form of dL/db for one example
    torch.testing.assert_close(update.grads["fc2.bias"], want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(label_recovery(model, update).extras["scores"], want.float())


@settings(max_examples=15, deadline=None)
@given(labels=st.lists(st.integers(0, 4), min_size=2, max_size=12), seed=st.integers(0, 1000))
def test_counts_exact_when_the_softmax_is_uniform(labels: list[int], seed: int) -> None:
    """A zero-weight linear classifier has p = 1/K everywhere, so n_k = B (1/K - dL/db_k) exactly."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    nn.init.zeros_(model[1].weight)
    nn.init.zeros_(model[1].bias)
    y = torch.tensor(labels)
    x = torch.rand(len(labels), 3, 4, generator=torch.Generator().manual_seed(seed))
    update = share(model, F.cross_entropy, x, y)
    rec = label_recovery(model, update, input_shape=(3, 4), seed=seed)
    assert rec.labels.tolist() == sorted(labels)
    assert rec.extras["counts"].tolist() == torch.bincount(y, minlength=5).tolist()


def test_batch_count_rule_on_the_cnn() -> None:
    accs = []
    for seed in range(5):
        model = cnn(in_channels=3, image_size=16, width=4, hidden=16, seed=seed).train()
        x, y = _batch(100 + seed, 8)
        rec = label_recovery(model, share(model, F.cross_entropy, x, y), input_shape=(3, 16, 16))
        assert rec.labels.shape == (8,)
        accs.append(label_accuracy(rec.labels, y))
    assert sum(accs) / len(accs) >= 0.75


def test_bad_input() -> None:
    model = cnn(in_channels=3, image_size=16, width=4, hidden=16)
    x, y = _batch(0, 3)
    with pytest.raises(ValueError, match="input_shape"):
        label_recovery(model, share(model, F.cross_entropy, x, y))
    with pytest.raises(ValueError, match="local_steps_inversion"):
        label_recovery(model, share(model, F.cross_entropy, x, y, local_steps=2))
    with pytest.raises(TypeError, match="SharedUpdate"):
        label_recovery(model, {"fc2.bias": torch.zeros(10)})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not fit"):
        label_recovery(cnn(in_channels=1, image_size=16), share(model, F.cross_entropy, x, y))
