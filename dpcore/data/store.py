"""Storage back-ends for deepmd systems: a directory tree or an HDF5 group.

Both layouts hold the same names (``type.raw``, ``type_map.raw``, ``nopbc``,
``set.000/coord.npy``, ...).  A *store* is one system root; it answers
``exists(name)``, ``load(name)`` (NumPy array), ``read_lines(name)`` and
``list_sets()``.  Only this module knows whether the bytes come from files or
from h5py datasets, so :mod:`dpcore.data.system` reads both layouts alike.

HDF5 (``deepmd/hdf5``) addresses are written ``file.h5#/group/sub`` (the part
after ``#`` is the group of one system; without it, the whole file is searched).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

HDF5_SUFFIXES = (".h5", ".hdf5")


class DataError(ValueError):
    """Bad training data; the message names the file, the shape and what was expected."""


def _import_h5py():
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading deepmd/hdf5 data needs h5py; install it with `pip install dpcore[io]`"
        ) from exc
    return h5py


class DirStore:
    """A system stored as a folder (``deepmd/npy``)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.key = str(self.root.resolve())

    def __repr__(self) -> str:
        return f"DirStore({str(self.root)!r})"

    def describe(self, name: str = "") -> str:
        """Human-readable location of ``name`` for error messages."""
        return str(self.root / name) if name else str(self.root)

    def exists(self, name: str) -> bool:
        return (self.root / name).exists()

    def load(self, name: str) -> np.ndarray:
        path = self.root / name
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise DataError(f"{path}: cannot read as a .npy array ({exc})") from exc

    def read_lines(self, name: str) -> list[str]:
        text = (self.root / name).read_text()
        return text.split()

    def list_sets(self) -> list[str]:
        return sorted(p.name for p in self.root.glob("set.*") if p.is_dir())


class H5Store:
    """A system stored as a group of an HDF5 file (``deepmd/hdf5``)."""

    def __init__(self, filename: str | os.PathLike, group: str = "/"):
        self.filename = str(filename)
        self.group = "/" + group.strip("/")
        self.key = f"{Path(filename).resolve()}#{self.group}"

    def __repr__(self) -> str:
        return f"H5Store({self.filename!r}, {self.group!r})"

    def describe(self, name: str = "") -> str:
        grp = self.group.rstrip("/")
        return f"{self.filename}#{grp}/{name}" if name else f"{self.filename}#{self.group}"

    def _path(self, name: str) -> str:
        return f"{self.group.rstrip('/')}/{name}"

    def exists(self, name: str) -> bool:
        h5py = _import_h5py()
        with h5py.File(self.filename, "r") as f:
            return self._path(name) in f

    def load(self, name: str) -> np.ndarray:
        h5py = _import_h5py()
        with h5py.File(self.filename, "r") as f:
            return np.asarray(f[self._path(name)][()])

    def read_lines(self, name: str) -> list[str]:
        arr = np.atleast_1d(self.load(name))
        out: list[str] = []
        for item in arr.ravel():
            text = item.decode() if isinstance(item, bytes) else str(item)
            out.extend(text.split())
        return out

    def list_sets(self) -> list[str]:
        h5py = _import_h5py()
        with h5py.File(self.filename, "r") as f:
            grp = f[self.group]
            return sorted(
                k for k in grp.keys() if k.startswith("set.") and isinstance(grp[k], h5py.Group)
            )


def _h5_systems(filename: str, group: str) -> list[H5Store]:
    h5py = _import_h5py()
    found: list[str] = []
    with h5py.File(filename, "r") as f:
        if group not in f:
            raise DataError(f"{filename}#{group}: no such group in the HDF5 file")
        root = f[group]
        if "type.raw" in root:
            return [H5Store(filename, group)]

        def visit(name, obj):
            if isinstance(obj, h5py.Group) and "type.raw" in obj:
                found.append(f"{group.rstrip('/')}/{name}")

        root.visititems(visit)
    return [H5Store(filename, g) for g in sorted(found)]


def _split_h5(path: str) -> tuple[str, str] | None:
    """``'a.h5#/g'`` -> ``('a.h5', '/g')``; ``'a.h5'`` -> ``('a.h5', '/')``; else None."""
    file_part, _, group = str(path).partition("#")
    if file_part.lower().endswith(HDF5_SUFFIXES):
        return file_part, "/" + group.strip("/")
    return None


def find_systems(
    systems: str | os.PathLike | list, rglob_patterns: list[str] | None = None
) -> list[DirStore | H5Store]:
    """Expand ``training_data.systems`` into system stores.

    Each entry is a system itself (a folder holding ``type.raw``), a folder
    searched recursively for such systems, an HDF5 file (all groups holding
    ``type.raw``) or ``file.h5#/group``.  ``rglob_patterns`` (e.g.
    ``["water*"]``) replaces the default recursive search for ``type.raw``:
    every folder matching a pattern below the entry is a system.
    Results of one entry are sorted; entries keep the order given.
    """
    entries = [systems] if isinstance(systems, (str, os.PathLike)) else list(systems)
    if not entries:
        raise DataError("systems: the list of systems is empty")
    stores: list[DirStore | H5Store] = []
    for entry in entries:
        h5 = _split_h5(str(entry))
        if h5 is not None:
            if not Path(h5[0]).is_file():
                raise DataError(f"{h5[0]}: HDF5 file not found")
            found = _h5_systems(*h5)
            where = str(entry)
        else:
            root = Path(entry)
            if not root.exists():
                raise DataError(f"{root}: system path not found")
            if not root.is_dir():
                raise DataError(f"{root}: a system must be a folder (or an .h5/.hdf5 file)")
            if rglob_patterns:
                dirs = {p for pat in rglob_patterns for p in root.rglob(pat) if p.is_dir()}
            elif (root / "type.raw").is_file():
                dirs = {root}
            else:
                dirs = {p.parent for p in root.rglob("type.raw")}
            found = [DirStore(d) for d in sorted(dirs)]
            where = str(root)
            if not found and any(root.glob("set.*")):
                raise DataError(
                    f"{root / 'type.raw'}: missing; a system folder with set.* folders needs "
                    "type.raw (natoms integers, the type index of each atom)"
                )
        if not found:
            raise DataError(
                f"{where}: no deepmd/npy system found (searched recursively for a folder "
                "holding type.raw)"
            )
        stores.extend(found)
    return stores
