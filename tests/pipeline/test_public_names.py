"""Each pipeline module's `__all__` names exactly its public classes and functions (and they exist)."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = [
    "clips", "encoding", "storage", "sources", "records", "stages",
    "parts", "committer", "progress", "manifest", "settings", "run", "reader",
]  # fmt: skip


@pytest.mark.parametrize("name", MODULES)
def test_all_is_complete_and_exists(name: str) -> None:
    module = importlib.import_module(f"pipeline.{name}")
    exported = set(module.__all__)
    assert all(hasattr(module, n) for n in exported), exported - set(dir(module))
    defined = {
        n
        for n, obj in vars(module).items()
        if not n.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", None) == module.__name__
    }
    assert defined <= exported, f"public but not in __all__: {sorted(defined - exported)}"
