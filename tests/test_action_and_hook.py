"""The GitHub Action (action.yml) and the pre-commit hook (.pre-commit-hooks.yaml), exercised for real (issue 12).

Both run on a snapshot of this working tree: its files as git sees them (tracked and untracked, not ignored),
copied and committed in a fresh git repo. That is the action's checkout (`github.action_path`) and the repo that
`pre-commit try-repo` installs. (try-repo on the checkout itself would install HEAD plus the tracked files'
uncommitted changes through a shadow commit, leaving out new untracked files such as these two; and pip would
build inside the checkout.)

The action: `run_action` parses action.yml with a YAML parser and runs each `run:` step of the composite action
with bash as the runner does (`bash --noprofile --norc -eo pipefail`, in the workspace, RUNNER_TEMP and
GITHUB_PATH set, the step's `env:`), after `substitute` has replaced the `${{ }}` expressions the way GitHub does;
a failing step ends the action. The install step runs unchanged, into a throwaway venv and offline: the test
creates `$RUNNER_TEMP/vocabfix-venv` beforehand (the step reuses a venv it finds there, as for a second use in a
job), with no pip of its own and a .pth making this venv's site-packages importable (pip, setuptools, the runtime
dependencies), and sets pip's own variables PIP_NO_INDEX, PIP_NO_DEPS and PIP_NO_BUILD_ISOLATION=0, so the step's
`pip install <action path>` builds and installs vocabfix itself from the snapshot with nothing downloaded.

The hook: two git repos, one holding a tiny broken checkpoint and one its rewrite, each checked by
`pre-commit try-repo SNAPSHOT vocabfix-inspect --all-files`, which builds the hook's virtualenv and pip-installs
the snapshot with its dependencies from the package index, as a user's first run does (try-repo keeps its
environments in a temporary store of its own and ignores PRE_COMMIT_HOME, so instead of sharing one environment the
two run side by side: 75-105 s together on a busy 2-CPU machine, about as long as one alone, most of it pip).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from fixtures.helpers import NEW, ROOT, A, T, V
from fixtures.synthetic import build

from gemma3n_vocabfix import rewrite_checkpoint

ACTION = ROOT / "action.yml"
HOOKS = ROOT / ".pre-commit-hooks.yaml"
GIT_ENV = {"GIT_AUTHOR_NAME": "vocabfix tests", "GIT_AUTHOR_EMAIL": "tests@vocabfix.invalid",
           "GIT_COMMITTER_NAME": "vocabfix tests", "GIT_COMMITTER_EMAIL": "tests@vocabfix.invalid",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
#: The finding codes of the broken checkpoint (helpers' NEW appended, resized the transformers 5 way).
BROKEN_CODES = {"VF001", "VF002", "VF004"}

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def git(*args: str, cwd: Path) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def commit_all(repo: Path) -> str:
    git("init", "--quiet", cwd=repo)
    git("add", "--all", cwd=repo)
    git("commit", "--quiet", "--message", "snapshot", cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo).strip()


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    """This working tree's files as git sees them (no .venv, build/, caches), committed in a fresh repo."""
    repo = tmp_path_factory.mktemp("snapshot") / "vocabfix"
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT).split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():  # a tracked file deleted in the working tree is not part of it
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    assert (repo / "action.yml").is_file() and (repo / ".pre-commit-hooks.yaml").is_file()
    commit_all(repo)
    return repo


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    """(broken, fixed): a tiny extended checkpoint stock transformers crashes on, and its rewrite."""
    root = tmp_path_factory.mktemp("checkpoints")
    broken = build(root / "broken", text=T, vision=V, audio=A, new_tokens=NEW)
    return broken, rewrite_checkpoint(broken, root / "fixed").destination


def annotations(stdout: str) -> list[tuple[str, str]]:
    """(level, title) of each GitHub annotation line."""
    return re.findall(r"^::(error|warning|notice) title=([^:]*)::", stdout, flags=re.M)


