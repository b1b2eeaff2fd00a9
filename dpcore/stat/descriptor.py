"""Descriptor statistics from data (host side, NumPy): env-matrix ``davg``/``dstd`` (SPEC 2.4).

Statistics are accumulated in float64 as ``(number, sum, squared_sum)`` per type for the radial
column and for the three angular columns pooled, counting every neighbour slot of every centre of
that type (empty slots are zeros).  Mixed-type descriptors (DPA-1) use their one-block neighbour list of
``nnei`` slots (the descriptor's ``nlist_sel``); the formulas are the same (DeePMD-kit's ``EnvMatStatSe``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..descriptor import get_descriptor
from ..env_mat import env_mat
from ..nlist import build_neighbor_list
from ..pairs import pair_inputs, pair_vectors

STD_FLOOR = 1e-2  # fixed protection of SPEC 2.4 (not data_stat_protect)
STD_ABSENT = 0.1  # std of a type absent from the sampled data


def _sel_info(d: dict) -> tuple[list[int], int, bool]:
    """``(sel as a list, nnei, mixed_types)`` of a descriptor section (an int ``sel`` is one mixed block)."""
    sel = d["sel"]
    sel = [int(sel)] if isinstance(sel, int) else [int(x) for x in sel]
    return sel, sum(sel), bool(get_descriptor(d["type"]).MIXED_TYPES)


def raw_env_mat(model_cfg: dict, coord, atype, box) -> tuple[np.ndarray, np.ndarray]:
    """Raw (davg=0, dstd=1) environment matrix with descriptor exclusions applied.

    coord (nf, nloc, 3) Å, atype (nf, nloc), box (nf, 9) or None.
    Returns R (nf, nloc, nnei, 4) float64 (1/Å) and the centre types (nf, nloc) (-1 = padding).
    """
    d = model_cfg["descriptor"]
    ntypes = len(model_cfg["type_map"])
    atype = np.asarray(atype)
    nl = build_neighbor_list(coord, atype, box, d["rcut"], get_descriptor(d["type"]).nlist_sel(d), model_cfg.get("pair_exclude_types", ()))
    pairs = pair_inputs(nl, atype, ntypes, d.get("exclude_types", ()))
    b = None if box is None else np.asarray(box, dtype=np.float64).reshape(-1, 3, 3)
    rij = pair_vectors(np.asarray(coord, dtype=np.float64), b, pairs)
    R, _ = env_mat(rij, pairs["nlist_mask"], d["rcut"], d["rcut_smth"], d.get("env_protection", 0.0))
    if "exclude_mask" in pairs:
        R = R * pairs["exclude_mask"][..., None]
    return R, atype


def accumulate(model_cfg: dict, batches) -> np.ndarray:
    """Sums over batches: (ntypes, 2, 3) float64 ``[type][r|a][number, sum, squared_sum]``."""
    ntypes = len(model_cfg["type_map"])
    acc = np.zeros((ntypes, 2, 3))
    for batch in batches:
        R, atype = raw_env_mat(model_cfg, batch["coord"], batch["atype"], batch.get("box"))
        for t in range(ntypes):
            rows = R[atype == t]  # (n_t, nnei, 4)
            for k, vals in enumerate((rows[..., 0], rows[..., 1:4])):
                acc[t, k] += (vals.size, vals.sum(), np.square(vals).sum())
    return acc


def mean_std(acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(avg, std) arrays of shape (ntypes, 2) from :func:`accumulate` sums, with the protections of SPEC 2.4."""
    n, s, ss = acc[..., 0], acc[..., 1], acc[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = np.where(n > 0, s / np.maximum(n, 1), 0.0)
        std = np.where(n > 0, np.sqrt(np.maximum(ss / np.maximum(n, 1) - avg * avg, 0.0)), STD_ABSENT)
    return avg, np.where(np.abs(std) < STD_FLOOR, STD_FLOOR, std)


def stat_group(model_cfg: dict) -> str:
    """Cache location of the env-matrix sums, as DeePMD-kit names it: ``"<type_map joined>/<sha1 of the settings>"``."""
    d = model_cfg["descriptor"]
    sel, nnei, mixed = _sel_info(d)
    key = {"type": "se_a", "ntypes": len(model_cfg["type_map"]), "rcut": round(d["rcut"], 2),
           "rcut_smth": round(d["rcut_smth"], 2), "nsel": nnei, "sel": sel, "mixed_types": mixed}
    return " ".join(model_cfg["type_map"]) + "/" + hashlib.sha1(json.dumps(key).encode("utf-8")).hexdigest()


def _stat_names(ntypes: int) -> list[str]:
    return [f"{c}_{t}" for t in range(ntypes) for c in ("r", "a")]


def read_stat_file(path, model_cfg: dict) -> np.ndarray | None:
    """Sums (ntypes, 2, 3) from a stat file (``.h5``/``.hdf5`` or a directory of ``.npy``), None if absent."""
    path, group, ntypes = Path(path), stat_group(model_cfg), len(model_cfg["type_map"])
    if not path.exists():
        return None
    if path.suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as f:
            if group not in f:
                return None
            arrays = [f[group][n][()] for n in _stat_names(ntypes)]
    else:
        files = [path / group / f"{n}.npy" for n in _stat_names(ntypes)]
        if not all(p.exists() for p in files):
            return None
        arrays = [np.load(p) for p in files]
    return np.asarray(arrays, dtype=np.float64).reshape(ntypes, 2, 3)


def write_stat_file(path, model_cfg: dict, acc: np.ndarray) -> None:
    """Store sums (ntypes, 2, 3) as DeePMD-kit's datasets ``r_t``/``a_t`` = [number, sum, squared_sum]."""
    path, group = Path(path), stat_group(model_cfg)
    named = dict(zip(_stat_names(acc.shape[0]), np.asarray(acc).reshape(-1, 3)))
    if path.suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "a") as f:
            g = f.require_group(group)
            for name, arr in named.items():
                if name in g:
                    del g[name]
                g[name] = arr
    else:
        (path / group).mkdir(parents=True, exist_ok=True)
        for name, arr in named.items():
            np.save(path / group / f"{name}.npy", arr)


def descriptor_stats(model_cfg: dict, batches, stat_file=None) -> tuple[np.ndarray, np.ndarray]:
    """``davg``, ``dstd`` (ntypes, nnei, 4) float64 from the statistics batches (dicts with coord, atype, box).

    ``stat_file`` (``training.stat_file``): sums found there for this model's settings are used instead of
    ``batches``; otherwise they are computed and stored there.
    """
    d = model_cfg["descriptor"]
    ntypes, nnei = len(model_cfg["type_map"]), _sel_info(d)[1]
    acc = None if stat_file is None else read_stat_file(stat_file, model_cfg)
    if acc is None:
        acc = accumulate(model_cfg, batches)
        if stat_file is not None:
            write_stat_file(stat_file, model_cfg, acc)
    avg, std = mean_std(acc)
    davg = np.zeros((ntypes, nnei, 4))
    if not d.get("set_davg_zero", False):
        davg[..., 0] = avg[:, 0:1]
    dstd = np.empty((ntypes, nnei, 4))
    dstd[..., 0] = std[:, 0:1]
    dstd[..., 1:] = std[:, 1, None, None]
    return davg, dstd

