"""minilm: the packaged encoder loads offline and embeds like sentence-transformers does."""

import socket

import pytest
import torch
from sentence_transformers import SentenceTransformer

from gradinfo.models import Encoder, minilm, minilm_embed

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The stock market fell sharply today.",
    "Shares dropped steeply on the exchange this afternoon.",
]


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    with pytest.MonkeyPatch.context() as mp:

        def refuse(*args: object, **kwargs: object) -> None:
            raise OSError("network access attempted")

        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        return minilm()


def test_loads_offline_in_eval_mode(encoder: Encoder) -> None:
    assert not encoder.model.training
    assert encoder.model.config.hidden_size == 384 and (encoder.path / "model.safetensors").is_file()


def test_similar_sentences_are_closer_than_unrelated_ones(encoder: Encoder) -> None:
    e = minilm_embed(SENTENCES, encoder=encoder)  # [4, 384]
    torch.testing.assert_close(e.norm(dim=1), torch.ones(4), rtol=0, atol=1e-5)
    cos = e @ e.T  # [4, 4]
    assert cos[0, 1] > cos[0, 2] + 0.3 and cos[0, 1] > cos[0, 3] + 0.3
    assert cos[2, 3] > cos[2, 0] + 0.3 and cos[2, 3] > cos[2, 1] + 0.3


def test_matches_sentence_transformers(encoder: Encoder) -> None:
    reference = SentenceTransformer(str(encoder.path), device="cpu").encode(SENTENCES, convert_to_tensor=True)
    got = minilm_embed(SENTENCES, encoder=encoder, batch_size=3)  # two batches, different padding
    torch.testing.assert_close(got, reference.cpu(), rtol=1e-4, atol=1e-5)


def test_bad_input(encoder: Encoder) -> None:
    with pytest.raises(TypeError, match="texts"):
        minilm_embed("one string", encoder=encoder)
    with pytest.raises(ValueError, match="texts"):
        minilm_embed([], encoder=encoder)
    with pytest.raises(ValueError, match="max_length"):
        minilm_embed(["a"], encoder=encoder, max_length=1000)
