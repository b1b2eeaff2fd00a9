"""Prediction errors of an energy model: MAE and RMSE of energies, forces, virials, magnetic forces.

Pure NumPy functions, no I/O.  An :class:`ErrorStat` keeps the number of values it was taken over
(its *weight*), so errors of several systems (or of chunks of one system) merge exactly into the
errors of the whole set (:func:`merge_errors`): the merged MAE is the weight-averaged MAE and the
merged RMSE the root of the weight-averaged mean square -- the same as DeePMD-kit's ``dp test``
weighted average.

Quantities returned by :func:`energy_errors` (only those whose labels exist):

=================  ==========================================  =========================  =======
key                values compared                              weight                     unit
=================  ==========================================  =========================  =======
energy             E_pred - E_data, one per frame               nframes                    eV
energy_per_atom    (E_pred - E_data) / natoms                   nframes                    eV
force              every force component                        nframes * natoms * 3       eV/Å
virial             the 9 virial components                      nframes * 9                eV
virial_per_atom    virial components / natoms                   nframes * 9                eV
stress             stress = -virial / volume (needs the box)    nframes * 9                eV/Å³
force_mag          magnetic force components of magnetic atoms  n_magnetic_atoms * 3       eV/μB
=================  ==========================================  =========================  =======
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, NamedTuple

import numpy as np

__all__ = ["ErrorStat", "error_stat", "merge_stats", "merge_errors", "energy_errors", "QUANTITIES"]

#: The quantities of :func:`energy_errors`, in report order, with their units.
QUANTITIES = {
    "energy": "eV",
    "energy_per_atom": "eV",
    "force": "eV/Å",
    "virial": "eV",
    "virial_per_atom": "eV",
    "stress": "eV/Å³",
    "force_mag": "eV/μB",
}


class ErrorStat(NamedTuple):
    """Mean absolute error, root-mean-square error and the number of values they were taken over."""

    mae: float
    rmse: float
    weight: float

    @classmethod
    def empty(cls) -> "ErrorStat":
        """No values: both errors are NaN and the weight 0 (ignored when merging)."""
        return cls(math.nan, math.nan, 0.0)


def error_stat(pred, ref, scale: float = 1.0) -> ErrorStat:
    """MAE and RMSE of ``scale * (pred - ref)`` over all elements (any matching shapes)."""
    diff = (np.asarray(pred, dtype=np.float64) - np.asarray(ref, dtype=np.float64)) * scale
    if diff.size == 0:
        return ErrorStat.empty()
    return ErrorStat(float(np.mean(np.abs(diff))), float(np.sqrt(np.mean(diff * diff))), float(diff.size))


def merge_stats(stats: Iterable[ErrorStat]) -> ErrorStat:
    """Exact MAE/RMSE of the union of the value sets behind ``stats`` (empty ones ignored)."""
    stats = [s for s in stats if s.weight > 0]
    if not stats:
        return ErrorStat.empty()
    w = sum(s.weight for s in stats)
    mae = sum(s.mae * s.weight for s in stats) / w
    rmse = math.sqrt(sum(s.rmse * s.rmse * s.weight for s in stats) / w)
    return ErrorStat(mae, rmse, w)


def merge_errors(errors: Iterable[Mapping[str, ErrorStat]]) -> dict[str, ErrorStat]:
    """Merge per-system error dicts quantity by quantity (a quantity absent from a dict counts 0)."""
    errors = list(errors)
    keys: list[str] = []
    for e in errors:
        keys += [k for k in e if k not in keys]
    return {k: merge_stats(e[k] for e in errors if k in e) for k in keys}


def _frames(find, nf: int) -> np.ndarray:
    """Boolean (nf,) mask of the frames that carry a label (``find`` scalar or per frame; None = all)."""
    if find is None:
        return np.ones(nf, dtype=bool)
    return np.broadcast_to(np.asarray(find, dtype=np.float64) > 0, (nf,)).copy()


def energy_errors(pred: Mapping, label: Mapping, find: Mapping | None = None, natoms: int | None = None,
                  virial: bool = True, box=None) -> dict[str, ErrorStat]:
    """Errors of one system's predictions against its labels.

    pred: ``energy`` (nf, 1) or (nf,) eV, ``force`` (nf, natoms, 3) eV/Å, ``virial`` (nf, 9) eV, and for a
        spin model ``force_mag`` (nf, natoms, 3) eV/μB with ``mask_mag`` (nf, natoms[, 1]) (nonzero =
        magnetic atom).
    label: same keys and shapes (``force_mag`` without a mask); a missing key = no label.
    find: per label name, 1.0/0.0 per frame (nf,) or a scalar: which frames carry the label
        (as :attr:`dpcore.data.DeepmdSystem.find`); missing = every frame.
    natoms: real atoms per frame for the per-atom errors (default ``force.shape[1]``).
    virial: False to skip the virial (non-periodic systems: DeePMD-kit reports no virial there).
    box: (nf, 9) Å cell vectors; with it the stress ``-virial / |det box|`` (eV/Å³, positive under tension,
        as DeePMD-kit's ``dp test``) is compared too.
    Returns a dict ``quantity -> ErrorStat`` holding only the quantities with labels on >= 1 frame.
    """
    find = find or {}
    nf = int(np.shape(pred["energy"])[0])
    if natoms is None:
        natoms = int(np.shape(pred["force"])[1])
    out: dict[str, ErrorStat] = {}

    def present(name):
        if name not in pred or name not in label or pred[name] is None or label[name] is None:
            return None
        sel = _frames(find.get(name), nf)
        return sel if sel.any() else None

    if (sel := present("energy")) is not None:
        p = np.reshape(pred["energy"], (nf, -1))[sel]
        d = np.reshape(label["energy"], (nf, -1))[sel]
        out["energy"] = error_stat(p, d)
        out["energy_per_atom"] = error_stat(p, d, 1.0 / natoms)
    if (sel := present("force")) is not None:
        out["force"] = error_stat(np.reshape(pred["force"], (nf, -1))[sel], np.reshape(label["force"], (nf, -1))[sel])
    if virial and (sel := present("virial")) is not None:
        p = np.reshape(pred["virial"], (nf, 9))[sel]
        d = np.reshape(label["virial"], (nf, 9))[sel]
        out["virial"] = error_stat(p, d)
        out["virial_per_atom"] = error_stat(p, d, 1.0 / natoms)
        if box is not None:
            volume = np.abs(np.linalg.det(np.reshape(box, (nf, 3, 3))[sel]))[:, None]
            out["stress"] = error_stat(-p / volume, -d / volume)
    if (sel := present("force_mag")) is not None:
        p = np.reshape(pred["force_mag"], (nf, -1, 3))[sel]
        d = np.reshape(label["force_mag"], (nf, -1, 3))[sel]
        mask = pred.get("mask_mag")
        mag = np.ones(p.shape[:2], dtype=bool) if mask is None else np.reshape(mask, (nf, -1))[sel] != 0
        out["force_mag"] = error_stat(p[mag], d[mag])
    return out
