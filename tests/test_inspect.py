"""`vocabfix inspect` (gemma3n_vocabfix/inspect.py, findings.py, routing.py, render_inspect.py) on synthetic
checkpoints (tests/fixtures/synthetic.py) and on an E4B-shaped one (tests/fixtures/e4b_shaped.py): the findings and
their codes, routing of each id range and of single tokens, the text / JSON / GitHub renderings, exit codes.

Expected ids and rows come from docs/gemma3n-vocab-layout.md (stock transformers sends every id >= audio_offset to
embed_audio; the appended range from tests/fixtures/oracle.py), not from the code under test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures import helpers
from fixtures.e4b_shaped import build_e4b_shaped
from fixtures.helpers import INDEX, ROOT, SHARD1, SHARD2, A, T, V, assert_one_line_error
from fixtures.helpers import run_cli as vocabfix
from fixtures.oracle import DocLayout
from fixtures.synthetic import build
from safetensors.numpy import load_file, save_file

from gemma3n_vocabfix import rewrite_checkpoint
from gemma3n_vocabfix.checkpoint import read_checkpoint
from gemma3n_vocabfix.inspect import inspect_checkpoint
from gemma3n_vocabfix.render import _gh_data, _gh_property

NEW = ["<new_a>", "<new_b>", "domainword"]
K = len(NEW)
IDS = DocLayout(T, V, A, K)


def invoke(*args: object):
    """`vocabfix inspect ARGS --verbose` (every table) in this process (CliRunner), the console width pinned."""
    return helpers.invoke("inspect", *args, "--verbose")


def codes(result) -> list[str]:
    return [f["code"] for f in json.loads(result.stdout)["findings"]]


@pytest.fixture
def extended(tmp_path: Path) -> Path:
    """Tokens added, then resize_token_embeddings under transformers 5 (which also grows the per-layer table)."""
    return build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)


@pytest.fixture
def released(tmp_path: Path) -> Path:
    return build(tmp_path / "released", text=T, vision=V, audio=A)


# --- the CLI cases --------------------------------------------------------------------------------------


def test_extended_exits_1_with_the_audio_routing_finding(extended: Path) -> None:
    result = invoke(extended)
    assert result.exit_code == 1, result.output
    assert "VF001" in result.stdout
    # the appended ids T+V+A.. are sent to embed_audio rows A.. of an A-row table
    lo, hi = IDS.appended_old
    assert f"{lo}..{hi - 1}" in result.stdout
    assert f"embed_audio rows {A}..{A + K - 1} (of {A})" in result.stdout
    assert f"vocabfix rewrite {extended} {extended}-vocabfix" in result.stdout


def test_rewritten_checkpoint_exits_0(extended: Path, tmp_path: Path) -> None:
    rewrite_checkpoint(extended, tmp_path / "fixed")
    result = invoke(tmp_path / "fixed", "--strict")
    assert result.exit_code == 0, result.output
    assert "OK:" in result.stdout and "Findings" not in result.stdout


def test_released_layout_exits_0(released: Path) -> None:
    result = invoke(released, "--strict")
    assert result.exit_code == 0, result.output
    assert "[text | vision | audio]" in result.stdout  # escaped, not eaten as rich markup
    assert codes(invoke(released, "--json")) == []


def test_transformers5_resize_shows_the_per_layer_finding(extended: Path, tmp_path: Path) -> None:
    assert "VF004" in codes(invoke(extended, "--json"))
    # tokens added without resizing: no per-layer finding, but ids beyond every table
    not_resized = build(tmp_path / "nr", text=T, vision=V, audio=A, new_tokens=NEW, embed_rows=T + V + A,
                        per_layer_rows=T, vocab_size=T + V + A, per_layer_size=T)
    found = codes(invoke(not_resized, "--json"))
    assert "VF004" not in found and {"VF001", "VF007"} <= set(found)


def test_multimodal_ids_read_their_own_per_layer_rows_after_resize(extended: Path) -> None:
    data = json.loads(invoke(extended, "--json").stdout)
    vision = next(r for r in data["layout"]["ranges"] if r["name"] == "vision")
    assert vision["segments"][0]["per_layer"].startswith(f"rows {T}..{T + V - 1}")
    released = next(r for r in data["layout"]["ranges"] if r["name"] == "text")
    assert released["segments"][0]["per_layer"] == f"rows 0..{T - 1}"


def test_json_parses_and_carries_the_same_findings(extended: Path) -> None:
    text = invoke(extended)
    as_json = invoke(extended, "--json")
    assert as_json.exit_code == text.exit_code == 1
    data = json.loads(as_json.stdout)  # stdout holds one JSON document and nothing else
    found = [f["code"] for f in data["findings"]]
    assert found and all(code in text.stdout for code in found)
    assert json.loads(invoke(extended, "--format", "json").stdout)["findings"] == data["findings"]
    assert data["layout"]["appended"] == list(IDS.appended_old)
    assert data["layout"]["vision"] == [T, T + V] and data["layout"]["audio"] == [T + V, T + V + A]
    vf001 = next(f for f in data["findings"] if f["code"] == "VF001")
    assert vf001["severity"] == "error" and vf001["details"]["ids"] == list(IDS.appended_old)
    assert vf001["fix"].startswith("vocabfix rewrite ")
    tensors = {t["role"]: t for t in data["tensors"]}
    assert tensors["embed_tokens"]["rows"] == T + V + A + K and tensors["embed_audio"]["rows"] == A


def test_json_on_stdout_only_through_main(extended: Path) -> None:
    proc = vocabfix("inspect", extended, "--json")
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["exit_code"] == 1
    assert proc.stderr == ""


def test_padded_tables_warn_and_strict_gates_warnings(tmp_path: Path, released: Path) -> None:
    total = T + V + A + K
    padded = build(tmp_path / "pad", text=T, vision=V, audio=A, new_tokens=NEW, embed_rows=total + 5,
                   per_layer_rows=total + 5, lm_head_rows=total + 5)
    data = json.loads(invoke(padded, "--json").stdout)
    found = {f["code"]: f for f in data["findings"]}
    assert found["VF006"]["severity"] == "warning" and "VF002" in found
    # a checkpoint whose only finding is a warning: 0, and 1 with --strict
    index = json.loads((released / INDEX).read_text())
    del index["weight_map"]["model.language_model.norm.weight"]
    (released / INDEX).write_text(json.dumps(index))
    assert codes(invoke(released, "--json")) == ["VF013"]
    assert invoke(released).exit_code == 0
    assert invoke(released, "--strict").exit_code == 1


HOSTILE = ["[bold red]boom[/]", "\x1b[31mred\x1b[0m", "bell\x07", "tab\there"]


def test_hostile_token_strings_are_printed_escaped(tmp_path: Path) -> None:
    src = build(tmp_path / "hostile", text=T, vision=V, audio=A, new_tokens=HOSTILE)
    result = invoke(src, "--lookup", HOSTILE[0], "--lookup", HOSTILE[1], "--lookup", "[link=http://x]y[/link]")
    assert result.exit_code == 1, result.output
    out = result.stdout
    assert "\x1b" not in out and "\x07" not in out and "\t" not in out
    assert "[bold red]boom[/]" in out  # shown literally, not interpreted as markup
    assert "\\x1b[31mred\\x1b[0m" in out and "bell\\x07" in out and "tab\\there" in out
    assert "[link=http://x]y[/link]" in out
    # the same strings in JSON are the exact tokens; in GitHub annotations no line can be injected
    data = json.loads(invoke(src, "--json").stdout)
    assert data["findings"][0]["details"]["tokens"][:2] == HOSTILE[:2]
    github = invoke(src, "--format", "github").stdout
    lines = github.splitlines()
    assert all(line.startswith(("::error ", "::warning ", "::notice ", "vocabfix inspect ")) for line in lines)
    assert "\x1b" not in github


def test_token_classification(extended: Path) -> None:
    result = invoke(extended, "--json", "--lookup", "<new_b>", "--lookup", str(T + 1), "--lookup", "3",
                    "--lookup", "nope-not-a-token", "--lookup", "<image_soft_token>")
    tokens = json.loads(result.stdout)["tokens"]
    new_b, vision, text, unknown, image = tokens
    assert new_b["id"] == IDS.new_ids_old[1] and new_b["range"] == "appended"
    assert new_b["route"]["table"] == "embed_audio" and new_b["route"]["row"] == A + 1
    assert "IndexError" in new_b["route"]["error"]
    assert vision["range"] == "vision" and vision["route"]["table"] == "embed_vision" and vision["route"]["row"] == 1
    assert vision["token"] == "<image_soft_token>" and vision["route"]["error"] is None
    assert text["route"] == {"id": 3, "table": "embed_tokens", "row": 3, "table_rows": T + V + A + K,
                             "per_layer_row": 3, "error": None}
    assert unknown["id"] is None and "not a token" in unknown["note"]
    assert image["id"] == T + 1
    shown = invoke(extended, "--lookup", "<new_b>").stdout
    assert "Tokens" in shown and "embed_audio row 5 (of 4)" in shown


def test_special_id_naming_another_token(extended: Path) -> None:
    config = json.loads((extended / "config.json").read_text())
    config["image_token_id"] = T + 2  # <unused_image0>, not <image_soft_token>
    (extended / "config.json").write_text(json.dumps(config))
    data = json.loads(invoke(extended, "--json").stdout)
    vf008 = next(f for f in data["findings"] if f["code"] == "VF008")
    assert vf008["details"]["key"] == "image_token_id" and vf008["details"]["expected_id"] == T + 1
    assert f"set image_token_id to {T + 1} in config.json" in vf008["fix"]
    assert "Image features and image tokens do not match" in vf008["message"]
    special = {s["key"]: s for s in data["layout"]["special_ids"]}
    assert special["image_token_id"]["agrees"] is False and special["audio_token_id"]["agrees"] is True


@pytest.mark.parametrize("value", [str(T + 1), float(T + 1), True, [T + 1, "x"]])
def test_special_id_that_is_no_integer(extended: Path, value: object) -> None:
    """"301" names the right token to a person, but stock transformers compares input ids with the value itself:
    a VF008 error, not "agrees"."""
    config = json.loads((extended / "config.json").read_text())
    config["image_token_id"] = value
    (extended / "config.json").write_text(json.dumps(config))
    data = json.loads(invoke(extended, "--json").stdout)
    vf008 = next(f for f in data["findings"] if f["code"] == "VF008")
    assert vf008["details"]["key"] == "image_token_id" and "must be an integer token id" in vf008["message"]
    assert f"set image_token_id to {T + 1} in config.json" in vf008["fix"]


def test_special_id_that_is_no_integer_in_generation_config_only(released: Path) -> None:
    """The finding names the file whose value is wrong (generation_config.json here), not config.json's good one."""
    gen = json.loads((released / "generation_config.json").read_text())
    gen["pad_token_id"] = True
    (released / "generation_config.json").write_text(json.dumps(gen))
    config = json.loads((released / "config.json").read_text())
    config["pad_token_id"] = 0  # the good value, in the file read first
    (released / "config.json").write_text(json.dumps(config))
    data = json.loads(invoke(released, "--json").stdout)
    vf008 = next(f for f in data["findings"] if f["code"] == "VF008")
    assert vf008["message"].startswith("generation_config.json says pad_token_id = true"), vf008["message"]
    assert "in generation_config.json" in vf008["fix"]


