"""Import kubernetes-asyncio's generated client lazily: a third less memory for every MultiNic process.

`import kubernetes_asyncio` runs `kubernetes_asyncio/client/__init__.py`, which imports every generated API
class and every model - some 800 modules and 30 MiB of resident memory (measured: a controller process at
start-up, 92 MiB eagerly, 61 MiB with this). MultiNic uses only the ApiClient, its Configuration and the
kubeconfig loaders; it sends and parses JSON itself and never builds a typed model.

`install()` (called first thing by the command line) puts a finder on `sys.meta_path` that makes the three
re-exporting packages - `kubernetes_asyncio.client`, `.client.api`, `.client.models` - lazy: the package
module is created without running its `__init__`, and each name that `__init__` re-exports (read from its
`from <module> import <Name>` lines) is imported from its own module on first access, then kept. Submodules
import as usual. Everything stays reachable: an attribute the library itself reaches by name (ApiClient's
`deserialize` looks models up in `kubernetes_asyncio.client.models`) is imported when asked for.

A package whose `__init__` does not have that shape (a future release that changed it) is imported eagerly,
as without this module: the cost is memory, never a failure. Tests check that every re-exported name
resolves to the object the eager import gives (tests/unit/test_lean_imports.py).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

LAZY_PACKAGES = ("kubernetes_asyncio.client", "kubernetes_asyncio.client.api", "kubernetes_asyncio.client.models")
_REEXPORT = re.compile(r"^from (kubernetes_asyncio\.client(?:\.\w+)*) import (\w+)[ \t]*(?:#.*)?$", re.MULTILINE)
_VERSION = re.compile(r'^__version__ = "([^"]+)"$', re.MULTILINE)
_ALLOWED_LINE = re.compile(r'^(?:from __future__ import \w+|__version__ = "[^"]+"|__all__ = \[|\s*"\w+",|\]|#.*)?\s*$')


def reexports(source: str) -> dict[str, str] | None:
    """Name -> module for each `from <module> import <Name>` line of a generated `__init__`; None when the file
    holds anything else that would have to run (then the package is imported as usual)."""
    body = re.sub(r'^"""(?:.|\n)*?"""', "", source, count=1, flags=re.MULTILINE)  # the module docstring
    names: dict[str, str] = {}
    for line in body.splitlines():
        found = _REEXPORT.match(line)
        if found is not None:
            names[found.group(2)] = found.group(1)
        elif not _ALLOWED_LINE.match(line):
            return None
    return names or None


class _LazyPackage(ModuleType):
    """A package module whose re-exported names are imported on first access."""

    _lazy_names: dict[str, str]

    def __getattr__(self, name: str) -> Any:
        module = self._lazy_names.get(name)
        if module is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(self, name, value)
        return value

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self._lazy_names})


class _Loader(importlib.abc.Loader):
    def __init__(self, names: dict[str, str], version: str | None) -> None:
        self._names = names
        self._version = version

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = _LazyPackage(spec.name)
        module._lazy_names = self._names
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__all__ = sorted(self._names)  # type: ignore[attr-defined]
        if self._version is not None:
            module.__version__ = self._version  # type: ignore[attr-defined]


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in LAZY_PACKAGES:
            return None
        real = importlib.machinery.PathFinder.find_spec(fullname, path)
        if real is None or real.origin is None or real.submodule_search_locations is None:
            return None
        try:
            source = Path(real.origin).read_text(encoding="utf-8")
        except OSError:
            return None
        names = reexports(source)
        if names is None:
            return None  # not the shape we know: the usual, eager import
        version = _VERSION.search(source)
        spec = importlib.util.spec_from_loader(
            fullname, _Loader(names, version.group(1) if version else None), origin=real.origin, is_package=True
        )
        if spec is None:
            return None
        spec.submodule_search_locations = list(real.submodule_search_locations)
        spec.has_location = True
        return spec


def install() -> bool:
    """Make the generated client lazy for this process; False when it was imported already (nothing to win)."""
    if any(name in sys.modules for name in LAZY_PACKAGES) or any(isinstance(f, _Finder) for f in sys.meta_path):
        return False
    sys.meta_path.insert(0, _Finder())
    return True
