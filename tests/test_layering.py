"""The layering the README draws, read from the package sources' imports (parsed with `ast`, every
import statement, inside functions and `TYPE_CHECKING` blocks too):

    jobs  ──►  pipeline   serve  ──►  model      (pipeline and serve stand side by side on model)

`model` imports no Ray, no web framework and none of the packages above it; `pipeline` and
`serve` import neither each other nor `jobs`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN: dict[str, frozenset[str]] = {
    "model": frozenset({"ray", "fastapi", "starlette", "pipeline", "serve", "jobs"}),
    "pipeline": frozenset({"serve", "jobs"}),
    "serve": frozenset({"pipeline", "jobs"}),
}


def imported_packages(source: str) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in `source`; relative imports stay
    inside the importing package."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def violations(package: str) -> list[str]:
    forbidden = FORBIDDEN[package]
    return [
        f"{path.relative_to(REPO_ROOT)}:{line} imports {name}"
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        for line, name in imported_packages(path.read_text())
        if name in forbidden
    ]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_the_layers_below_it(package: str) -> None:
    assert violations(package) == []


def test_the_check_sees_imports_of_every_form() -> None:
    source = (
        "import ray.data\n"
        "from fastapi import FastAPI\n"
        "def f():\n"
        "    from serve.app import build_app\n"
        "if TYPE_CHECKING:\n"
        "    import pipeline.run as run\n"
        "from . import sibling\n"
        "from .clips import Clip\n"
    )
    assert sorted(imported_packages(source)) == [
        (1, "ray"),
        (2, "fastapi"),
        (4, "serve"),
        (6, "pipeline"),
    ]


# What `pip install .` brings (pyproject's dependencies) leaves out the extras' packages: Ray,
# the web framework, fsspec and its filesystems, pyarrow.
EXTRAS_ONLY = ("ray", "fastapi", "starlette", "fsspec", "s3fs", "gcsfs", "pyarrow")
BLOCK_EXTRAS = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRAS_ONLY!r}:
            raise ImportError(f"{{name}} is an extra's package")
sys.meta_path.insert(0, Block())
"""


def test_the_model_and_its_shared_core_import_without_the_extras() -> None:
    code = (
        BLOCK_EXTRAS
        + "import model, model.cli, model.latents, model.storage, model.media, model.training"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


def test_the_block_refuses_an_extras_package() -> None:
    code = BLOCK_EXTRAS + "import fsspec"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert done.returncode != 0 and "fsspec is an extra's package" in done.stderr


def test_the_service_imports_without_the_pipeline_or_its_extra() -> None:
    # `pip install '.[serve]'` brings no pyarrow, Ray Data or sk-video.
    code = BLOCK_EXTRAS.replace(repr(EXTRAS_ONLY), repr(("pipeline", "jobs", "pyarrow", "skvideo")))
    code += (
        "import importlib, pkgutil, serve\n"
        "for module in pkgutil.walk_packages(serve.__path__, 'serve.'):\n"
        "    importlib.import_module(module.name)\n"
        "assert not [m for m in sys.modules if m.startswith('ray.data')]\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)