def test_generation_config_disagreeing_with_config(released: Path) -> None:
    gen = json.loads((released / "generation_config.json").read_text())
    config = json.loads((released / "config.json").read_text())
    gen["eos_token_id"] = [1, 2]
    (released / "generation_config.json").write_text(json.dumps(gen))
    assert config["eos_token_id"] == [1, 106]
    assert codes(invoke(released, "--json")) == ["VF009"]


def test_generation_config_with_a_superset_of_eos_ids_is_fine(released: Path) -> None:
    """As in unsloth's published E2B (config eos 106, generation config [1, 106]): a subset is a choice."""
    config = json.loads((released / "config.json").read_text())
    config["eos_token_id"] = 1
    (released / "config.json").write_text(json.dumps(config))
    assert codes(invoke(released, "--json")) == []


def test_audio_before_vision(extended: Path) -> None:
    config = json.loads((extended / "config.json").read_text())
    config["audio_config"]["vocab_offset"], config["vision_config"]["vocab_offset"] = T, T + A
    (extended / "config.json").write_text(json.dumps(config))
    data = json.loads(invoke(extended, "--json").stdout)
    found = {f["code"]: f for f in data["findings"]}
    assert "VF003" in found and "every vision id is sent to embed_audio" in found["VF003"]["message"]
    # VF001 now starts at the first vision id: audio_offset T, a 4-row audio table
    assert found["VF001"]["details"]["ids"] == [T + A, T + V + A + K]


