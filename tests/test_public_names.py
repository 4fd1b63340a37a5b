"""Each module's `__all__` names exactly its public classes and functions (and they exist)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

PACKAGES = ["model", "pipeline", "serve", "jobs"]


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        names.append(package)
        names += [info.name for info in pkgutil.walk_packages(root.__path__, f"{package}.") if not info.name.endswith("__main__")]
    return names


@pytest.mark.parametrize("name", _modules())
def test_all_is_complete_and_exists(name: str) -> None:
    module = importlib.import_module(name)
    exported = set(getattr(module, "__all__", ()))
    assert all(hasattr(module, n) for n in exported), exported - set(dir(module))
    defined = {
        n
        for n, obj in vars(module).items()
        if not n.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", None) == module.__name__
    }
    assert defined <= exported, f"public but not in __all__: {sorted(defined - exported)}"
