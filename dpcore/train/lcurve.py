"""``lcurve.out`` in DeePMD-kit's format (SPEC 12): header, ``nan`` note, one line per display step.

Columns: ``step``, then for every metric key (sorted; ``rmse``, ``rmse_e``, ``rmse_f``, ...) the
validation and the training value (``<key>_val <key>_trn``, or only ``<key>_trn`` without
validation data), then ``lr``::

    # step       rmse_val    rmse_trn    rmse_e_val  rmse_e_trn ...   lr
    # If there is no available reference data, rmse_*_{val,trn} will print nan
          1      2.63e+01    2.34e+01      6.86e-02    7.00e-02 ...   1.0e-03

``rmse_e``/``rmse_v`` are per atom (eV), ``rmse_f`` per component (eV/Å), ``rmse`` = sqrt(loss).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

__all__ = ["header", "line", "open_for_run", "read_lcurve", "truncate_after"]

log = logging.getLogger("dpcore.train")

NAN_NOTE = "# If there is no available reference data, rmse_*_{val,trn} will print nan\n"


def header(keys: Sequence[str], validation: bool = True) -> str:
    """The two header lines (title row and the ``nan`` note)."""
    out = "# " + "{:5s}".format("step")
    for k in keys:
        out += "   %11s %11s" % (k + "_val", k + "_trn") if validation else "   %11s" % (k + "_trn")
    out += "   {:8s}\n".format("lr")
    return out + NAN_NOTE


def line(step: int, lr: float, train: Mapping[str, float], valid: Mapping[str, float] | None = None,
         keys: Sequence[str] | None = None) -> str:
    """One data line: ``step`` (1-based), metrics of ``keys`` (default: sorted train keys), ``lr``."""
    keys = sorted(train) if keys is None else list(keys)
    out = f"{int(step):7d}"
    for k in keys:
        trn = float(train.get(k, math.nan))
        if valid is not None:
            out += "   %11.2e %11.2e" % (float(valid.get(k, math.nan)), trn)
        else:
            out += "   %11.2e" % trn
    return out + f"   {float(lr):8.1e}\n"


def read_lcurve(path) -> tuple[list[str], np.ndarray]:
    """Column names and data (nlines, ncols) float64 of an lcurve file (``nan`` entries kept)."""
    names: list[str] = []
    rows = []
    with open(path) as fh:
        for text in fh:
            if text.startswith("#"):
                if not names and "step" in text.split():
                    names = text[1:].split()
                continue
            if text.strip():
                rows.append([float(x) for x in text.split()])
    data = np.array(rows, dtype=np.float64).reshape(len(rows), len(names) if names else -1) if rows else \
        np.zeros((0, len(names)))
    return names, data


def truncate_after(path, step: int) -> int:
    """Drop data lines whose step is larger than ``step`` (a restart from an older checkpoint);
    returns the number of lines removed.  Comment lines are kept.  Written atomically."""
    if not os.path.exists(path):
        return 0
    with open(path) as fh:
        lines = fh.readlines()
    keep = [t for t in lines if t.startswith("#") or not t.strip() or int(t.split()[0]) <= step]
    removed = len(lines) - len(keep)
    if removed:
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as fh:
            fh.writelines(keep)
        os.replace(tmp, path)
    return removed


def open_for_run(path, keys: Sequence[str], validation: bool, start_step: int = 0):
    """The lcurve file of a run, open for appending lines (line-buffered): new with its header, or, continuing
    from a checkpoint at ``start_step`` > 0, cut after that step (lines written after the checkpoint) and
    appended to."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    restart = start_step > 0
    if restart and path.exists():
        dropped = truncate_after(path, start_step)
        if dropped:
            log.info("%s: removed %d lines after step %d (written after the checkpoint)", path, dropped, start_step)
    fresh = not restart or not path.exists() or path.stat().st_size == 0
    fout = open(path, "a" if restart else "w", buffering=1)
    if fresh:
        fout.write(header(keys, validation=validation))
    return fout