# --- index / shard disagreements -----------------------------------------------------------------------------


def _index(path: Path) -> dict:
    return json.loads((path / INDEX).read_text())


def _write_index(path: Path, index: dict) -> None:
    (path / INDEX).write_text(json.dumps(index))


def test_missing_shard(released: Path) -> None:
    (released / SHARD2).unlink()
    data = json.loads(invoke(released, "--json").stdout)
    found = {f["code"]: f for f in data["findings"]}
    assert found["VF011"]["details"]["shard"] == SHARD2
    assert "VF012" in found  # its tensors are listed but in no shard
    assert data["exit_code"] == 1


def test_tensor_listed_but_absent_and_misplaced(released: Path) -> None:
    index = _index(released)
    index["weight_map"]["model.language_model.layers.1.mlp.up_proj.weight"] = SHARD1
    index["weight_map"]["model.language_model.norm.weight"] = SHARD1
    _write_index(released, index)
    found = {f["code"]: f for f in json.loads(invoke(released, "--json").stdout)["findings"]}
    assert found["VF012"]["details"]["tensors"] == ["model.language_model.layers.1.mlp.up_proj.weight"]
    assert found["VF015"]["details"]["tensors"] == ["model.language_model.norm.weight"]


def test_duplicated_tensor(released: Path) -> None:
    shard2 = released / SHARD2
    tensors = load_file(str(shard2))
    tensors["model.language_model.layers.0.mlp.up_proj.weight"] = np.zeros((3, 4), np.float32)
    save_file(tensors, str(shard2), metadata={"format": "pt"})
    found = {f["code"]: f for f in json.loads(invoke(released, "--json").stdout)["findings"]}
    assert found["VF014"]["details"]["tensors"] == ["model.language_model.layers.0.mlp.up_proj.weight"]
    assert "VF016" in found  # total_size no longer matches


