"""One ``deepmd/npy`` (or ``deepmd/hdf5``) system, loaded and validated in memory.

Layout (SPEC 10.1)::

    system/type.raw            natoms type indices                        [required]
    system/type_map.raw        element name of each type index             [optional]
    system/nopbc               empty file: not periodic, box not needed    [optional]
    system/set.*/coord.npy     (nframes, natoms*3) Å                       [required]
    system/set.*/box.npy       (nframes, 9) Å, rows a, b, c                [unless nopbc]
    system/set.*/<label>.npy   see :mod:`dpcore.data.labels`

All sets are concatenated.  Types are remapped by element name to the model's
``type_map``; atoms are sorted by type (stable), every per-atom array permuted
alike (``idx_map`` maps back: ``atype == raw_atype[idx_map]``).  Floating data
are float64.  ``find[name]`` holds, per frame, 1.0 if the frame's set has the
file and 0.0 if it was filled with the label's default.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .labels import STANDARD_LABELS, LabelSpec
from .store import DataError, DirStore, H5Store

__all__ = ["DeepmdSystem", "DataError"]


def _check_finite(arr: np.ndarray, where: str, what: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"{where}: non-finite value {arr[idx]} at index {idx} (frame {idx[0]}); "
            f"{what} must be finite numbers"
        )


def _check_not_packed_spin(st, raw, data_names, type_map) -> None:
    """Refuse DeePMD-kit's TensorFlow spin layout (SPEC 7.4) for a deepspin model, saying how to convert it.

    Packed: type.raw lists the real atoms (types of the model ``type_map``) followed by one virtual atom
    per magnetic atom (types the model does not know), and coord.npy/force.npy have rows for both.
    """
    known = np.array([t < len(data_names) and data_names[t] in type_map if data_names else t < len(type_map)
                      for t in raw])
    n_real = int(np.argmin(known)) if not known.all() else raw.size
    if n_real == raw.size or known[n_real:].any():
        return  # no unknown types, or not a tail of them: the usual errors apply
    # one virtual type per magnetic type, magnetic types first: k-th virtual type as many atoms as k-th real type
    real_t, real_n = np.unique(raw[:n_real], return_counts=True)
    virt_t, virt_n = np.unique(raw[n_real:], return_counts=True)
    if virt_t.size > real_t.size or not np.array_equal(virt_n, real_n[: virt_t.size]):
        return
    n_virt = raw.size - n_real
    vtypes = sorted({int(t) for t in raw[n_real:]})
    raise DataError(
        f"{st.describe('type.raw')}: this looks like DeePMD-kit's TensorFlow spin layout: {n_real} real atoms "
        f"followed by {n_virt} virtual atoms (types {vtypes}, not in the model type_map {list(type_map)}), "
        f"with coord.npy and force.npy holding rows for both.  dpcore's spin model (DeePMD-kit's PyTorch "
        f"'deepspin' scheme) needs the real atoms only and the spins in spin.npy.  Convert every set: with the "
        f"k-th virtual atom v belonging to the k-th magnetic atom i (in type.raw order), "
        f"spin_i = (r_v - r_i) * spin_norm / virtual_len (minimum image; spin_norm, virtual_len of the "
        f"TensorFlow input's model/spin, per magnetic type), spin = 0 for non-magnetic atoms -> spin.npy "
        f"(nframes, {n_real}*3); keep the first {n_real} atoms in type.raw and coord.npy; force.npy: the first "
        f"{n_real} rows are the forces (keep them), the virtual rows are the magnetic forces (DeePMD-kit "
        f"TensorFlow fits them with F_virtual * virtual_len / spin_norm = -dE/ds) -> force_mag.npy of the "
        f"magnetic atoms (zeros for the others); energy.npy, box.npy, virial.npy are unchanged; then use "
        f"model/spin/virtual_scale = virtual_len / spin_norm (DeePMD-kit examples/spin/data_reformat is the "
        f"NiO example converted this way)"
    )


class DeepmdSystem:
    """A validated system.

    Parameters
    ----------
    store : DirStore | H5Store | path
        The system root (a folder, or ``file.h5#/group``).
    type_map : list of str, optional
        The model's element names; data types are remapped to these indices.
    labels : sequence of LabelSpec, optional
        What to load besides coord/box (default :data:`STANDARD_LABELS`).
    sort_atoms : bool
        Sort atoms by type (DeePMD-kit default).

    Attributes
    ----------
    natoms, nframes, ntypes : int
    atype : (natoms,) int64, model type indices (sorted if ``sort_atoms``)
    idx_map : (natoms,) int64, ``atype = raw_atype[idx_map]``
    pbc : bool
    coord : (nframes, natoms, 3) float64, Å
    box : (nframes, 9) float64 or None (nopbc)
    data : dict name -> (nframes, natoms, ndof) [atomic] or (nframes, ndof) [frame], float64
    find : dict name -> (nframes,) float64
    frame_set : (nframes,) int64, index into ``set_names``
    """

    def __init__(
        self,
        store: DirStore | H5Store | str | os.PathLike,
        type_map: Sequence[str] | None = None,
        labels: Sequence[LabelSpec] | None = None,
        sort_atoms: bool = True,
    ):
        if not isinstance(store, (DirStore, H5Store)):
            s = str(store)
            if "#" in s or s.lower().endswith((".h5", ".hdf5")):
                f, _, g = s.partition("#")
                store = H5Store(f, g or "/")
            else:
                store = DirStore(s)
        self.store = store
        self.path = store.describe()
        self.labels = tuple(STANDARD_LABELS if labels is None else labels)
        self._read_types(type_map)
        self.idx_map = (
            np.argsort(self.atype, kind="stable") if sort_atoms else np.arange(self.natoms)
        ).astype(np.int64)
        self.atype = self.atype[self.idx_map]
        self._read_sets()
        self.cache_key = (store.key, tuple(self.type_map) if self.type_map else None)

    def __repr__(self) -> str:
        return f"DeepmdSystem({self.path!r}, natoms={self.natoms}, nframes={self.nframes})"

    # ------------------------------------------------------------------ types
    def _read_types(self, type_map: Sequence[str] | None) -> None:
        st = self.store
        if not st.exists("type.raw"):
            raise DataError(
                f"{st.describe('type.raw')}: missing; every system needs type.raw "
                "(natoms integers, the type index of each atom)"
            )
        words = st.read_lines("type.raw")
        try:
            raw = np.array([int(w) for w in words], dtype=np.int64)
        except ValueError as exc:
            raise DataError(
                f"{st.describe('type.raw')}: expected whitespace-separated integers ({exc})"
            ) from None
        if raw.size == 0:
            raise DataError(f"{st.describe('type.raw')}: empty system (type.raw lists no atoms)")
        if (raw < 0).any():
            i = int(np.argmax(raw < 0))
            raise DataError(
                f"{st.describe('type.raw')}: negative type index {raw[i]} for atom {i}"
            )
        data_names = st.read_lines("type_map.raw") if st.exists("type_map.raw") else None
        if type_map is not None and any(s.name == "spin" and s.must for s in self.labels):
            _check_not_packed_spin(st, raw, data_names, type_map)
        if data_names is not None:
            if raw.max() >= len(data_names):
                i = int(np.argmax(raw >= len(data_names)))
                raise DataError(
                    f"{st.describe('type.raw')}: type index {raw[i]} (atom {i}) is outside "
                    f"type_map.raw, which lists {len(data_names)} elements {data_names}"
                )
            if type_map is not None:
                missing = [n for n in data_names if n not in type_map]
                if missing:
                    raise DataError(
                        f"{st.describe('type_map.raw')}: elements {missing} are not in the "
                        f"model type_map {list(type_map)}; add them to model/type_map"
                    )
                lookup = np.array([list(type_map).index(n) for n in data_names], dtype=np.int64)
                raw = lookup[raw]
        elif type_map is not None and raw.max() >= len(type_map):
            i = int(np.argmax(raw >= len(type_map)))
            raise DataError(
                f"{st.describe('type.raw')}: type index {raw[i]} (atom {i}) is outside the "
                f"model type_map {list(type_map)} (no type_map.raw to remap by element name)"
            )
        self.type_map = list(type_map) if type_map is not None else data_names
        self.ntypes = len(self.type_map) if self.type_map else int(raw.max()) + 1
        self.raw_atype = raw
        self.atype = raw.copy()
        self.natoms = int(raw.size)

    # ------------------------------------------------------------------- sets
    def _read_sets(self) -> None:
        st = self.store
        self.set_names = st.list_sets()
        if not self.set_names:
            raise DataError(f"{self.path}: empty system (no set.* folder)")
        self.pbc = not st.exists("nopbc")
        coords, boxes, frame_set = [], [], []
        per_set: list[dict[str, np.ndarray]] = []
        for iset, name in enumerate(self.set_names):
            if st.exists(f"{name}/real_atom_types.npy"):
                raise DataError(
                    f"{st.describe(name + '/real_atom_types.npy')}: the mixed_type format "
                    "(per-frame types) is not supported; split it into one system per composition"
                )
            coord = self._load_coord(name)
            nf = coord.shape[0]
            coords.append(coord)
            frame_set.append(np.full(nf, iset, dtype=np.int64))
            if self.pbc:
                boxes.append(self._load_box(name, nf))
            per_set.append(self._load_labels(name, nf))
        self.coord = np.concatenate(coords)[:, self.idx_map]
        self.box = np.concatenate(boxes) if self.pbc else None
        self.frame_set = np.concatenate(frame_set)
        self.nframes = int(self.coord.shape[0])
        self.data, self.find = {}, {}
        for spec in self.labels:
            ndof = spec.ndof
            if ndof is None:  # infer from the first set that has the file
                ndof = next((d[spec.name].shape[-1] for d in per_set if spec.name in d), None)
                if ndof is None:
                    continue
            parts, finds = [], []
            for d, nf in zip(per_set, (len(c) for c in coords)):
                arr = d.get(spec.name)
                if arr is not None and arr.shape[-1] != ndof:
                    raise DataError(
                        f"{self.path}: {spec.name}.npy has {arr.shape[-1]} values per "
                        f"{'atom' if spec.atomic else 'frame'} in one set and {ndof} in another"
                    )
                if arr is None:
                    shape = (nf, self.natoms, ndof) if spec.atomic else (nf, ndof)
                    arr = np.empty(shape)
                    arr[...] = np.asarray(spec.default, dtype=np.float64)
                finds.append(np.full(nf, 0.0 if spec.name not in d else 1.0))
                parts.append(arr)
            full = np.concatenate(parts)
            self.data[spec.name] = full[:, self.idx_map] if spec.atomic else full
            self.find[spec.name] = np.concatenate(finds)

    def keep_frames(self, frames) -> int:
        """Keep only ``frames`` (indices into the current frames); returns how many were dropped.

        Frame-level arrays (coord, box, labels, find flags, set index) are sliced consistently and the
        neighbour-list cache key changes, so cached lists of the old numbering are never reused.
        """
        frames = np.asarray(frames, dtype=np.int64)
        dropped = self.nframes - frames.size
        if dropped == 0:
            return 0
        if frames.size == 0:
            raise DataError(f"{self.path}: every frame was filtered out; empty system")
        self.coord = self.coord[frames]
        self.box = None if self.box is None else self.box[frames]
        self.frame_set = self.frame_set[frames]
        self.data = {k: v[frames] for k, v in self.data.items()}
        self.find = {k: v[frames] for k, v in self.find.items()}
        self.nframes = int(frames.size)
        self.cache_key = self.cache_key + (("frames", hash(frames.tobytes())),)
        return dropped

    def _load_coord(self, name: str) -> np.ndarray:
        st = self.store
        where = st.describe(f"{name}/coord.npy")
        if not st.exists(f"{name}/coord.npy"):
            raise DataError(f"{where}: missing; every set needs coord.npy (nframes, natoms*3)")
        arr = np.asarray(st.load(f"{name}/coord.npy"), dtype=np.float64)
        width = 3 * self.natoms
        if arr.size == 0:
            raise DataError(f"{where}: empty system (coord.npy holds 0 frames)")
        if arr.size % width or (arr.ndim >= 2 and int(np.prod(arr.shape[1:])) != width):
            raise DataError(
                f"{where}: shape {arr.shape} is not (nframes, natoms*3) = (nframes, {width}) "
                f"with natoms = {self.natoms} from type.raw (size {arr.size} is "
                f"{'not ' if arr.size % width else ''}a multiple of {width})"
            )
        _check_finite(arr.reshape(-1, width), where, "coordinates")
        return arr.reshape(-1, self.natoms, 3)

    def _load_box(self, name: str, nf: int) -> np.ndarray:
        st = self.store
        where = st.describe(f"{name}/box.npy")
        if not st.exists(f"{name}/box.npy"):
            raise DataError(
                f"{where}: missing for a periodic system; give box.npy (nframes, 9) with the "
                f"cell vectors a, b, c as rows, or create an empty file "
                f"{st.describe('nopbc')} for a non-periodic system"
            )
        box = self._reshape(np.asarray(st.load(f"{name}/box.npy"), dtype=np.float64),
                            where, nf, 9, "frame")
        _check_finite(box, where, "cell vectors")
        det = np.linalg.det(box.reshape(nf, 3, 3))
        if (np.abs(det) < 1e-12).any():
            i = int(np.argmax(np.abs(det) < 1e-12))
            raise DataError(f"{where}: cell of frame {i} is singular (volume {det[i]:.3g} Å^3)")
        return box

    def _reshape(self, arr, where, nf, ndof, kind):
        """Check a label array against nf frames and ndof values per atom/frame."""
        per_frame = ndof * (self.natoms if kind == "atom" else 1)
        nrow = arr.shape[0] if arr.ndim >= 1 else 1
        if arr.ndim == 1 and per_frame != 1:
            nrow = arr.size // per_frame if arr.size % per_frame == 0 else -1
        if nrow != nf and (arr.ndim >= 2 or per_frame == 1):
            raise DataError(
                f"{where}: shape {arr.shape} has {nrow} frames; coord.npy of this set has {nf}"
            )
        if arr.size != nf * per_frame:
            what = (
                f"natoms*{ndof} = {per_frame} (natoms = {self.natoms} from type.raw)"
                if kind == "atom" else f"{ndof}"
            )
            raise DataError(
                f"{where}: shape {arr.shape} has {arr.size // max(nf, 1)} values per frame; "
                f"expected (nframes, {per_frame}) i.e. {what} per frame for {nf} frames"
            )
        return arr.reshape((nf, self.natoms, ndof) if kind == "atom" else (nf, ndof))

    def _load_labels(self, name: str, nf: int) -> dict[str, np.ndarray]:
        st = self.store
        out = {}
        for spec in self.labels:
            stem = next(
                (s for s in (spec.name, *spec.aliases) if st.exists(f"{name}/{s}.npy")), None
            )
            if stem is None:
                if spec.must:
                    hint = f"; {spec.hint}" if spec.hint else ""
                    raise DataError(
                        f"{st.describe(name + '/' + spec.name + '.npy')}: missing, but required "
                        f"by the model/loss{hint}"
                    )
                continue
            where = st.describe(f"{name}/{stem}.npy")
            arr = np.asarray(st.load(f"{name}/{stem}.npy"), dtype=np.float64)
            kind = "atom" if spec.atomic else "frame"
            ndof = spec.ndof
            if ndof is None:  # width from the file: values per frame / (natoms or 1)
                unit = self.natoms if spec.atomic else 1
                per_frame = arr.size // nf if nf and arr.size % nf == 0 else 0
                if per_frame == 0 or per_frame % unit:
                    raise DataError(
                        f"{where}: shape {arr.shape} does not split into {nf} frames of "
                        f"{'natoms*k' if spec.atomic else 'k'} values (natoms = {self.natoms})"
                    )
                ndof = per_frame // unit
            arr = self._reshape(arr, where, nf, ndof, kind)
            _check_finite(arr.reshape(nf, -1), where, "labels")
            out[spec.name] = arr
        return out

    # ---------------------------------------------------------------- batches
    def natoms_vec(self) -> np.ndarray:
        """``[nloc, nall, count_type_0, ..., count_type_{ntypes-1}]`` (2+ntypes,) int64."""
        counts = np.bincount(self.atype, minlength=self.ntypes)
        return np.concatenate([[self.natoms, self.natoms], counts]).astype(np.int64)

    def get_batch(self, frames: Sequence[int] | np.ndarray) -> dict:
        """Frames ``frames`` as a batch dict (see :mod:`dpcore.data`); ``find_*`` of the first frame."""
        idx = np.asarray(frames, dtype=np.int64)
        nf = idx.size
        if nf == 0:
            raise ValueError(f"{self.path}: a batch needs at least one frame")
        batch: dict = {
            "coord": self.coord[idx],
            "atype": np.broadcast_to(self.atype, (nf, self.natoms)).copy(),
            "box": None if self.box is None else self.box[idx],
            "natoms": np.broadcast_to(self.natoms_vec(), (nf, 2 + self.ntypes)).copy(),
        }
        for spec in self.labels:
            if spec.name not in self.data:
                continue
            arr = self.data[spec.name][idx]
            if spec.layout == "atom1":
                arr = arr[..., 0]
            elif spec.layout == "flat":
                arr = arr.reshape(nf, -1)
            batch[spec.name] = arr
            batch[f"find_{spec.name}"] = float(self.find[spec.name][idx[0]])
        return batch
