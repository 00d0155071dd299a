"""The command line contract (gemma3n_vocabfix/cli.py): exit codes read from the error, Ctrl-C, the output path
checked first, --format; and `vocabfix rewrite` as a user runs it: --json, --dry-run, --force, and one line on
stderr with exit 2 for each kind of input it cannot use. (`vocabfix inspect`'s output is in test_inspect.py; every
corrupt-input case of both commands in test_broken_inputs.py.)

Ctrl-C is a real SIGINT sent to a real `vocabfix` process at a fixed point of the work (the process signals itself
when the writer starts copying, or when inspect reads the checkpoint), under the newest typer installed and under
the lowest typer pyproject.toml allows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.helpers import COLUMNS, ROOT, A, T, V, assert_one_line_error, invoke, run_cli
from fixtures.oracle import DocLayout
from fixtures.synthetic import build

LOWEST_TYPER = ("typer==0.12.0", "typer-slim==0.12.0", "click==8.1.7")  # pyproject: typer>=0.12

# Runs the CLI in this process after arranging for SIGINT to arrive at a chosen function of the core.
INTERRUPTER = """
import os, signal, sys
import gemma3n_vocabfix.{module} as target
original = target.{function}
def interrupt(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)
    return original(*args, **kwargs)
target.{function} = interrupt
from gemma3n_vocabfix.cli import main
sys.argv = ["vocabfix", *sys.argv[1:]]
main()
"""


@pytest.fixture(scope="session")
def lowest_typer() -> Path:
    """typer 0.12.0 and the click of its day, installed beside the venv (pip, from the package registry)."""
    target = Path(sys.prefix) / "typer-lowest"
    if not (target / "typer").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                        *LOWEST_TYPER], check=True)
    return target


@pytest.fixture(scope="module")
def extended(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("cli") / "ext", text=T, vision=V, audio=A, new_tokens=["<a>", "<b>"])


def _run(args: list[str], typer_path: Path | None, module: str, function: str, cwd: Path):
    env = {**os.environ, "COLUMNS": str(COLUMNS)}
    env.pop("VOCABFIX_DEBUG", None)
    if typer_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(typer_path), str(ROOT)])
    code = INTERRUPTER.format(module=module, function=function)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=120)


@pytest.mark.parametrize("which", ["newest", "lowest"])
def test_ctrl_c_during_rewrite_exits_130_and_leaves_nothing(which, lowest_typer, extended, tmp_path) -> None:
    out = tmp_path / "out"
    proc = _run(["rewrite", str(extended), str(out)], lowest_typer if which == "lowest" else None,
                "writer", "_copy_range", tmp_path)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 130, proc.stderr
    assert len(lines) == 1 and "Interrupted" in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == [], "the staged output was left behind"


@pytest.mark.parametrize("which", ["newest", "lowest"])
def test_ctrl_c_during_inspect_exits_130(which, lowest_typer, extended, tmp_path) -> None:
    proc = _run(["inspect", str(extended), "--json"], lowest_typer if which == "lowest" else None,
                "checkpoint", "read_weights", tmp_path)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 130 and len(lines) == 1 and "Interrupted" in lines[0], proc.stderr
    # a CI gate reading --json gets one document that says so, and exit 130 is not "findings" (1)
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and doc["exit_code"] == 130 and doc["command"] == "vocabfix inspect"


def test_lowest_typer_runs_the_commands(lowest_typer, extended, tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(lowest_typer), str(ROOT)]), "COLUMNS": str(COLUMNS)}
    probe = subprocess.run([sys.executable, "-c", "import typer; print(typer.__version__)"], capture_output=True,
                           text=True, env=env, check=True)
    assert probe.stdout.strip() == "0.12.0"
    for args, code in ((["inspect", str(extended)], 1), (["rewrite", str(extended), str(tmp_path / "o")], 0),
                       (["rewrite", str(extended), str(tmp_path / "o")], 2), (["rewrite", "--private", "a", "b"], 2)):
        proc = subprocess.run([sys.executable, "-m", "gemma3n_vocabfix.cli", *args], capture_output=True, text=True,
                              env=env, timeout=120)
        assert proc.returncode == code and "Traceback" not in proc.stderr, (args, proc.stderr)


def test_existing_output_is_refused_before_the_input_is_read(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "config.json").write_text("{ not json")  # reading IN would fail with a different error
    (tmp_path / "out").mkdir()
    result = invoke("rewrite", src, tmp_path / "out")
    assert result.exit_code == 2 and "already exists" in result.stderr, result.stderr


def test_existing_output_is_refused_before_a_hub_download(tmp_path: Path) -> None:
    import socket
    with socket.socket() as s:  # a port nobody listens on: any request would fail with "cannot reach"
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "out").mkdir()
    env = {"HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": f"http://127.0.0.1:{port}",
           "HF_HUB_OFFLINE": "0"}
    proc = run_cli("rewrite", "org/name", tmp_path / "out", env=env)
    assert proc.returncode == 2 and "already exists" in proc.stderr, proc.stderr
    assert not (tmp_path / "hf").exists()  # nothing was fetched, not even metadata


def test_usage_errors_exit_2_with_one_line(extended: Path, tmp_path: Path) -> None:
    for args in (["rewrite", str(extended), str(tmp_path / "o"), "--private"],
                 ["rewrite", str(extended), str(tmp_path / "o"), "--json", "--format", "github"],
                 ["inspect", str(extended), "--json", "--format", "github"]):
        result = invoke(*args)
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error:"), (args, result.stderr)
    assert not (tmp_path / "o").exists()


def test_rewrite_format_json_and_github(extended: Path, tmp_path: Path) -> None:
    as_json = invoke("rewrite", extended, tmp_path / "j", "--format", "json")
    data = json.loads(as_json.stdout)
    assert as_json.exit_code == 0 and data["appended_tokens"] == 2 and data["changed"] is True
    github = invoke("rewrite", extended, tmp_path / "g", "--format", "github")
    lines = github.stdout.splitlines()
    assert github.exit_code == 0 and len(lines) == 1 and lines[0].startswith("::notice title=vocabfix rewrite::")
    assert "move 2 appended tokens" in lines[0]
    assert (tmp_path / "g" / "vocabfix.json").is_file()


# --- vocabfix rewrite as a user runs it ---------------------------------------------------------------------------

NEW = ["<new_a>", "<new_b>"]
IDS = DocLayout(T, V, A, len(NEW))


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A fresh extended checkpoint the test may break."""
    return build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)


