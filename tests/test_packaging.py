"""The wheel ships the tool only: no test fixtures, no demo, nothing that imports torch/transformers on import.

The wheel is built with `pip wheel --no-deps --no-build-isolation` from a copy of the source tree, so that a stale
build/ or *.egg-info left in the checkout by an earlier build can neither leak into it nor be written by the test.
The sdist is built from another copy by setuptools' build backend (what `python -m build --no-isolation` calls),
with every warning shown. Both are then installed, dependencies and all (from the package index or pip's cache),
into one fresh venv (the wheel, then the sdist over it) by pip's `--python`, and run from there: `vocabfix --help`
and `vocabfix inspect CKPT --json` on a tiny checkpoint, with torch nowhere in the venv.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "gemma3n_vocabfix"
HEAVY = {"torch", "torchvision", "transformers", "timm"}
NOT_SHIPPED = {"tiny", "demo", "fixtures", "synthetic", "e4b_shaped", "make_checkpoint", "conftest", "tests",
               "examples", "bench", "reference"}
SKIP = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                              ".hypothesis", ".ruff_cache", "demo-out", "out")


def source_copy(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src") / "repo"
    shutil.copytree(ROOT, src, ignore=SKIP)
    return src


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    src = source_copy(tmp_path_factory)
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
                           "--quiet", "-w", str(out), str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = out.glob("*.whl")
    with zipfile.ZipFile(path) as zf:
        yield zf


def module_level_imports(tree: ast.Module) -> set[str]:
    """Top-level names imported when the module is imported (not inside functions or `if TYPE_CHECKING:`)."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            else:
                for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                    for child in getattr(node, field, []):
                        visit(child.body if isinstance(child, ast.excepthandler | ast.match_case) else [child])

    visit(tree.body)
    return found


def test_wheel_holds_only_the_package(wheel) -> None:
    names = wheel.namelist()
    assert f"{PACKAGE}/__init__.py" in names and f"{PACKAGE}/cli.py" in names
    outside = [n for n in names
               if n.split("/")[0] != PACKAGE and not (n.startswith(f"{PACKAGE}-") and ".dist-info/" in n)]
    assert not outside, f"files outside {PACKAGE}/ and its dist-info: {outside}"
    leaked = [n for n in names if NOT_SHIPPED & {PurePosixPath(part).stem for part in n.split("/")}]
    assert not leaked, f"test/demo files in the wheel: {leaked}"


def test_wheel_modules_do_not_import_torch(wheel) -> None:
    offenders = {}
    for name in wheel.namelist():
        if name.endswith(".py"):
            heavy = module_level_imports(ast.parse(wheel.read(name), filename=name)) & HEAVY
            if heavy:
                offenders[name] = sorted(heavy)
    assert not offenders, f"modules importing torch/transformers at import time: {offenders}"


def test_wheel_entry_point(wheel) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert "vocabfix = gemma3n_vocabfix.__main__:main" in wheel.read(entry_points).decode()


def test_module_level_imports_sees_through_blocks() -> None:
    """The import check itself: module-level (also under try/if/class) counts, function bodies do not."""
    code = ("import os\ntry:\n    import torch\nexcept ImportError:\n    from timm import x\n"
            "class C:\n    import transformers.models\n"
            "def f():\n    import torchvision\n"
            "if TYPE_CHECKING:\n    import numpy\n")
    assert module_level_imports(ast.parse(code)) == {"os", "torch", "timm", "transformers"}


# --- metadata, the sdist, and both installed in a fresh venv -----------------------------------------------------


