"""Offline text pairs: finance retrieval pairs and stdlib docstring pairs."""

from __future__ import annotations

from gradinfo.datasets.pairs import docstring_pairs, finance_pairs


def test_finance_pairs_cover_the_vocabulary_once_in_a_seeded_order() -> None:
    a, b, c = finance_pairs(0), finance_pairs(0), finance_pairs(1)
    assert a == b
    assert a != c
    assert len(a) == 8 * 12 * 2 * 10  # sectors x metrics x directions x causes
    assert len({q for q, _ in a}) == len(a)  # every query distinct


def test_finance_passages_paraphrase_their_query() -> None:
    for query, passage in finance_pairs(0)[:50]:
        assert query != passage
        assert passage[0].isupper()
        assert any(w in passage for w in ("increased", "climbed", "jumped", "declined", "dropped", "slipped"))


def test_docstring_pairs_respect_lengths_and_count() -> None:
    pairs = docstring_pairs(0, 40)
    assert len(pairs) == 40
    assert pairs == docstring_pairs(0, 40)
    for head, body in pairs:
        assert 20 <= len(head) <= 200
        assert 40 <= len(body) <= 400
        assert ">>>" not in body
