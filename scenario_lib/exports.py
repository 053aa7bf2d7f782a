"""Public names that load on first use (PEP 562), so importing a package stays light.

A package's ``__init__`` maps each public name to the submodule that defines it and calls
``__all__, __getattr__, __dir__ = lazy_exports(globals(), mapping)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


class LazyExports:
    """The public names of ``package``: ``exports`` maps each to its submodule, relative to the package."""

    def __init__(self, package: str, exports: Mapping[str, str], namespace: dict[str, Any]) -> None:
        self._package = package
        self._exports = dict(exports)
        self._namespace = namespace  # the package's globals(): a loaded name is cached there
        self.all = sorted(self._exports)

    def load(self, name: str) -> Any:
        """The value of ``name``, imported from its submodule (AttributeError for a name not exported)."""
        module = self._exports.get(name)
        if module is None:
            raise AttributeError(f"module {self._package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{self._package}.{module}"), name)
        self._namespace[name] = value
        return value

    def names(self) -> list[str]:
        return sorted(set(self._namespace) | set(self.all))


def lazy_exports(
    namespace: dict[str, Any], exports: Mapping[str, str], *, eager: tuple[str, ...] = ()
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for the package whose globals are ``namespace``.

    ``eager`` names are defined in the ``__init__`` itself and listed in ``__all__`` beside the lazy ones.
    """
    lazy = LazyExports(namespace["__name__"], exports, namespace)
    return sorted([*eager, *lazy.all]), lazy.load, lazy.names


__all__ = ["LazyExports", "lazy_exports"]
