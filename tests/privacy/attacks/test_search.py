"""The parameterisations: checked when built; seeded starts, inputs and clipping as documented."""

from __future__ import annotations

import pytest
import torch

from gradinfo.privacy.attacks.search import DecoderLatents, Inputs, InputsAndDropoutMasks


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: Inputs((3, 0, 8)), ValueError, r"input_shape entries must be >= 1, got 0"),
        (lambda: Inputs("3x8x8"), TypeError, r"input_shape must be a non-empty tuple of ints"),
        (lambda: Inputs((3, 8, 8), box=(1.0, 0.0)), ValueError, r"box must be \(low, high\) with low < high"),
        (lambda: Inputs((3, 8, 8), box=(0.0,)), ValueError, r"box must be \(low, high\)"),
        (lambda: InputsAndDropoutMasks((3, 8, 8), mask_reg=-1.0), ValueError, r"mask_reg must be a finite"),
        (lambda: InputsAndDropoutMasks((3, 8, 8), box=(2, 2)), ValueError, r"box must be"),
        (lambda: DecoderLatents(3, (2,), (3, 8, 8)), TypeError, r"decoder must be callable .*got int"),
        (lambda: DecoderLatents(torch.tanh, (), (3, 8, 8)), TypeError, r"latent_shape must be a non-empty"),
        (lambda: DecoderLatents(torch.tanh, (2,), (0,)), ValueError, r"input_shape entries must be >= 1"),
    ],
)
def test_bad_values_raise_when_built(build: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        build()  # type: ignore[operator]


def test_inputs_start_in_the_box_and_are_clipped_to_it() -> None:
    search = Inputs([2, 3], box=(-1, 1))
    assert search.shape == (2, 3) and search.box == (-1.0, 1.0) and search.input_shape == (2, 3)
    gen = torch.Generator().manual_seed(0)
    z = search.initial(gen, 4, 5, torch.float64, torch.device("cpu"))  # [4, 5, 2, 3]
    want = -1 + 2 * torch.rand(4, 5, 2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert z.shape == (4, 5, 2, 3) and torch.equal(z, want)
    assert search.inputs(z) is z
    wide = 3 * z
    search.clip_(wide)
    assert float(wide.min()) >= -1 and float(wide.max()) <= 1
    free = Inputs((2,), box=None)
    z = free.initial(torch.Generator().manual_seed(1), 1, 2, torch.float32, torch.device("cpu"))
    assert torch.equal(z, torch.randn(1, 2, 2, generator=torch.Generator().manual_seed(1)))
    big = z + 10
    free.clip_(big)
    assert torch.equal(big, z + 10)  # no box, no clipping


def test_decoder_latents_decode_every_restart_and_example() -> None:
    weight = torch.randn(4, 6, generator=torch.Generator().manual_seed(2))  # [latent, 6]
    search = DecoderLatents(lambda z: (z @ weight).reshape(-1, 2, 3), (4,), (2, 3))
    z = search.initial(torch.Generator().manual_seed(3), 2, 5, torch.float32, torch.device("cpu"))
    assert z.shape == (2, 5, 4)
    x = search.inputs(z)  # [2, 5, 2, 3]
    torch.testing.assert_close(x[1, 3], (z[1, 3] @ weight).reshape(2, 3), rtol=0, atol=0)
    before = z.clone()
    search.clip_(z)
    assert torch.equal(z, before)  # latents are unconstrained
    assert InputsAndDropoutMasks((2, 3)).mask_reg == 1e-4