def test_wheel_ships_license_type_marker_and_metadata(wheel) -> None:
    names = wheel.namelist()
    assert f"{PACKAGE}/py.typed" in names  # PEP 561
    (license_file,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert wheel.read(license_file) == (ROOT / "LICENSE").read_bytes()
    assert b"Apache License" in wheel.read(license_file) and b"Version 2.0, January 2004" in wheel.read(license_file)
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    headers = wheel.read(metadata).decode().split("\n\n", 1)[0].splitlines()
    assert "License-Expression: Apache-2.0" in headers and "License-File: LICENSE" in headers
    assert not [h for h in headers if h.startswith("License:") or h.startswith("Classifier: License ::")]
    classifiers = {h.removeprefix("Classifier: ") for h in headers if h.startswith("Classifier: ")}
    assert {"Typing :: Typed", "Programming Language :: Python :: 3", "Environment :: Console"} <= classifiers
    urls = [h for h in headers if h.startswith("Project-URL: ")]
    assert urls and all(", https://" in h for h in urls)
    # torch and transformers only ever under an extra
    requires = [h.removeprefix("Requires-Dist: ") for h in headers if h.startswith("Requires-Dist: ")]
    heavy = [r for r in requires if re.split(r"[\s<>=!~;\[(]", r)[0].lower() in HEAVY]
    assert heavy and all("extra ==" in h for h in heavy)


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> tuple[Path, str]:
    """(the sdist, everything the build backend printed), built with all warnings shown."""
    src = source_copy(tmp_path_factory)
    out = tmp_path_factory.mktemp("sdist")
    proc = subprocess.run([sys.executable, "-W", "always", "-c",
                           "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))",
                           str(out)], cwd=src, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = out.glob("*.tar.gz")
    return path, proc.stdout + proc.stderr


def test_sdist_builds_without_warnings_and_holds_the_package(sdist) -> None:
    path, output = sdist
    assert "Warning" not in output and "deprecated" not in output.lower(), output
    with tarfile.open(path) as tf:
        names = {name.split("/", 1)[1] for name in tf.getnames() if "/" in name}
    assert {"LICENSE", "PKG-INFO", "README.md", "pyproject.toml", f"{PACKAGE}/py.typed", f"{PACKAGE}/cli.py"} <= names
    assert not [n for n in names if n.split("/")[0] in {"tests", "examples", "bench"}], "MANIFEST.in prunes them"


@dataclass
class Installed:
    packages: set[str]  # what `pip list` shows in the venv, names normalised (PEP 503)
    help: subprocess.CompletedProcess
    inspect: subprocess.CompletedProcess
    package_dir: Path
    dist_info: Path


@pytest.fixture(scope="module")
def installed(tmp_path_factory, wheel, sdist) -> dict[str, Installed]:
    """The wheel, then the sdist, installed into one fresh venv (dependencies from the index or pip's cache; the sdist
    over the wheel with --force-reinstall --no-deps, built in pip's isolated build env), each run from there."""
    from fixtures.helpers import NEW, A, T, V
    from fixtures.synthetic import build

    root = tmp_path_factory.mktemp("fresh")
    ckpt = build(root / "ckpt", text=T, vision=V, audio=A, new_tokens=NEW)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env.update(HF_HUB_OFFLINE="1", COLUMNS="120")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    site = Path(subprocess.run([str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())

    def install_and_run(*args: str) -> Installed:
        proc = subprocess.run([*pip, "install", "--quiet", "--no-compile", *args], capture_output=True, text=True,
                              env=env, cwd=root, timeout=900)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        listed = subprocess.run([*pip, "list", "--format", "json"], capture_output=True, text=True, env=env,
                                check=True).stdout
        run = {"capture_output": True, "text": True, "env": env, "cwd": root, "timeout": 120}
        (dist_info,) = site.glob("gemma3n_vocabfix-*.dist-info")
        return Installed(packages={re.sub(r"[-_.]+", "-", p["name"]).lower() for p in json.loads(listed)},
                         help=subprocess.run([str(venv / "bin" / "vocabfix"), "--help"], **run),
                         inspect=subprocess.run([str(venv / "bin" / "vocabfix"), "inspect", str(ckpt), "--json"],
                                                **run),
                         package_dir=site / PACKAGE, dist_info=dist_info)

    return {"wheel": install_and_run(wheel.filename),
            "sdist": install_and_run("--force-reinstall", "--no-deps", str(sdist[0]))}


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_installs_in_a_fresh_venv_without_torch_and_runs(installed, kind: str) -> None:
    got = installed[kind]
    assert {"gemma3n-vocabfix", "typer", "rich", "numpy", "safetensors", "huggingface-hub"} <= got.packages
    assert not got.packages & HEAVY, f"the default install pulled {sorted(got.packages & HEAVY)}"
    assert got.help.returncode == 0 and "Usage: vocabfix" in got.help.stdout, got.help.stderr
    for command in ("rewrite", "inspect", "verify"):
        assert command in got.help.stdout
    assert got.inspect.returncode == 1, got.inspect.stderr  # the extended checkpoint has error-level findings
    doc = json.loads(got.inspect.stdout)
    assert {"VF001", "VF002", "VF004"} <= {f["code"] for f in doc["findings"]}
    assert (got.package_dir / "py.typed").is_file()
    assert (got.dist_info / "licenses" / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()