# --- the action ---------------------------------------------------------------------------------------------------


def substitute(text: str, inputs: dict[str, str], action_path: Path) -> str:
    """Replace the `${{ ... }}` expressions in `text` as the runner does before a step of a composite action runs:
    `${{ inputs.NAME }}` becomes the input's value as a string (the caller's `with:`, else the input's default, else
    empty; names are case-insensitive) and `${{ github.action_path }}` the folder holding the action's checkout.
    These are the only expressions action.yml may use: any other raises, so a step that starts using one fails
    these tests until this function models it."""
    lowered = {name.lower(): value for name, value in inputs.items()}

    def one(match: re.Match) -> str:
        expr = match.group(1)
        if found := re.fullmatch(r"inputs\.([A-Za-z_][A-Za-z0-9_-]*)", expr):
            return lowered[found.group(1).lower()]
        if expr == "github.action_path":
            return str(action_path)
        raise AssertionError(f"action.yml uses an expression the test does not model: ${{{{ {expr} }}}}")

    return re.sub(r"\$\{\{\s*(.*?)\s*\}\}", one, text)


@dataclass
class Step:
    name: str
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Runner:
    """A job's surroundings: the workspace (the steps' working folder), RUNNER_TEMP and the GITHUB_PATH file."""
    workspace: Path
    temp: Path
    path_file: Path
    action_path: Path

    @property
    def venv(self) -> Path:
        return self.temp / "vocabfix-venv"

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("GITHUB_", "RUNNER_"))}
        env.pop("VIRTUAL_ENV", None)
        env.update(CI="true", GITHUB_ACTIONS="true", GITHUB_WORKSPACE=str(self.workspace),
                   GITHUB_ACTION_PATH=str(self.action_path), GITHUB_PATH=str(self.path_file),
                   RUNNER_TEMP=str(self.temp), HF_HUB_OFFLINE="1",
                   # the install step offline and into the throwaway venv (module docstring): pip's own variables
                   PIP_NO_INDEX="1", PIP_NO_DEPS="1", PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1")
        return env


def action_steps() -> tuple[dict, list[dict]]:
    action = yaml.safe_load(ACTION.read_text())
    assert action["runs"]["using"] == "composite"
    return action, action["runs"]["steps"]


def run_action(runner: Runner, with_: dict[str, str], *, steps: slice = slice(None)) -> list[Step]:
    """Run action.yml's steps (`steps`: which of them) as the runner does; stops after a failing step."""
    action, all_steps = action_steps()
    unknown = set(with_) - set(action["inputs"])
    assert not unknown, f"inputs action.yml does not declare: {unknown}"
    inputs = {name: str(spec.get("default", "")) for name, spec in action["inputs"].items()}
    inputs.update(with_)
    missing = [name for name, spec in action["inputs"].items() if spec.get("required") and not inputs[name]]
    assert not missing, f"required inputs not given: {missing}"
    done: list[Step] = []
    for i, step in enumerate(all_steps[steps]):
        assert set(step) <= {"name", "shell", "env", "run"}, f"step {i}: the test runs only plain `run:` steps"
        assert step["shell"] == "bash"
        script = runner.temp / f"step-{i}.sh"
        script.write_text(substitute(step["run"], inputs, runner.action_path))
        env = runner.env()
        env.update({key: substitute(str(value), inputs, runner.action_path)
                    for key, value in step.get("env", {}).items()})
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=runner.workspace,
                              env=env, capture_output=True, text=True, timeout=600)
        done.append(Step(step["name"], proc.returncode, proc.stdout, proc.stderr))
        if proc.returncode != 0:
            break
    return done


