"""What a system may hold besides coordinates: labels and per-frame/per-atom inputs.

A :class:`LabelSpec` says how ``set.*/<name>.npy`` is shaped and what fills it
when the file is absent (``find_<name> = 0.0``).  :func:`label_specs` builds
the list a model/loss needs from a normalised input (see
:func:`dpcore.config.normalize_config`).

Layouts of the arrays handed out in a batch (``nf`` frames, ``nloc`` atoms):

==================  =======  ==============================  =========
name                per      batch shape                      default
==================  =======  ==============================  =========
energy              frame    (nf, 1)            eV            0.0
virial              frame    (nf, 9)            eV            0.0
fparam              frame    (nf, numb_fparam)                default_fparam
force               atom     (nf, nloc, 3)      eV/Å          0.0
force_mag           atom     (nf, nloc, 3)      eV/μB         0.0
spin                atom     (nf, nloc, 3)      μB            0.0
aparam              atom     (nf, nloc, numb_aparam)          0.0
atom_ener           atom     (nf, nloc)         eV            0.0
atom_pref           atom     (nf, nloc)                       1.0
atom_ener_coeff     atom     (nf, nloc)                       1.0
drdq                atom     (nf, nloc*3*numb_generalized_coord)  0.0
==================  =======  ==============================  =========
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LabelSpec:
    """One optional array of a set folder.

    name:     file stem (``force`` -> ``force.npy``) and batch key.
    atomic:   True if the array has one row per atom (permuted when atoms are sorted).
    ndof:     values per atom (atomic) or per frame; ``None`` = infer from the file.
    layout:   ``"atom"`` (nf, nloc, ndof), ``"atom1"`` (nf, nloc), ``"flat"`` (nf, nloc*ndof)
              or ``"frame"`` (nf, ndof).
    default:  fill value (scalar, or a per-frame vector of length ndof) when absent.
    must:     absent file is an error instead of a default.
    aliases:  other accepted file stems (``atomic_ener`` for ``atom_ener``).
    """

    name: str
    atomic: bool
    ndof: int | None
    layout: str
    default: Any = 0.0
    must: bool = False
    aliases: tuple[str, ...] = ()
    hint: str = ""


STANDARD_LABELS: tuple[LabelSpec, ...] = (
    LabelSpec("energy", False, 1, "frame"),
    LabelSpec("force", True, 3, "atom"),
    LabelSpec("virial", False, 9, "frame"),
    LabelSpec("atom_ener", True, 1, "atom1", aliases=("atomic_ener",)),
    LabelSpec("atom_pref", True, 1, "atom1", default=1.0),
    LabelSpec("atom_ener_coeff", True, 1, "atom1", default=1.0),
    LabelSpec("force_mag", True, 3, "atom"),
    LabelSpec("spin", True, 3, "atom"),
    # optional inputs whose width comes from the file unless the model fixes it
    LabelSpec("fparam", False, None, "frame"),
    LabelSpec("aparam", True, None, "atom"),
    LabelSpec("drdq", True, None, "flat"),
)

_SPIN_HINT = (
    "the deepspin model needs spin.npy (nframes, natoms*3) next to coord.npy, with "
    "coord.npy/type.raw holding the real atoms only; data in the TensorFlow packed "
    "layout (virtual atoms appended to coord.npy, types ntypes..2*ntypes-1) must be "
    "converted: spin_i = (r_virtual_i - r_i) * spin_norm / virtual_len for the "
    "magnetic types, then drop the virtual atoms (see DeePMD-kit examples/spin/data_reformat)"
)


def label_specs(
    *,
    numb_fparam: int = 0,
    numb_aparam: int = 0,
    default_fparam: list[float] | None = None,
    numb_generalized_coord: int = 0,
    spin: bool = False,
    must: tuple[str, ...] = (),
) -> tuple[LabelSpec, ...]:
    """Label specs for a model: fixes the fparam/aparam/drdq widths and what is required.

    fparam is required when ``numb_fparam > 0`` and no ``default_fparam`` is given;
    aparam when ``numb_aparam > 0``; spin when ``spin``.  ``must`` lists more names
    whose absence is an error.
    """
    out = []
    for s in STANDARD_LABELS:
        kw: dict[str, Any] = {}
        if s.name == "fparam":
            if numb_fparam:
                kw.update(ndof=numb_fparam, must=default_fparam is None)
                if default_fparam is not None:
                    if len(default_fparam) != numb_fparam:
                        raise ValueError(
                            f"default_fparam has {len(default_fparam)} values; "
                            f"expected numb_fparam = {numb_fparam}"
                        )
                    kw.update(default=tuple(float(x) for x in default_fparam))
        elif s.name == "aparam" and numb_aparam:
            kw.update(ndof=numb_aparam, must=True)
        elif s.name == "drdq" and numb_generalized_coord:
            kw.update(ndof=3 * numb_generalized_coord)
        elif s.name == "spin" and spin:
            kw.update(must=True, hint=_SPIN_HINT)
        if s.name in must:
            kw["must"] = True
        out.append(LabelSpec(**{**s.__dict__, **kw}))
    return tuple(out)


def label_specs_from_config(config: dict) -> tuple[LabelSpec, ...]:
    """Label specs for a normalised input (``model.fitting_net``, ``model.spin``, ``loss``)."""
    model = config.get("model", {})
    fit = model.get("fitting_net", {})
    loss = config.get("loss", {})
    return label_specs(
        numb_fparam=fit.get("numb_fparam", 0),
        numb_aparam=fit.get("numb_aparam", 0),
        default_fparam=fit.get("default_fparam"),
        numb_generalized_coord=loss.get("numb_generalized_coord", 0),
        spin="spin" in model,
    )