def test_rewrite_json_report(checkpoint: Path, tmp_path: Path) -> None:
    proc = run_cli("rewrite", checkpoint, tmp_path / "out", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["changed"] is True
    assert report["appended_tokens"] == IDS.k
    assert report["layout_after"]["vision"] == list(IDS.vision_new)
    assert (tmp_path / "out" / "vocabfix.json").is_file()


def test_rewrite_human_output_names_the_move(checkpoint: Path, tmp_path: Path) -> None:
    proc = run_cli("rewrite", checkpoint, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    lo, hi = IDS.appended_new
    assert f"[{lo}, {hi})" in proc.stdout and "embed_tokens_per_layer" in proc.stdout


def test_rewrite_dry_run_writes_nothing(checkpoint: Path, tmp_path: Path) -> None:
    proc = run_cli("rewrite", checkpoint, tmp_path / "out", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "Dry run" in proc.stdout
    assert not (tmp_path / "out").exists()


def test_released_checkpoint_says_nothing_to_change(tmp_path: Path) -> None:
    src = build(tmp_path / "released", text=T, vision=V, audio=A)
    proc = run_cli("rewrite", src, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert "Nothing to change" in proc.stdout


def test_existing_output_is_refused_without_force(checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    assert_one_line_error(run_cli("rewrite", checkpoint, tmp_path / "out"), "already exists", "--force")
    assert run_cli("rewrite", checkpoint, tmp_path / "out", "--force").returncode == 0


def test_output_inside_input_is_refused(checkpoint: Path) -> None:
    assert_one_line_error(run_cli("rewrite", checkpoint, checkpoint / "fixed"), "inside the input")
    assert not (checkpoint / "fixed").exists()


def test_force_refuses_an_output_that_holds_the_files_the_input_links_to(checkpoint: Path, tmp_path: Path) -> None:
    """IN made of symlinks into OUT (a folder of links next to the real checkpoint): replacing OUT would delete the
    data IN is made of, so --force refuses in one line and both folders stay as they were."""
    import shutil

    real, links = tmp_path / "real", tmp_path / "links"
    shutil.copytree(checkpoint, real)
    links.mkdir()
    for f in real.iterdir():
        (links / f.name).symlink_to(Path("..") / "real" / f.name)
    before = {f.name: f.read_bytes() for f in real.iterdir()}
    assert_one_line_error(run_cli("rewrite", links, real, "--force"), "links to", "inside OUT")
    assert {f.name: f.read_bytes() for f in real.iterdir()} == before


def test_missing_input(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("rewrite", tmp_path / "nope", tmp_path / "out"), "not a folder")


def test_not_gemma3n(checkpoint: Path, tmp_path: Path) -> None:
    config = json.loads((checkpoint / "config.json").read_text())
    config["model_type"] = "llama"
    (checkpoint / "config.json").write_text(json.dumps(config))
    assert_one_line_error(run_cli("rewrite", checkpoint, tmp_path / "out"), "llama", "gemma3n")


def test_malformed_config_json(checkpoint: Path, tmp_path: Path) -> None:
    (checkpoint / "config.json").write_text("{not json")
    assert_one_line_error(run_cli("rewrite", checkpoint, tmp_path / "out"), "config.json", "not valid JSON")


def test_truncated_shard(checkpoint: Path, tmp_path: Path) -> None:
    shard = checkpoint / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-10])
    assert_one_line_error(run_cli("rewrite", checkpoint, tmp_path / "out"), "model-00002-of-00002.safetensors")
    assert not (tmp_path / "out").exists()


def test_garbage_shard_header(checkpoint: Path, tmp_path: Path) -> None:
    (checkpoint / "model-00001-of-00002.safetensors").write_bytes(b"\xff" * 64)
    assert_one_line_error(run_cli("rewrite", checkpoint, tmp_path / "out"), "model-00001-of-00002.safetensors")


def test_index_naming_a_missing_shard(checkpoint: Path, tmp_path: Path) -> None:
    (checkpoint / "model-00002-of-00002.safetensors").unlink()
    assert_one_line_error(run_cli("rewrite", checkpoint, tmp_path / "out"), "missing")


def test_no_weights(checkpoint: Path, tmp_path: Path) -> None:
    for f in checkpoint.glob("model*"):
        f.unlink()
    assert_one_line_error(run_cli("rewrite", checkpoint, tmp_path / "out"), "no safetensors")


def test_usage_error_exits_2(tmp_path: Path) -> None:
    proc = run_cli("rewrite")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_malformed_tokenizer_entry(checkpoint: Path, tmp_path: Path) -> None:
    data = json.loads((checkpoint / "tokenizer.json").read_text())
    del data["added_tokens"][0]["id"]
    (checkpoint / "tokenizer.json").write_text(json.dumps(data))
    assert_one_line_error(run_cli("rewrite", checkpoint, tmp_path / "out"), "tokenizer")


def test_truncated_sentencepiece_model(checkpoint: Path, tmp_path: Path) -> None:
    sp = checkpoint / "tokenizer.model"
    sp.write_bytes(sp.read_bytes()[:-3])
    assert_one_line_error(run_cli("rewrite", checkpoint, tmp_path / "out"), "tokenizer.model")


# Sends SIGINT to itself when rich is first imported: the console script is still loading the command line.
STARTUP_INTERRUPTER = """
import importlib.abc, os, signal, sys
class Interrupt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "typer":  # the command line's first import
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, Interrupt())
from gemma3n_vocabfix.__main__ import main
sys.argv = ["vocabfix", "--help"]
main()
"""


def test_ctrl_c_while_the_command_line_loads_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", STARTUP_INTERRUPTER], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 130 and lines == ["Interrupted."], proc.stderr


def test_ctrl_c_during_the_push_does_not_say_nothing_was_written(extended: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _run(["rewrite", str(extended), str(out), "--push-to-hub", "me/fixed"], None, "hub", "plan_push", tmp_path)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 130 and len(lines) == 1, proc.stderr
    assert "nothing was written" not in lines[0] and str(out) in lines[0]
    assert (out / "vocabfix.json").is_file()  # OUT is complete and stays


def test_a_reader_that_stops_early_ends_the_command_quietly(extended: Path) -> None:
    """`inspect --format github | head -1`: the pipe closes while annotations are still written (a race, so five
    tries); the command ends without an error line, with SIGPIPE's shell code."""
    for _ in range(5):
        proc = subprocess.run(f"{sys.executable} -m gemma3n_vocabfix inspect {extended} --format github "
                              "| head -1; exit ${PIPESTATUS[0]}", shell=True, executable="/bin/bash",
                              capture_output=True, text=True, timeout=60)
        assert proc.stdout.startswith("::error") and proc.stderr == "", proc.stderr
        assert proc.returncode in (1, 141)  # 1: every line fitted in the pipe before it closed


@pytest.mark.parametrize("which", ["newest", "lowest"])
def test_usage_errors_from_the_parser_are_one_line(which, lowest_typer, tmp_path) -> None:
    """Unknown option, missing argument, bad choice: one line on stderr, exit 2, under both typers."""
    env = {**os.environ, "COLUMNS": "80"}
    if which == "lowest":
        env["PYTHONPATH"] = os.pathsep.join([str(lowest_typer), str(ROOT)])
    for args in (["rewrite", "--frobnicate", "a", "b"], ["inspect"], ["inspect", "x", "--format", "xml"]):
        proc = subprocess.run([sys.executable, "-m", "gemma3n_vocabfix", *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=60)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("Error:"), (args, proc.stderr)
        assert "--help" in lines[0]


TERMINATOR = INTERRUPTER.replace("signal.SIGINT", "signal.SIGTERM")


def test_sigterm_during_rewrite_exits_143_and_leaves_nothing(extended: Path, tmp_path: Path) -> None:
    """A cancelled CI job sends SIGTERM: the staged output goes, one line, exit 143."""
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-c", TERMINATOR.format(module="writer", function="_copy_range"),
                           "rewrite", str(extended), str(tmp_path / "out")], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 143 and len(lines) == 1 and lines[0].startswith("Terminated"), proc.stderr
    assert list(tmp_path.iterdir()) == []
