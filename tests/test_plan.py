"""The plan of a rewrite (gemma3n_vocabfix/plan.py) and the record it writes: vocabfix.json gives the id map π
(tests/fixtures/oracle.py) and keeps an earlier record; a checkpoint already in the consistent layout plans no change
(a released one, or a rewrite's own output) and is copied byte for byte; planning reads no file.
"""

from __future__ import annotations

import json
from pathlib import Path

from fixtures.helpers import NEW, A, K, T, V, hash_tree
from fixtures.oracle import DocLayout
from fixtures.synthetic import build

from gemma3n_vocabfix import rewrite_checkpoint

IDS = DocLayout(T, V, A, K)


def test_record_gives_the_id_map(extended: Path, tmp_path: Path) -> None:
    rewrite_checkpoint(extended, tmp_path / "out")
    record = json.loads((tmp_path / "out" / "vocabfix.json").read_text())
    assert record["vocabfix_version"]
    for old in range(IDS.total):
        r = next(r for r in record["id_map"] if r["old_start"] <= old < r["old_stop"])
        assert r["new_start"] + old - r["old_start"] == IDS.pi(old)


def test_released_layout_is_copied_unchanged(tmp_path: Path) -> None:
    src = build(tmp_path / "released", text=T, vision=V, audio=A)
    report = rewrite_checkpoint(src, tmp_path / "out")
    assert not report.changed
    assert hash_tree(tmp_path / "out") == hash_tree(src)


def test_rewriting_the_output_again_changes_nothing(extended: Path, tmp_path: Path) -> None:
    rewrite_checkpoint(extended, tmp_path / "out")
    again = rewrite_checkpoint(tmp_path / "out", tmp_path / "again")
    assert not again.changed
    first, second = hash_tree(tmp_path / "out"), hash_tree(tmp_path / "again")
    assert {k: v for k, v in second.items() if k != "vocabfix.json"} == {
        k: v for k, v in first.items() if k != "vocabfix.json"}
    # the record is this rewrite's (every id kept), not the first one's copied (test_verify has why)
    record = json.loads((tmp_path / "again" / "vocabfix.json").read_text())
    assert record["previous"] == json.loads((tmp_path / "out" / "vocabfix.json").read_text())
    assert all(r["old_start"] == r["new_start"] for r in record["id_map"])


def test_plan_opens_no_file(tmp_path: Path) -> None:
    """Only the read step opens input files: planning works on what read_checkpoint carried."""
    import shutil

    from gemma3n_vocabfix.checkpoint import read_checkpoint
    from gemma3n_vocabfix.layout import analyse
    from gemma3n_vocabfix.plan import make_plan

    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)
    (src / "vocabfix.json").write_text(json.dumps({"vocabfix_version": "0.0.1", "note": "an earlier rewrite"}))
    ckpt = read_checkpoint(src, merges=False)
    layout = analyse(ckpt)
    moved = shutil.move(src, tmp_path / "elsewhere")  # every input file is gone from where it was read
    plan = make_plan(ckpt, layout)
    record = json.loads(next(b"".join(f.parts) for f in plan.files if f.name == "vocabfix.json"))
    assert record["previous"]["note"] == "an earlier rewrite"
    assert any(f.name == "tokenizer.model" and f.parts for f in plan.files)
    assert Path(moved).is_dir()


def test_unreadable_previous_record_is_named_in_the_new_one(tmp_path: Path) -> None:
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)
    (src / "vocabfix.json").write_bytes(b"\xff\xfe[[")
    rewrite_checkpoint(src, tmp_path / "out")
    record = json.loads((tmp_path / "out" / "vocabfix.json").read_text())
    assert "previous" not in record and "not valid JSON" in record["previous_unreadable"]