# --- errors: one line on stderr, exit 2, through main ----------------------------------------------------------


def test_unreadable_inputs_exit_2(extended: Path, tmp_path: Path) -> None:
    assert_one_line_error(vocabfix("inspect", tmp_path / "nope"), "not a folder")
    assert_one_line_error(vocabfix("inspect", extended, "--json", "--format", "github"), "--json")
    assert_one_line_error(vocabfix("inspect", extended, "--revision", "main"), "--revision")
    (extended / SHARD1).write_bytes(b"\xff" * 64)
    assert_one_line_error(vocabfix("inspect", extended, "--json"), SHARD1)
    (extended / "config.json").write_text("{not json")
    assert_one_line_error(vocabfix("inspect", extended), "config.json", "not valid JSON")
    proc = vocabfix("inspect", extended, "--format", "yaml")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_not_gemma3n_exits_2(released: Path) -> None:
    config = json.loads((released / "config.json").read_text())
    config["model_type"] = "llama"
    (released / "config.json").write_text(json.dumps(config))
    assert_one_line_error(vocabfix("inspect", released), "llama")


def test_inspect_never_imports_torch_or_transformers(extended: Path) -> None:
    code = ("import sys\nfrom gemma3n_vocabfix import cli\nsys.argv = ['vocabfix', 'inspect', sys.argv[1], '--json']\n"
            "try:\n    cli.main()\nexcept SystemExit as e:\n    code = e.code\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'numpy', "
            "'pydantic'))\n"
            "print(code, heavy, file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(extended)], capture_output=True, text=True, cwd=ROOT)
    exit_code, heavy = proc.stderr.strip().split(" ", 1)
    assert exit_code == "1", proc.stderr
    assert "torch" not in heavy and "transformers" not in heavy, proc.stderr
    # numpy is no rule, but it costs 0.15 s of the 1 s budget and inspect does not need it
    assert "numpy" not in heavy, proc.stderr
    # typer 0.29 validates every option through pydantic: 0.2 s more on every command (pyproject pins typer < 0.29)
    assert "pydantic" not in heavy, proc.stderr
    assert json.loads(proc.stdout)["findings"]


# --- E4B-shaped: the real tensor names, shapes and id space -----------------------------------------------------


@pytest.fixture(scope="module")
def e4b(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e4b")
    return {"released": build_e4b_shaped(root / "released", merges=2000),
            "extended": build_e4b_shaped(root / "extended", extended_tokens=3, merges=2000)}


def test_e4b_shaped_released_is_clean(e4b) -> None:
    result = invoke(e4b["released"], "--json")
    data = json.loads(result.stdout)
    assert result.exit_code == 0 and data["findings"] == [], data["findings"]
    tensors = {t["role"]: t for t in data["tensors"]}
    assert tensors["embed_tokens"]["shape"] == [262400, 2048]
    assert tensors["embed_tokens_per_layer"]["shape"] == [262144, 35 * 256]
    assert tensors["embed_vision"]["shape"] == [128, 2048] and tensors["embed_audio"]["shape"] == [128, 1536]
    assert data["layout"]["tokenizer_size"] == 262400
    shards = [f for f in data["files"] if f["role"] == "weights"]
    assert len(shards) == 4 and sum(f["tensors"] for f in shards) == 1675
    special = {s["key"]: s for s in data["layout"]["special_ids"]}
    assert special["image_token_id"]["tokens"] == ["<image_soft_token>"] and special["image_token_id"]["agrees"]


def test_e4b_shaped_extended(e4b) -> None:
    data = json.loads(invoke(e4b["extended"], "--json", "--lookup", "<extra_token_1>").stdout)
    found = {f["code"]: f for f in data["findings"]}
    assert set(found) == {"VF001", "VF002", "VF004"}
    assert found["VF001"]["details"]["ids"] == [262400, 262403]
    token = data["tokens"][0]
    assert token["id"] == 262401 and token["route"]["table"] == "embed_audio" and token["route"]["row"] == 129


# --- rendering and the core API -------------------------------------------------------------------------------


def test_github_escaping() -> None:
    assert _gh_data("50% done\nnext\r") == "50%25 done%0Anext%0D"
    assert _gh_property("VF001 a: b, c") == "VF001 a%3A b%2C c"


def test_core_returns_a_report_without_printing(extended: Path, capsys) -> None:
    report = inspect_checkpoint(read_checkpoint(extended), tokens=["<new_a>"])
    assert report.exit_code() == 1 and report.exit_code(strict=True) == 1
    assert report.tokens[0].route.table == "embed_audio"
    assert capsys.readouterr() == ("", "")


def test_e4b_shaped_with_swapped_offsets(e4b, tmp_path: Path) -> None:
    """The real id space with only config.json's two offsets swapped (audio 262144, vision 262272): VF022, and the
    rewrite plans exactly the two offsets back (vision 262144, audio 262272), nothing else."""
    src = tmp_path / "swapped"
    src.mkdir()
    for f in e4b["released"].iterdir():  # the 15 GB of shards linked, not copied: only config.json changes
        (src / f.name).symlink_to(f)
    (src / "config.json").unlink()
    config = json.loads((e4b["released"] / "config.json").read_text())
    config["audio_config"]["vocab_offset"], config["vision_config"]["vocab_offset"] = 262144, 262272
    (src / "config.json").write_text(json.dumps(config))
    found = {f["code"]: f for f in json.loads(invoke(src, "--json").stdout)["findings"]}
    assert "VF022" in found and "VF023" not in found
    assert found["VF022"]["details"]["vision_start"] == 262144 and found["VF022"]["details"]["audio_start"] == 262272
    plan = json.loads(helpers.invoke("rewrite", src, tmp_path / "out", "--dry-run", "--json").stdout)
    assert {c["key"]: c["new"] for c in plan["config_changes"]} == {"vision_config.vocab_offset": 262144,
                                                                     "audio_config.vocab_offset": 262272}
    assert plan["tensors"] == []