@pytest.fixture(scope="module")
def runner(tmp_path_factory, snapshot: Path, checkpoints: tuple[Path, Path]) -> Runner:
    """A job's surroundings with the checkpoints in its workspace and the throwaway venv in RUNNER_TEMP."""
    root = tmp_path_factory.mktemp("runner")
    workspace, temp = root / "workspace", root / "temp"
    workspace.mkdir()
    temp.mkdir()
    for ckpt in checkpoints:
        shutil.copytree(ckpt, workspace / ckpt.name)
    r = Runner(workspace, temp, root / "github_path", snapshot)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(r.venv)], check=True)
    site = Path(subprocess.run([str(r.venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path"
                                "('purelib'))"], check=True, capture_output=True, text=True).stdout.strip())
    (site / "outer_site_packages.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return r


@pytest.fixture(scope="module")
def broken_run(runner: Runner) -> list[Step]:
    """The whole action (install, then inspect) on the broken checkpoint."""
    return run_action(runner, {"path": "./broken"})


def test_action_steps_install_then_fail_on_a_broken_checkpoint(broken_run: list[Step], runner: Runner) -> None:
    install, check = broken_run
    assert install.returncode == 0, install.stdout + install.stderr
    assert install.stdout.splitlines()[0].startswith("::group::pip install ") and "::endgroup::" in install.stdout
    assert install.stdout.splitlines()[-1] == "vocabfix 0.1.0"
    # installed into the throwaway venv from the action's checkout, and put on PATH for the job's later steps
    where = subprocess.run([str(runner.venv / "bin" / "python"), "-I", "-c", "import gemma3n_vocabfix; "
                            "print(gemma3n_vocabfix.__file__)"], capture_output=True, text=True, check=True).stdout
    assert Path(where.strip()).is_relative_to(runner.venv)
    assert runner.path_file.read_text().splitlines()[-1] == str(runner.temp / "vocabfix-bin")
    assert (runner.temp / "vocabfix-bin" / "vocabfix").resolve() == (runner.venv / "bin" / "vocabfix").resolve()

    assert check.returncode == 1, check.stdout + check.stderr
    assert check.stdout.splitlines()[0] == "vocabfix inspect ./broken --format github"
    assert {code for level, title in annotations(check.stdout) for code in [title[:5]]} == BROKEN_CODES
    assert all(level == "error" for level, _ in annotations(check.stdout))
    assert "Fix: vocabfix rewrite ./broken" in check.stdout


def test_action_passes_on_the_fixed_checkpoint(broken_run: list[Step], runner: Runner) -> None:
    install, check = run_action(runner, {"path": "fixed", "strict": "true"})  # the venv is reused, vocabfix reinstalled
    assert install.returncode == 0, install.stdout + install.stderr
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.splitlines()[0] == "vocabfix inspect fixed --format github --strict"
    assert annotations(check.stdout) == []


@pytest.mark.parametrize("with_, code, shown, checked", [
    ({"path": "broken fixed"}, 1, BROKEN_CODES, 2),  # several paths, space-separated
    ({"path": "broken/config.json\nbroken/tokenizer.json\n./fixed\n"}, 1, BROKEN_CODES, 2),  # one per line, files
    ({"path": "./broken ./fixed", "select": "VF004"}, 1, {"VF004"}, 2),
    ({"path": "./broken", "ignore": "VF001,VF002,VF004"}, 0, set(), 1),
    ({"path": "./broken", "strict": "True", "select": "VF001", "ignore": "VF001"}, 0, set(), 1),
])
def test_action_inputs_reach_inspect(broken_run, runner: Runner, with_: dict, code: int, shown: set,
                                     checked: int) -> None:
    (check,) = run_action(runner, with_, steps=slice(1, None))  # vocabfix is installed (broken_run)
    assert check.returncode == code, check.stdout + check.stderr
    assert {title[:5] for _, title in annotations(check.stdout)} == shown
    summaries = [line for line in check.stdout.splitlines() if re.match(r"vocabfix inspect .*: .* exit code \d$", line)]
    assert len(summaries) == checked, check.stdout


@pytest.mark.parametrize("with_, message", [
    ({"path": " \n "}, "names no checkpoint"),
    ({"path": "broken", "strict": "yes"}, "must be true or false, not 'yes'"),
    ({"path": "no-such-folder"}, "no-such-folder"),
    ({"path": "broken", "select": "VF999"}, "VF999"),
])
def test_action_failures_are_annotated(broken_run, runner: Runner, with_: dict, message: str) -> None:
    (check,) = run_action(runner, with_, steps=slice(1, None))
    assert check.returncode == 2, check.stdout + check.stderr
    (line,) = [line for line in check.stdout.splitlines() if line.startswith("::error")]
    assert line.startswith("::error title=vocabfix inspect failed::") and message in line


def test_action_passes_revision_and_does_not_run_its_inputs(broken_run, runner: Runner) -> None:
    """Inputs reach the script as data: a `;` or `$(...)` in one is part of an argument, never run."""
    marker = runner.temp / "injected"
    (check,) = run_action(runner, {"path": "./fixed", "revision": f"v1; touch {marker}"}, steps=slice(1, None))
    assert check.returncode == 2 and not marker.exists()
    assert check.stdout.splitlines()[0] == f"vocabfix inspect ./fixed --format github --revision v1; touch {marker}"
    assert "--revision only applies to a Hub repo id" in check.stdout  # it reached inspect, as one argument
    (check,) = run_action(runner, {"path": "./fixed", "select": f"$(touch {marker})"}, steps=slice(1, None))
    assert check.returncode == 2 and not marker.exists()
    assert f"--select: no finding code $(TOUCH {str(marker).upper()})" in check.stdout


def test_substitute_models_github_expressions(tmp_path: Path) -> None:
    inputs = {"path": "a b", "Strict": "true"}
    assert substitute("x=${{ inputs.path }} ${{inputs.STRICT}} ${{ github.action_path }}", inputs, tmp_path) == \
        f"x=a b true {tmp_path}"
    with pytest.raises(AssertionError, match="does not model"):
        substitute("${{ secrets.HF_TOKEN }}", inputs, tmp_path)


def test_action_metadata() -> None:
    action, steps = action_steps()
    assert action["inputs"]["path"]["required"] is True
    assert {"path", "revision", "strict", "select", "ignore", "install"} == set(action["inputs"])
    assert [step["name"] for step in steps] == ["Install vocabfix", "Inspect the checkpoints"]
    for step in steps:  # inputs only through env:, never pasted into the script text
        assert "${{" not in step["run"]


# --- the pre-commit hook ------------------------------------------------------------------------------------------


def hook() -> dict:
    (found,) = [h for h in yaml.safe_load(HOOKS.read_text()) if h["id"] == "vocabfix-inspect"]
    return found


def test_hook_definition_and_files_pattern(checkpoints: tuple[Path, Path]) -> None:
    h = hook()
    assert (h["entry"], h["language"], h["pass_filenames"], h["require_serial"]) == \
        ("vocabfix inspect", "python", True, True)
    pattern = re.compile(h["files"])
    broken, fixed = checkpoints
    names = {p.name for p in [*broken.iterdir(), *fixed.iterdir()]}
    matched = {name for name in names if pattern.search(f"models/gemma/{name}")}
    assert matched == {"config.json", "generation_config.json", "model.safetensors.index.json",
                       "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "tokenizer.json",
                       "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json", "added_tokens.json"}
    assert pattern.search("config.json") and pattern.search("model.safetensors")
    for other in ["preprocessor_config.json", "my_config.json", "config.json.bak", "a.safetensors.tmp",
                  "vocabfix.json"]:
        assert not pattern.search(f"ckpt/{other}"), other


@pytest.fixture(scope="module")
def try_repo(tmp_path_factory, snapshot: Path, checkpoints: tuple[Path, Path]) -> dict[str, subprocess.Popen]:
    """`pre-commit try-repo SNAPSHOT vocabfix-inspect --all-files` in a git repo holding the broken checkpoint and
    in one holding the fixed one (each as models/gemma3n/, beside a file the hook is not given), run side by side."""
    pre_commit = Path(sys.executable).with_name("pre-commit")
    if not pre_commit.exists():
        pytest.skip("pre-commit is not installed (pip install -e '.[test]')")
    runs = {}
    for ckpt in checkpoints:
        repo = tmp_path_factory.mktemp("hook") / ckpt.name
        shutil.copytree(ckpt, repo / "models" / "gemma3n")
        (repo / "train.py").write_text("print('training')\n")  # not a checkpoint file: the hook is not given it
        commit_all(repo)
        env = {**os.environ, **GIT_ENV, "PRE_COMMIT_HOME": str(repo.parent / "pre-commit-home"),
               "PRE_COMMIT_COLOR": "never", "COLUMNS": "80"}
        runs[ckpt.name] = subprocess.Popen([str(pre_commit), "try-repo", str(snapshot), "vocabfix-inspect",
                                            "--all-files"], cwd=repo, env=env, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, text=True)
    results = {}
    for name, proc in runs.items():
        out, _ = proc.communicate(timeout=900)
        results[name] = (proc.returncode, out)
    return results


def test_pre_commit_hook_fails_on_the_broken_checkpoint(try_repo) -> None:
    code, out = try_repo["broken"]
    assert code == 1, out
    assert re.search(r"^vocabfix inspect\.+Failed$", out, flags=re.M), out
    assert "- exit code: 1" in out
    # ten files of the checkpoint were passed; the checkpoint is checked and reported once, by its folder
    assert re.findall(r"^models/gemma3n$", out, flags=re.M) == ["models/gemma3n"], out
    assert len(re.findall(r"^Problems: ", out, flags=re.M)) == 1
    assert {code for code in BROKEN_CODES if re.search(rf"^{code} error: ", out, flags=re.M)} == BROKEN_CODES
    assert "vocabfix rewrite models/gemma3n models/gemma3n-vocabfix" in out


def test_pre_commit_hook_passes_on_the_fixed_checkpoint(try_repo) -> None:
    code, out = try_repo["fixed"]
    assert code == 0, out
    assert re.search(r"^vocabfix inspect\.+Passed$", out, flags=re.M), out


# --- the README shows them as they are ----------------------------------------------------------------------------


def readme_ci_yaml() -> list:
    """Each ```yaml block of the README's "Use in CI" section, parsed (indented fragments dedented first)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Use in CI\n"):text.index("\n## ", text.index("## Use in CI\n") + 1)]
    return [yaml.safe_load(textwrap.dedent(block)) for block in re.findall(r"```yaml\n(.*?)```", section, flags=re.S)]


def test_readme_uses_the_action_and_the_hook_as_defined() -> None:
    action, _ = action_steps()
    steps = []
    for doc in readme_ci_yaml():
        if isinstance(doc, dict) and "jobs" in doc:
            steps += [step for job in doc["jobs"].values() for step in job["steps"]]
        elif isinstance(doc, list):
            steps += doc
    uses = [step for step in steps if step.get("uses", "").endswith("/vocabfix@main")]
    assert len(uses) >= 3
    for step in uses:
        assert step["uses"] == "<owner>/vocabfix@main" and "path" in step["with"]
        assert set(step["with"]) <= set(action["inputs"]), step
    (config,) = [doc for doc in readme_ci_yaml() if isinstance(doc, dict) and "repos" in doc]
    (repo,) = config["repos"]
    assert [h["id"] for h in repo["hooks"]] == [hook()["id"]]
    text = (ROOT / "README.md").read_text()
    rows = set(re.findall(r"^\| `([a-z-]+)` \|[^|]*\|", text[text.index("### The GitHub Action"):], flags=re.M))
    assert set(action["inputs"]) <= rows, "the README's table of the action's inputs"
