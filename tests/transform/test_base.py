"""chain / identity / scale, the no-mutation contract, and saving a chain's state mid-run."""

import copy
import io

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradinfo.transform import (
    GradTransform,
    add_gaussian_noise,
    chain,
    check_keys,
    clip_by_global_norm,
    desketch,
    identity,
    scale,
    sketch,
    stochastic_quantize,
    topk_sparsify,
)


def make_grads(seed: int, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "layer.weight": torch.randn(3, 4, generator=gen, dtype=dtype),
        "layer.bias": torch.randn(3, generator=gen, dtype=dtype),
        "head": torch.randn(2, 2, 2, generator=gen, dtype=dtype),
    }


def stateful_chain(seed: int) -> GradTransform:
    return chain(
        clip_by_global_norm(1.5),
        add_gaussian_noise(0.3, seed),
        topk_sparsify(0.4, error_feedback=True),
        stochastic_quantize(3, seed + 1),
        sketch(5, seed, "countsketch", fresh=True),
        desketch(5, seed, "countsketch", fresh=True),
    )


def test_chain_applies_left_to_right() -> None:
    g = make_grads(0)
    shift = GradTransform(lambda p: (), lambda gr, s, p=None: ({n: t + 1 for n, t in gr.items()}, s))
    out, state = chain(scale(2.0), shift, scale(3.0)).update(g, ((), (), ()), None)
    for name, t in g.items():
        torch.testing.assert_close(out[name], (2 * t + 1) * 3, rtol=0, atol=1e-12)
    assert state == ((), (), ())


def test_chain_state_is_tuple_of_states() -> None:
    params = make_grads(1)
    state = chain(identity(), add_gaussian_noise(1.0, 0), topk_sparsify(0.5)).init(params)
    assert state == ((), {"count": 0}, ())


def test_identity_and_empty_chain_return_input() -> None:
    g = make_grads(2)
    for t in (identity(), chain()):
        out, _ = t.update(g, t.init(g), None)
        assert out.keys() == g.keys()
        for name in g:
            assert torch.equal(out[name], g[name])


def test_scale_multiplies() -> None:
    g = make_grads(3)
    out, _ = scale(-0.5).update(g, (), None)
    for name in g:
        torch.testing.assert_close(out[name], -0.5 * g[name], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("factor", "error"),
    [("2", TypeError), (True, TypeError), (float("nan"), ValueError), (float("inf"), ValueError)],
)
def test_scale_rejects_bad_factor(factor: object, error: type) -> None:
    with pytest.raises(error, match="factor"):
        scale(factor)  # type: ignore[arg-type]


def test_chain_rejects_uncalled_factory_and_bad_state() -> None:
    with pytest.raises(TypeError, match="argument 1 must be a GradTransform"):
        chain(identity(), identity)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a tuple of 2 states"):
        chain(identity(), identity()).update(make_grads(0), ((),), None)


def test_check_keys_names_missing_and_unexpected() -> None:
    with pytest.raises(ValueError, match=r"missing \['b'\], unexpected \['c'\]"):
        check_keys("t", {"a": torch.zeros(1), "c": torch.zeros(1)}, ["a", "b"])


@pytest.mark.parametrize("make", [lambda: stateful_chain(0), lambda: topk_sparsify(0.3), lambda: scale(2.0)])
def test_update_never_mutates_inputs(make) -> None:
    t = make()
    g, params = make_grads(4), make_grads(5)
    state = t.init(params)
    g_before, state_before = copy.deepcopy(g), copy.deepcopy(state)
    for _ in range(2):
        t.update(g, state, params)
    for name in g:
        assert torch.equal(g[name], g_before[name])
    torch.testing.assert_close(state, state_before, rtol=0, atol=0)


def run(t: GradTransform, state, steps: list[int], params) -> tuple[list, object]:
    outs = []
    for step in steps:
        out, state = t.update(make_grads(100 + step), state, params)
        outs.append(out)
    return outs, state


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), split=st.integers(0, 5))
def test_chain_state_saves_loads_and_continues_identically(seed: int, split: int) -> None:
    """A state saved with torch.save after `split` steps, loaded (weights_only), continues bit-identically."""
    t, params = stateful_chain(seed), make_grads(7)
    straight, _ = run(t, t.init(params), list(range(6)), params)

    _, state = run(t, t.init(params), list(range(split)), params)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    resumed, _ = run(t, loaded, list(range(split, 6)), params)
    resumed_copy, _ = run(t, copy.deepcopy(state), list(range(split, 6)), params)

    for a, b, c in zip(straight[split:], resumed, resumed_copy, strict=True):
        for name in a:
            assert torch.equal(a[name], b[name])
            assert torch.equal(a[name], c[name])
