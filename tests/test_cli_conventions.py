"""The command line's conventions and its contract with CI (issue 12): every failure under --json is one JSON
document on stdout and under --format github an ::error annotation; --select / --ignore gate on chosen finding
codes; several checkpoints (or files inside them, as pre-commit passes them) are each inspected once; `-h`,
`python -m gemma3n_vocabfix`, `-q`, `--lookup` (not `--token`, the Hub's auth option), shell completion; the
inspect text puts the verdict and each copy-pasteable fix first and cuts nothing at 80 or 120 columns.
Run as a user runs them (a fresh process, fixtures.helpers.run_cli) unless the point is in-process behaviour.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.helpers import ROOT, assert_one_line_error, lines, run_cli
from fixtures.synthetic import build

from gemma3n_vocabfix import rewrite_checkpoint


@pytest.fixture
def fixed(extended: Path, tmp_path: Path) -> Path:
    out = tmp_path / "fixed"
    rewrite_checkpoint(extended, out)
    return out


# --- failures are documents for machines ----------------------------------------------------------------------


@pytest.mark.parametrize("args, kind", [
    (["inspect", "/no/such/folder", "--json"], "CheckpointError"),
    (["inspect", "--no-such-option", "x", "--json"], "UsageError"),
    (["inspect", "x", "--format=json", "--select", "VF999"], "UsageError"),
    (["verify", "/no/such/in", "/no/such/out", "--format", "json"], "CheckpointError"),
])
def test_every_failure_under_json_is_one_document(args: list[str], kind: str) -> None:
    proc = run_cli(*args)
    line = assert_one_line_error(proc)
    doc = json.loads(proc.stdout)
    assert doc == {"ok": False, "command": f"vocabfix {args[0]}", "exit_code": 2,
                   "error": {"type": kind, "message": doc["error"]["message"], "hint": doc["error"]["hint"]}}
    assert doc["error"]["message"] in line  # the same words as the line on stderr


def test_a_refused_rewrite_under_json_names_the_finding(extended: Path, tmp_path: Path) -> None:
    config = json.loads((extended / "config.json").read_text())
    (extended / "model-00002-of-00002.safetensors").unlink()  # VF011: a shard the index names is missing
    proc = run_cli("rewrite", extended, tmp_path / "out", "--json")
    assert_one_line_error(proc, "VF011")
    assert json.loads(proc.stdout)["error"]["type"] == "RewriteRefused"
    assert config  # the input was read, not modified


def test_github_format_annotates_a_failure() -> None:
    proc = run_cli("inspect", "/no/such/folder", "--format", "github")
    assert_one_line_error(proc)
    assert proc.stdout.startswith("::error title=vocabfix inspect failed::/no/such/folder")


# --- gating on chosen codes --------------------------------------------------------------------------------------


def test_select_and_ignore_gate_on_the_chosen_codes(extended: Path) -> None:
    everything = json.loads(run_cli("inspect", extended, "--json").stdout)
    found = {f["code"] for f in everything["findings"]}
    assert {"VF001", "VF004"} <= found and everything["exit_code"] == 1
    only = run_cli("inspect", extended, "--json", "--select", "vf001")
    assert only.returncode == 1 and [f["code"] for f in json.loads(only.stdout)["findings"]] == ["VF001"]
    rest = run_cli("inspect", extended, "--json", "--ignore", ",".join(sorted(found)))
    assert rest.returncode == 0 and json.loads(rest.stdout)["findings"] == []
    none_selected = run_cli("inspect", extended, "--select", "VF006", "-q")
    assert none_selected.returncode == 0 and none_selected.stdout == ""


# --- several checkpoints ---------------------------------------------------------------------------------------


def test_files_inside_checkpoints_are_each_checked_once(extended: Path, fixed: Path) -> None:
    proc = run_cli("inspect", extended / "config.json", extended / "tokenizer.json", fixed,
                   fixed / "model-00001-of-00002.safetensors", "--json")
    assert proc.returncode == 1, proc.stderr  # the extended one has errors
    doc = json.loads(proc.stdout)
    assert [Path(c["source"]).name for c in doc["checkpoints"]] == [extended.name, fixed.name]
    assert [c["exit_code"] for c in doc["checkpoints"]] == [1, 0] and doc["exit_code"] == 1
    assert run_cli("inspect", fixed / "config.json", fixed, "-q").returncode == 0


# --- conventions ---------------------------------------------------------------------------------------------


def test_short_help_module_entry_and_completion() -> None:
    for args in (["-h"], ["inspect", "-h"], ["rewrite", "-h"], ["verify", "-h"]):
        proc = run_cli(*args)
        assert proc.returncode == 0 and "Usage:" in proc.stdout, proc.stderr
    module = subprocess.run([sys.executable, "-m", "gemma3n_vocabfix", "--help"], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert module.returncode == 0 and "rewrite" in module.stdout and "verify" in module.stdout
    assert "--install-completion" in run_cli("--help").stdout


def test_quiet_prints_nothing(extended: Path, tmp_path: Path) -> None:
    assert run_cli("inspect", extended, "-q").stdout == ""
    proc = run_cli("verify", extended, tmp_path / "missing", "-q")
    assert_one_line_error(proc)  # errors still say why


def test_lookup_and_the_old_token_option(extended: Path) -> None:
    new = json.loads(run_cli("inspect", extended, "--json", "--lookup", "<new_b>").stdout)["tokens"]
    old = run_cli("inspect", extended, "--json", "--token", "<new_b>")
    assert json.loads(old.stdout)["tokens"] == new and "--lookup" in old.stderr
    auth = run_cli("inspect", extended, "--lookup", "hf_" + "x" * 34)
    line = assert_one_line_error(auth, "auth token")
    assert "hf_xxx" not in line  # the token is never echoed


# --- the text report at 80 and 120 columns -----------------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 120])
def test_inspect_text_is_whole_at_the_terminal_width(extended: Path, width: int) -> None:
    """Verdict, findings and fix commands first; every table row folds instead of cutting; the fix command is one
    line (soft-wrapped by the terminal, so it copies whole)."""
    proc = run_cli("inspect", extended, "--verbose", "--lookup", "<new_b>", env={"COLUMNS": str(width)})
    assert proc.returncode == 1, proc.stderr
    out = lines(proc.stdout)
    assert out[1].startswith("Problems:") and out[3].startswith("VF001 error")
    fix = f"vocabfix rewrite {extended} {extended.parent / (extended.name + '-vocabfix')}"
    assert fix in proc.stdout.splitlines()[2]  # the whole command on one line
    assert "…" not in proc.stdout
    table_lines = [ln for ln in proc.stdout.splitlines() if ln[:1] in "┏┃┡│└"]
    assert table_lines and all(len(ln) <= width for ln in table_lines)
    routing = proc.stdout[proc.stdout.index("Id ranges"):]
    assert "VF004" in routing  # the routing table and the findings agree on the per-layer rows


def test_inspect_text_without_verbose_is_short(extended: Path) -> None:
    out = lines(run_cli("inspect", extended).stdout)
    assert len(out) < 25 and "--verbose" in out[-1]
    released = build(extended.parent / "released", text=10, vision=4, audio=4)
    ok = lines(run_cli("inspect", released).stdout)
    assert ok[1].startswith("OK:")


# --- progress ---------------------------------------------------------------------------------------------------


def test_progress_knows_its_total_and_advances_through_a_whole_shard_copy(tmp_path: Path, monkeypatch) -> None:
    """The writer gives the total before the first byte, then counts up to it, in chunks also while an unchanged
    shard is copied whole."""
    from fixtures.helpers import NEW, A, T, V
    from fixtures.synthetic import UNCHANGED_SHARD, add_unchanged_shard

    from gemma3n_vocabfix import writer
    src = add_unchanged_shard(build(tmp_path / "in", text=T, vision=V, audio=A, new_tokens=NEW), rows=4096)
    monkeypatch.setattr(writer, "KERNEL_CHUNK_BYTES", 64 * 1024)  # small chunks: a 1.5 MB shard takes many steps

    class Recorder:
        def __init__(self):
            self.total, self.steps = None, []

        def start(self, total: int) -> None:
            assert not self.steps
            self.total = total

        def __call__(self, n: int) -> None:
            self.steps.append(n)

    seen = Recorder()
    rewrite_checkpoint(src, tmp_path / "out", progress=seen)
    shard_bytes = (src / UNCHANGED_SHARD).stat().st_size
    assert seen.total == sum(seen.steps) and seen.total > shard_bytes
    assert sum(1 for n in seen.steps if n == 64 * 1024) >= shard_bytes // (64 * 1024)


def test_progress_on_a_terminal_shows_percentage_and_ends_with_a_summary(extended: Path, tmp_path: Path) -> None:
    """In a pseudo-terminal (util-linux `script`): a bar with percentage, then one summary line on stderr."""
    out = tmp_path / "out"
    cmd = f"{sys.executable} -m gemma3n_vocabfix.cli rewrite {extended} {out} 2>&1 >/dev/null"
    proc = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "100", "TERM": "xterm"}, timeout=120)
    assert proc.returncode == 0, proc.stdout
    assert "100%" in proc.stdout
    last = [ln for ln in proc.stdout.replace("\r", "\n").splitlines() if ln.strip()][-1]
    assert "Wrote" in last and " in " in last and "MB/s" in last, proc.stdout[-500:]
    quiet = subprocess.run(["script", "-qec", cmd.replace(" 2>&1", " -q 2>&1").replace(str(out), str(out) + "2"),
                            "/dev/null"], capture_output=True, text=True, cwd=ROOT,
                           env={"PATH": "/usr/bin:/bin", "TERM": "xterm"}, timeout=120)
    assert quiet.returncode == 0 and quiet.stdout.strip() == ""


# --- the Python API -------------------------------------------------------------------------------------------


def test_api_takes_paths_and_has_short_reprs(extended: Path, tmp_path: Path) -> None:
    import gemma3n_vocabfix as vf

    report = vf.inspect_checkpoint(extended)
    assert report.exit_code() == 1 and {"VF001", "VF004"} <= {f.code for f in report.findings}
    assert vf.inspect_checkpoint(str(extended), tokens=["<new_a>"]).tokens[0].id == report.layout.tokenizer.id_of(
        "<new_a>")
    rewritten = vf.rewrite_checkpoint(str(extended), tmp_path / "out")
    proof = vf.verify_checkpoint(extended, tmp_path / "out")
    id_map = vf.IdMap.from_file(tmp_path / "out")
    for obj in (report, rewritten, rewritten.plan, rewritten.plan.checkpoint, proof, id_map):
        assert len(repr(obj)) < 1000, repr(obj)[:2000]  # was 14 MB for a rewrite report
    assert proof.ok and vf.IdMap.from_file(tmp_path / "out").map([0]) == [0]


def test_every_reporting_command_takes_format_and_quiet(fixed: Path, tmp_path: Path) -> None:
    for command in ("inspect", "rewrite", "verify", "remap-ids", "remap-adapter"):
        text = run_cli(command, "--help", env={"COLUMNS": "200"}).stdout
        assert "--format" in text and "--quiet" in text, command
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"input_ids": [0, 1, 2], "labels": [-100, 1, 2]}) + "\n")
    gh = run_cli("remap-ids", data, tmp_path / "out.jsonl", "--map", fixed, "--format", "github")
    assert gh.returncode == 0 and gh.stdout.startswith("::notice title=vocabfix remap-ids::"), gh.stderr
    quiet = run_cli("remap-ids", data, tmp_path / "out2.jsonl", "--map", fixed, "-q")
    assert quiet.returncode == 0 and quiet.stdout == "" and (tmp_path / "out2.jsonl").is_file()


def test_the_old_token_option_failing_is_still_one_line(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("inspect", tmp_path / "missing", "--token", "<x>"), "not a folder")
