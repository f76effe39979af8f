"""The named tasks the jobs share: seeded data and models, and the metric against a naive float64 loop."""

from __future__ import annotations

import math

import pytest
import torch

from gradinfo.tasks import DATA, TASKS, evaluate, load_data


@pytest.mark.parametrize("name", list(TASKS))
def test_a_task_builds_the_same_model_for_the_same_seed(name: str) -> None:
    task = TASKS[name]
    a, b, c = task.model(0), task.model(0), task.model(1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters(), strict=True))
    assert task.data in DATA and task.metric == ("perplexity" if task.data == "text" else "accuracy")


def test_text_windows_and_evaluation_sizes() -> None:
    data = load_data("text", seed=0)
    assert data.test[0].shape == (64, 64) and data.test[1].shape == (64, 64)
    assert torch.equal(data.train_eval[0], data.train.x[:64])
    digits = load_data("digits", seed=0)
    assert digits.train_eval[0].shape == (512, 1, 8, 8) and len(digits.test[0]) <= 512
    with pytest.raises(ValueError, match="unknown data set 'wiki'; valid: text, digits"):
        load_data("wiki", seed=0)


@pytest.mark.parametrize("name", ["tiny-lm", "mlp-digits"])
def test_evaluate_matches_a_float64_loop(name: str) -> None:
    task = TASKS[name]
    model = task.model(0).eval()
    x, y = load_data(task.data, seed=0).test
    x, y = x[:6], y[:6]
    got = evaluate(model, x, y)
    total, hits, count = 0.0, 0, 0
    with torch.no_grad():
        for i in range(len(x)):
            out = model(input_ids=x[i : i + 1]).logits[0] if task.kind == "lm" else model(x[i : i + 1])
            for row, target in zip(out.double(), y[i].reshape(-1), strict=True):
                total += float(torch.logsumexp(row, 0) - row[target])
                hits += int(row.argmax() == target)
                count += 1
    assert got["loss"] == pytest.approx(total / count, rel=1e-5)
    assert got["accuracy"] == pytest.approx(hits / count)
    assert got["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)
