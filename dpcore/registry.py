"""Registries of model parts keyed by DeePMD-kit's type names (``se_e2_a``, ``ener``, ...).

An entry maps a type name to the module implementing it; the module is imported on first use and
checked to provide the registry's interface (module-level names), so a new descriptor or fitting
type is one new module plus one entry.  No framework is imported here.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class Registry:
    """Type name -> implementing module, with aliases (``se_a`` -> ``se_e2_a``) and an interface check."""

    def __init__(self, kind: str, entries: dict[str, str], aliases: dict[str, str], interface: tuple[str, ...]):
        self.kind, self.entries, self.aliases, self.interface = kind, dict(entries), dict(aliases), interface
        self._loaded: dict[str, ModuleType] = {}

    def names(self) -> list[str]:
        """Canonical type names, in registration order."""
        return list(self.entries)

    def all_names(self) -> list[str]:
        """Canonical names and aliases."""
        return list(self.entries) + list(self.aliases)

    def canonical(self, name: str) -> str:
        key = self.aliases.get(name, name)
        if key not in self.entries:
            raise NotImplementedError(f"{self.kind} type {name!r} is not supported by dpcore "
                                      f"(supported: {self.names()})")
        return key

    def get(self, name: str) -> ModuleType:
        """The module implementing type ``name`` (canonical name or alias)."""
        key = self.canonical(name)
        if key not in self._loaded:
            module = importlib.import_module(self.entries[key])
            missing = [a for a in self.interface if not hasattr(module, a)]
            if missing:
                raise TypeError(f"{self.kind} module {module.__name__} lacks {missing} of the {self.kind} interface")
            self._loaded[key] = module
        return self._loaded[key]
