"""The old->new id map (gemma3n_vocabfix/id_map.py, layout.build_id_map): property tests over every small layout,
against the oracle of tests/fixtures/oracle.py (the layout doc's π, and the target order for any input order).
The row plan built on it is in test_rows.py."""

from __future__ import annotations

from fixtures.oracle import DocLayout, target_order
from hypothesis import given
from hypothesis import strategies as st

from gemma3n_vocabfix.id_map import IdMap, IdRange
from gemma3n_vocabfix.layout import build_id_map

sizes = st.integers(min_value=0, max_value=40)


@given(text=sizes, v=sizes, a=sizes, k=sizes, audio_first=st.booleans())
def test_id_map_is_the_stable_reordering(text: int, v: int, a: int, k: int, audio_first: bool) -> None:
    vision, audio = ((text + a, v), (text, a)) if audio_first else ((text, v), (text + v, a))
    total = text + v + a + k
    id_map = build_id_map(total, vision, audio)
    order = target_order(total, vision, audio)
    assert [id_map(old) for old in order] == list(range(total))
    assert [id_map.inverse(new) for new in range(total)] == order


@given(text=sizes, v=sizes, a=sizes, k=sizes)
def test_id_map_matches_the_doc_formula(text: int, v: int, a: int, k: int) -> None:
    id_map = build_id_map(text + v + a + k, (text, v), (text + v, a))
    ids = DocLayout(text, v, a, k)
    assert [id_map(old) for old in range(ids.total)] == [ids.pi(old) for old in range(ids.total)]
    assert [id_map.inverse(new) for new in range(ids.total)] == [ids.inverse(new) for new in range(ids.total)]


def test_id_map_rejects_gaps() -> None:
    try:
        IdMap([IdRange(0, 0, 3), IdRange(4, 3, 2)])
    except ValueError:
        return
    raise AssertionError("a gap in the old ids was accepted")
