"""Property tests for the id map and the row plan: arithmetic on ranges, checked against plain lists."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gemma3n_vocabfix.id_map import IdMap, IdRange
from gemma3n_vocabfix.layout import TableRole, build_id_map
from gemma3n_vocabfix.rows import CopyRows, MeanRows

sizes = st.integers(min_value=0, max_value=40)


def expected_order(total: int, vision: tuple[int, int], audio: tuple[int, int]) -> list[int]:
    """Old ids listed in their new order: text ids in order, then vision, then audio."""
    mm = set(range(vision[0], sum(vision))) | set(range(audio[0], sum(audio)))
    text = [i for i in range(total) if i not in mm]
    return text + list(range(vision[0], sum(vision))) + list(range(audio[0], sum(audio)))


@given(text=sizes, v=sizes, a=sizes, k=sizes, audio_first=st.booleans())
def test_id_map_is_the_stable_reordering(text: int, v: int, a: int, k: int, audio_first: bool) -> None:
    vision, audio = ((text + a, v), (text, a)) if audio_first else ((text, v), (text + v, a))
    total = text + v + a + k
    id_map = build_id_map(total, vision, audio)
    order = expected_order(total, vision, audio)
    assert [id_map(old) for old in order] == list(range(total))
    assert [id_map.inverse(new) for new in range(total)] == order


@given(text=sizes, v=sizes, a=sizes, k=sizes)
def test_id_map_matches_the_doc_formula(text: int, v: int, a: int, k: int) -> None:
    id_map = build_id_map(text + v + a + k, (text, v), (text + v, a))
    for old in range(text + v + a + k):
        want = old if old < text else old + k if old < text + v + a else old - v - a
        assert id_map(old) == want


def test_id_map_rejects_gaps() -> None:
    try:
        IdMap([IdRange(0, 0, 3), IdRange(4, 3, 2)])
    except ValueError:
        return
    raise AssertionError("a gap in the old ids was accepted")


class _Tensor:
    def __init__(self, rows: int):
        self.rows, self.shape, self.name = rows, (rows, 2), "t"


@given(text=st.integers(1, 30), v=sizes, a=sizes, k=sizes, rows_delta=st.integers(-20, 20),
       role=st.sampled_from([TableRole.EMBED_TOKENS, TableRole.PER_LAYER]))
def test_table_plan_reads_the_row_of_each_old_id(text, v, a, k, rows_delta, role) -> None:
    from gemma3n_vocabfix.layout import Layout, VocabTable
    from gemma3n_vocabfix.rows import plan_table
    from gemma3n_vocabfix.tokenizer_files import TokenizerIds

    total = text + v + a + k
    id_map = build_id_map(total, (text, v), (text + v, a))
    rows_in = max(0, (total if role is TableRole.EMBED_TOKENS else text) + rows_delta)
    layout = Layout(text, v, text + v, a, total, text, TokenizerIds(total, {}))
    plan = plan_table(VocabTable(_Tensor(rows_in), role), layout)
    produced = []
    for seg in plan.segments:
        produced += (list(range(seg.first_row, seg.first_row + seg.count)) if isinstance(seg, CopyRows)
                     else ["mean"] * seg.count if isinstance(seg, MeanRows) else [])
    rows_out = total if role is TableRole.EMBED_TOKENS else text + k
    want = [id_map.inverse(r) for r in range(rows_out)]
    assert produced == [old if old < rows_in else "mean" for old in want]
