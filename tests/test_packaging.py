"""The wheel ships the tool only: no test fixtures, no demo, nothing that imports torch/transformers on import.

The wheel is built with `pip wheel --no-deps --no-build-isolation` from a copy of the source tree, so that a stale
build/ or *.egg-info left in the checkout by an earlier build can neither leak into it nor be written by the test.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "gemma3n_vocabfix"
HEAVY = {"torch", "torchvision", "transformers", "timm"}
NOT_SHIPPED = {"tiny", "demo", "fixtures", "synthetic", "e4b_shaped", "make_checkpoint", "conftest", "tests",
               "examples", "bench", "reference"}
SKIP = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                              ".hypothesis", ".ruff_cache", "demo-out", "out")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    src = tmp_path_factory.mktemp("src") / "repo"
    shutil.copytree(ROOT, src, ignore=SKIP)
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
