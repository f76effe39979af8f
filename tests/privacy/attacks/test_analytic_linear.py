"""analytic_linear and the imprint module: exact float64 recovery; detection on clean and imprinted models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradinfo.models import cnn, mlp, resnet, tiny_gpt2, tiny_llama
from gradinfo.privacy import share
from gradinfo.privacy.attacks.analytic_linear import analytic_linear
from gradinfo.privacy.attacks.imprint import Imprint, detect_imprint, imprint_model


def _match(found: Tensor, true: Tensor) -> Tensor:
    """For each true example, the distance to the closest recovered one."""
    return torch.cdist(true.flatten(1), found.flatten(1)).min(1).values  # [B]


def test_single_example_is_exact_in_float64() -> None:
    model = mlp(20, 4, hidden=(16,), seed=1).double()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 4, 5, generator=gen, dtype=torch.float64)  # [1, 4, 5]
    update = share(model, F.cross_entropy, x, torch.tensor([2]))
    rec = analytic_linear(model, update, input_shape=(4, 5))
    torch.testing.assert_close(rec.inputs, x, rtol=0, atol=1e-10)
    assert rec.extras == {"layer": "fc1", "mode": "rows", "recovered": 1}


def test_single_row_ratio_equals_the_closed_form() -> None:
    """Reference: dL/dW_i / dL/db_i for one row, written out by hand."""
    model = mlp(6, 3, hidden=(5,), seed=2).double()
    x = torch.rand(1, 6, dtype=torch.float64)  # [1, 6]
    update = share(model, F.cross_entropy, x, torch.tensor([1]))
    gw, gb = update.grads["fc1.weight"], update.grads["fc1.bias"]
    row = int(gb.abs().argmax())
    torch.testing.assert_close(gw[row] / gb[row], x[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(analytic_linear(model, update).inputs, x, rtol=0, atol=1e-12)


def test_k_step_delta_of_one_example_is_exact() -> None:
    model = mlp(12, 3, hidden=(8,), seed=3).double()
    x = torch.rand(1, 12, dtype=torch.float64)  # [1, 12]
    update = share(model, F.cross_entropy, x, torch.tensor([0]), local_steps=4, lr=0.5)
    assert update.kind == "delta"
    torch.testing.assert_close(analytic_linear(model, update).inputs, x, rtol=0, atol=1e-10)


def _public_and_batch(batch: int) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(5)
    public = torch.rand(400, 1, 6, 6, generator=gen, dtype=torch.float64)  # [400, 1, 6, 6]
    x = torch.rand(batch, 1, 6, 6, generator=gen, dtype=torch.float64)  # [B, 1, 6, 6]
    return public, x


def test_imprint_recovers_every_example_alone_in_its_bin() -> None:
    public, x = _public_and_batch(6)
    model = imprint_model(cnn(3, 1, 6, width=2, hidden=8).double(), 200, (1, 6, 6), public_inputs=public)
    stat = x.flatten(1).mean(1)  # [B]  the bins' statistic
    rows = model.imprint.linear
    thresholds = -rows.bias  # [n]  gain 1: row k is active iff mean(x) > t_k
    bins = torch.bucketize(stat, thresholds)  # [B]
    assert bins.unique().numel() == 6, "test premise: one example per bin"
    update = share(model, F.cross_entropy, x, torch.tensor([0, 1, 2, 0, 1, 2]))
    rec = analytic_linear(model, update, input_shape=(1, 6, 6))
    assert rec.extras["mode"] == "imprint" and rec.extras["recovered"] == 6
    torch.testing.assert_close(_match(rec.inputs, x), torch.zeros(6, dtype=torch.float64), rtol=0, atol=1e-10)


def test_imprint_bins_mix_examples_that_share_a_bin() -> None:
    public, x = _public_and_batch(3)
    x[1] = x[0] + 1e-4  # same mean brightness bin as x[0]
    model = imprint_model(mlp(36, 3, seed=0).double(), 50, (1, 6, 6), public_inputs=public)
    update = share(model, F.cross_entropy, x, torch.tensor([0, 1, 2]))
    rec = analytic_linear(model, update, input_shape=(1, 6, 6))
    dist = _match(rec.inputs, x)  # [3]
    assert rec.extras["recovered"] == 2
    assert dist[2] < 1e-10 and dist[0] > 1e-6 and dist[1] > 1e-6


def test_imprint_keeps_the_model_function_close_and_draws_thresholds_from_quantiles() -> None:
    public, x = _public_and_batch(4)
    base = mlp(36, 3, seed=0).double()
    model = imprint_model(base, 10, (1, 6, 6), public_inputs=public, statistic="random", seed=1)
    assert isinstance(model.imprint, Imprint)
    torch.testing.assert_close(model(x), base(x), rtol=0, atol=0.05)
    w, b = model.imprint.linear.weight, model.imprint.linear.bias
    stat = public.flatten(1) @ w[0]  # [400]
    share_above = (stat.unsqueeze(1) > -b).double().mean(0)  # [n]  fraction of public data above each row
    expected = torch.cat([torch.ones(1), 1 - torch.arange(1, 10) / 10]).double()
    torch.testing.assert_close(share_above, expected, rtol=0, atol=0.01)


def _trained(model: nn.Module, inputs: Tensor, targets: Tensor, loss_fn, steps: int = 15) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(inputs), targets).backward()
        opt.step()
    return model


def _lm_loss(out, y: Tensor) -> Tensor:
    return F.cross_entropy(out.logits.flatten(0, 1), y.flatten())


CLEAN = {
    "cnn": lambda: (cnn(10, 3, 16, width=4, hidden=32, seed=0), (3, 16, 16), 10),
    "mlp": lambda: (mlp(64, 10, hidden=(64, 32), seed=0), (1, 8, 8), 10),
    "resnet": lambda: (resnet(10, 3, width=8, groups=4, seed=0), (3, 16, 16), 10),
}


@pytest.mark.parametrize("name", sorted(CLEAN))
@pytest.mark.parametrize("train", [False, True])
def test_detect_imprint_on_clean_and_imprinted_image_models(name: str, train: bool) -> None:
    model, shape, classes = CLEAN[name]()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(16, *shape, generator=gen)  # [16, *shape]
    if train:
        _trained(model, x, torch.randint(0, classes, (16,), generator=gen), F.cross_entropy)
    assert not detect_imprint(model).flagged
    for statistic in ("mean", "random"):
        for bins in (2, 16):
            bad = imprint_model(model, bins, shape, public_inputs=x, statistic=statistic)
            found = detect_imprint(bad)
            assert found.flagged and found.layers == ("imprint.linear",)
            assert found.group_sizes["imprint.linear"] == bins


@pytest.mark.parametrize("build", [tiny_llama, tiny_gpt2])
def test_detect_imprint_passes_clean_language_models(build) -> None:
    model = build(
        hidden_size=32, num_layers=1, num_heads=2, **({"num_kv_heads": 1} if build is tiny_llama else {})
    )
    assert not detect_imprint(model).flagged
    ids = torch.randint(0, 256, (4, 12), generator=torch.Generator().manual_seed(0))  # [4, 12]
    _trained(model, ids, ids, _lm_loss, steps=5)
    assert not detect_imprint(model).flagged


def test_bad_arguments_raise_before_work() -> None:
    public, _ = _public_and_batch(1)
    model = mlp(36, 3)
    with pytest.raises(ValueError, match="bins"):
        imprint_model(model, 1, (1, 6, 6), public_inputs=public)
    with pytest.raises(ValueError, match="public_inputs"):
        imprint_model(model, 4, (1, 5, 5), public_inputs=public)
    with pytest.raises(ValueError, match="statistic"):
        imprint_model(model, 4, (1, 6, 6), public_inputs=public, statistic="median")
    with pytest.raises(TypeError, match="model"):
        detect_imprint("model")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_rows"):
        detect_imprint(model, min_rows=1)
    update = share(model, F.cross_entropy, public[:1].float(), torch.tensor([0]))
    with pytest.raises(ValueError, match="input_shape"):
        analytic_linear(model, update, input_shape=(1, 5, 5))


def test_detect_imprint_flags_an_imprint_built_as_a_convolution() -> None:
    # the same bins as imprint_model's, as a Conv2d whose kernel covers the image: one channel per bin
    conv = nn.Conv2d(3, 8, kernel_size=(6, 6))
    v = torch.randn(3, 6, 6, generator=torch.Generator().manual_seed(0))  # [3, 6, 6]
    with torch.no_grad():
        conv.weight.copy_(v.expand(8, 3, 6, 6))
        conv.bias.copy_(-torch.arange(8.0))
    found = detect_imprint(nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)))
    assert found.flagged and found.layers == ("0",) and found.group_sizes["0"] == 8
    assert not detect_imprint(cnn(10, 3, 16, width=4, hidden=32, seed=0)).flagged
