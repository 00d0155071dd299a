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


def test_from_file_and_map_agree_with_the_oracle(tmp_path) -> None:
    """IdMap.from_file(a rewrite's folder or vocabfix.json).map(ids): numpy arrays and lists, -100 kept, ids past
    the map unchanged, against the doc's map."""
    import numpy as np
    from fixtures.helpers import NEW, A, T, V
    from fixtures.oracle import DocLayout
    from fixtures.synthetic import build

    from gemma3n_vocabfix import IdMap, rewrite_checkpoint
    src = build(tmp_path / "in", text=T, vision=V, audio=A, new_tokens=NEW)
    rewrite_checkpoint(src, tmp_path / "out")
    doc = DocLayout(T, V, A, len(NEW))
    ids = np.array([[i for i in range(T + V + A + len(NEW))], [-100] * (T + V + A + len(NEW))])
    for source in (tmp_path / "out", tmp_path / "out" / "vocabfix.json"):
        id_map = IdMap.from_file(source)
        mapped = id_map.map(ids)
        assert mapped.tolist() == [[doc.pi(i) for i in ids[0]], ids[1].tolist()]
        assert id_map.map([0, T, 10 ** 6, -1]) == [doc.pi(0), doc.pi(T), 10 ** 6, -1]


def test_from_file_of_something_else_is_one_clear_error(tmp_path) -> None:
    import pytest

    from gemma3n_vocabfix import IdMap
    from gemma3n_vocabfix.errors import CheckpointError
    (tmp_path / "vocabfix.json").write_text('{"id_map": 3}')
    with pytest.raises(CheckpointError, match="not a vocabfix record"):
        IdMap.from_file(tmp_path)
    with pytest.raises(CheckpointError, match="cannot read"):
        IdMap.from_file(tmp_path / "missing.json")


def test_map_refuses_a_dropped_id() -> None:
    import pytest

    from gemma3n_vocabfix.id_map import IdMap, IdRange
    id_map = IdMap([IdRange(0, 0, 5), IdRange(6, 5, 4)], dropped=[(5, 6)])
    assert id_map.map([0, 6, 9]) == [0, 5, 8]
    with pytest.raises(ValueError, match="id 5 has no new id"):
        id_map.map([1, 5])
