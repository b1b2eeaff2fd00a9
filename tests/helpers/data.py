"""deepmd/npy systems written to disk for tests/test_data_*.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_system(root: Path, types=(1, 0, 1, 0), type_map=("H", "O"), nframes=(3,),
                 labels=("energy", "force"), nopbc=False, seed=0, extra=None):
    """A small deepmd/npy system: one set per entry of ``nframes``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    natoms = len(types)
    (root / "type.raw").write_text("\n".join(str(t) for t in types) + "\n")
    if type_map is not None:
        (root / "type_map.raw").write_text("\n".join(type_map) + "\n")
    if nopbc:
        (root / "nopbc").write_text("")
    for i, nf in enumerate(nframes):
        s = root / f"set.{i:03d}"
        s.mkdir()
        np.save(s / "coord.npy", rng.uniform(0, 5, (nf, natoms * 3)))
        if not nopbc:
            np.save(s / "box.npy", np.tile(np.diag([5.0, 6.0, 7.0]).ravel(), (nf, 1)))
        shapes = {"energy": (nf,), "force": (nf, natoms * 3), "virial": (nf, 9),
                  "atom_ener": (nf, natoms), "spin": (nf, natoms * 3),
                  "force_mag": (nf, natoms * 3), "fparam": (nf, 2), "aparam": (nf, natoms * 2)}
        for lab in labels:
            np.save(s / f"{lab}.npy", rng.normal(size=shapes[lab]))
        for name, arr in (extra or {}).items():
            np.save(s / f"{name}.npy", arr)
    return root
