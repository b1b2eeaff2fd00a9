"""Spin settings of the "deepspin" model (SPEC 7.1, 11.4), in one place: the ``model.spin`` section
(its input.json keys, forms and validation), the 2n-type backbone's model section, and the virtual atoms.
Used by the config checker, training and :class:`dpcore.model.spin_model.SpinEnergyModel`.  Host side, NumPy.

``model.spin`` forms:

* ``use_spin``: per-type bools (one per ``type_map`` entry), or magnetic type indices, or element symbols;
* ``virtual_scale`` (Å/μB): a float (all types), one float per type, or one per magnetic type (in type
  order); a JSON integer is refused as in DeePMD-kit ("Invalid virtual scale type"); magnetic types need
  ``virtual_scale > 0``;
* the TensorFlow form ``spin_norm`` + ``virtual_len`` (one per magnetic type) is converted,
  ``virtual_scale = virtual_len / spin_norm``, and, as in DeePMD-kit's TensorFlow model, the magnetic
  types must come first in ``type_map``.

Backbone (``get_spin_model`` of DeePMD-kit): type_map + ``"<name>_spin"`` (2n types; type ``t + n`` is
the virtual partner of ``t``, a *placeholder* when ``t`` is not magnetic); pair exclusions
``(placeholder, any type)`` + the model's ``pair_exclude_types``, used both as the model-level
``pair_exclude_types`` and as the descriptor ``exclude_types``; ``atom_exclude_types`` = all types ``>= n``
+ the user's; the descriptor's own backbone rule (se_e2_a: ``sel + sel``); ``env_protection`` 0.01 when
missing or 0.0 (the PyTorch rule).

Virtual atoms: atom ``i`` of type ``t`` with spin ``s_i`` gets a partner of type ``t + n`` at
``r_i + vs_t * s_i`` (``vs_t = 0`` for non-magnetic types: the placeholder sits on the atom and is excluded).
"""

from __future__ import annotations

import copy
import math

import numpy as np

from ..descriptor import get_descriptor


def args() -> list:
    """dargs arguments of the ``model.spin`` section."""
    from dargs import Argument

    def opt(*a, **k):
        return Argument(*a, optional=True, **k)

    return [
        Argument("use_spin", [list[bool], list[int], list[str]]),
        opt("virtual_scale", [float, list[float]]),
        opt("spin_norm", list[float]),
        opt("virtual_len", list[float]),
        opt("scheme", str, default="deepspin"),
        opt("allow_missing_label", bool, default=False),
    ]


def check(sp: dict, tm: list[str]) -> None:
    """Config rules of a normalised ``model.spin`` section (ConfigError naming the key); the TensorFlow form
    gains ``virtual_scale`` (= virtual_len / spin_norm)."""
    from ..config.errors import need

    loc, nt = "model/spin", len(tm)
    use = sp["use_spin"]
    if all(isinstance(u, bool) for u in use):
        need(len(use) == nt, f"{loc}/use_spin",
             f"expected {nt} booleans (one per type in {tm}), got {use}")
        nspin = sum(use)
    elif all(isinstance(u, int) for u in use):
        need(all(0 <= u < nt for u in use), f"{loc}/use_spin", f"type indices must be in 0..{nt - 1}")
        nspin = len(set(use))
    else:
        need(all(u in tm for u in use), f"{loc}/use_spin",
             f"element names must be in type_map {tm}, got {use}")
        nspin = len(set(use))
    need(sp["scheme"] == "deepspin", f"{loc}/scheme",
          f"only 'deepspin' is supported ('native' is for DPA4/SeZM), got '{sp['scheme']}'")
    tf = [k for k in ("spin_norm", "virtual_len") if k in sp]
    if tf:
        need(len(tf) == 2, loc, "the TensorFlow form needs both 'spin_norm' and 'virtual_len'")
        for k in tf:
            need(len(sp[k]) == nspin and all(x > 0 for x in sp[k]), f"{loc}/{k}",
                 f"expected {nspin} positive numbers (one per magnetic type), got {sp[k]}")
        conv = [vl / sn for vl, sn in zip(sp["virtual_len"], sp["spin_norm"])]
        if "virtual_scale" in sp:
            vs = sp["virtual_scale"]
            need(isinstance(vs, list) and len(vs) == nspin
                 and all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(vs, conv)),
                 f"{loc}/virtual_scale",
                 f"{vs} contradicts virtual_len / spin_norm = {conv}; give one form")
        else:
            sp["virtual_scale"] = conv
    need("virtual_scale" in sp, f"{loc}/virtual_scale",
          "required for the deepspin model (or give the TensorFlow form spin_norm + virtual_len)")
    vs = sp["virtual_scale"]
    if isinstance(vs, list):
        need(len(vs) in (nt, nspin), f"{loc}/virtual_scale",
             f"expected {nt} (one per type) or {nspin} (one per magnetic type) numbers, "
             f"got {len(vs)}")


PROTECTION_DEFAULT = 0.01  # env_protection of a spin model whose input has none (or 0.0), as DeePMD-kit PyTorch


# ------------------------------------------------------------------------------------------- the spin section
def normalize_use_spin(use_spin, type_map) -> list[bool]:
    """Per-type bools from any of the three ``use_spin`` forms (bools, type indices, element symbols)."""
    n = len(type_map)
    if not isinstance(use_spin, (list, tuple)):
        raise ValueError(f"model/spin/use_spin: expected a list, got {use_spin!r}")
    if all(isinstance(u, (bool, np.bool_)) for u in use_spin):
        if len(use_spin) != n:
            raise ValueError(f"model/spin/use_spin: expected {n} booleans (one per type in {list(type_map)}), "
                             f"got {list(use_spin)}")
        return [bool(u) for u in use_spin]
    if all(isinstance(u, str) for u in use_spin):
        unknown = [u for u in use_spin if u not in type_map]
        if unknown:
            raise ValueError(f"model/spin/use_spin: element(s) {unknown} absent from type_map {list(type_map)}")
        use_spin = [list(type_map).index(u) for u in use_spin]
    if all(isinstance(u, (int, np.integer)) and not isinstance(u, bool) for u in use_spin):
        bad = [u for u in use_spin if not 0 <= u < n]
        if bad:
            raise ValueError(f"model/spin/use_spin: type indices {bad} outside 0..{n - 1} (type_map {list(type_map)})")
        return [t in set(int(u) for u in use_spin) for t in range(n)]
    raise ValueError(f"model/spin/use_spin: expected booleans, type indices or element symbols (one form), "
                     f"got {list(use_spin)}")


def expand_virtual_scale(virtual_scale, use_spin: list[bool]) -> list[float]:
    """One virtual_scale per real type from a float, a per-type list or a per-magnetic-type list (SPEC 7.1)."""
    n, nspin = len(use_spin), sum(use_spin)
    if isinstance(virtual_scale, (list, tuple, np.ndarray)):
        vs = [float(v) for v in virtual_scale]
        if len(vs) == n:
            out = vs
        elif len(vs) == nspin:
            it = iter(vs)
            out = [next(it) if u else 0.0 for u in use_spin]
        else:
            raise ValueError(f"model/spin/virtual_scale: Invalid length of virtual_scale for spin atoms: expected "
                             f"{n} (one per type) or {nspin} (one per magnetic type) but got {len(vs)}")
    elif isinstance(virtual_scale, (float, np.floating)):
        out = [float(virtual_scale)] * n
    else:
        hint = f" (write {float(virtual_scale)!r})" if isinstance(virtual_scale, int) and not isinstance(virtual_scale, bool) else ""
        raise ValueError(f"model/spin/virtual_scale: Invalid virtual scale type: {type(virtual_scale).__name__} "
                         f"{virtual_scale!r}; expected a float or a list of floats{hint}")
    bad = [t for t, (u, v) in enumerate(zip(use_spin, out)) if u and not (math.isfinite(v) and v > 0)]
    if bad:
        raise ValueError(f"model/spin/virtual_scale: magnetic type(s) {bad} need a finite virtual_scale > 0 "
                         f"(the virtual atom would sit on the real atom), got {out}")
    return out


def spin_settings(spin_cfg: dict, type_map) -> dict:
    """``{"use_spin": [bool]*n, "virtual_scale": [float]*n}`` from a (normalised) ``model.spin`` section."""
    use_spin = normalize_use_spin(spin_cfg["use_spin"], type_map)
    if spin_cfg.get("scheme", "deepspin") != "deepspin":
        raise ValueError(f"model/spin/scheme: only 'deepspin' is supported, got {spin_cfg.get('scheme')!r}")
    if spin_cfg.get("allow_missing_label", False):
        raise ValueError("model/spin/allow_missing_label: must be false for the deepspin scheme "
                         "(a system without spin.npy cannot be used)")
    vs = spin_cfg.get("virtual_scale")
    if "spin_norm" in spin_cfg or "virtual_len" in spin_cfg:
        nspin = sum(use_spin)
        if use_spin != [True] * nspin + [False] * (len(use_spin) - nspin):
            raise ValueError(f"model/spin/use_spin: the TensorFlow form (spin_norm, virtual_len) needs the magnetic "
                             f"types first in type_map, as in DeePMD-kit's TensorFlow spin model; got use_spin "
                             f"{use_spin} for type_map {list(type_map)}. Reorder type_map, or give virtual_scale "
                             "instead of spin_norm/virtual_len")
        sn, vl = spin_cfg.get("spin_norm"), spin_cfg.get("virtual_len")
        if sn is None or vl is None or len(sn) != nspin or len(vl) != nspin:
            raise ValueError(f"model/spin: the TensorFlow form needs spin_norm and virtual_len with one value per "
                             f"magnetic type ({nspin}), got spin_norm {sn}, virtual_len {vl}")
        conv = [float(a) / float(b) for a, b in zip(vl, sn)]
        if vs is not None and not (isinstance(vs, list) and len(vs) == nspin
                                   and all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(vs, conv))):
            raise ValueError(f"model/spin/virtual_scale: {vs} contradicts virtual_len / spin_norm = {conv}; give one form")
        vs = conv
    if vs is None:
        raise ValueError("model/spin/virtual_scale: required for the deepspin model "
                         "(or give the TensorFlow form spin_norm + virtual_len)")
    return {"use_spin": use_spin, "virtual_scale": expand_virtual_scale(vs, use_spin)}


def backbone_config(model_cfg: dict, use_spin: list[bool]) -> dict:
    """The 2n-type backbone ``model`` section (SPEC 7.1 construction steps 1-5) of a normalised spin model
    section (``sel`` already a list); the ``spin`` key is dropped."""
    cfg = copy.deepcopy(model_cfg)
    cfg.pop("spin", None)
    type_map = list(cfg["type_map"])
    n = len(type_map)
    d = cfg["descriptor"]
    if isinstance(d["sel"], str):
        raise ValueError(f"model/descriptor/sel is {d['sel']!r}: it is resolved from the training data by `dpcore "
                         "train` (see `dpcore neighbor-stat`); give one integer per type to build a model directly")
    if d.get("exclude_types"):
        raise ValueError(f"model/descriptor/exclude_types {d['exclude_types']}: a spin model takes its pair "
                         "exclusions from model/pair_exclude_types (DeePMD-kit replaces the descriptor's own list "
                         "by it, silently); move them there")
    placeholder = [t + n for t in range(n) if not use_spin[t]]
    pairs = [[p, q] for p in placeholder for q in range(2 * n)]
    pairs += [[int(a), int(b)] for a, b in cfg.get("pair_exclude_types") or []]
    cfg["type_map"] = type_map + [name + "_spin" for name in type_map]
    cfg["pair_exclude_types"] = copy.deepcopy(pairs)
    d["exclude_types"] = copy.deepcopy(pairs)
    cfg["atom_exclude_types"] = sorted(set(range(n, 2 * n)) | {int(t) for t in cfg.get("atom_exclude_types") or []})
    if not d.get("env_protection"):
        d["env_protection"] = PROTECTION_DEFAULT
    cfg["descriptor"] = get_descriptor(d["type"]).spin_backbone(d)  # se_e2_a: one sel block per backbone type
    pob = cfg.get("preset_out_bias")
    if pob:
        cfg["preset_out_bias"] = {k: list(v) + [None] * n for k, v in pob.items()}
    return cfg


def virtual_scale_mask(settings: dict) -> np.ndarray:
    """(n,) float64: virtual_scale of magnetic types, 0 for the others."""
    return np.asarray(settings["virtual_scale"], dtype=np.float64) * np.asarray(settings["use_spin"], dtype=np.float64)


def virtual_atoms(coord, atype, spin, vs_mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The backbone's 2·nloc atoms ``[reals | virtuals]``.

    coord, spin (nf, nloc, 3); atype (nf, nloc) (-1 = padding); vs_mask (n,) from :func:`virtual_scale_mask`.
    Returns coord' (nf, 2 nloc, 3) = ``[r | r + vs * s]``, atype' (nf, 2 nloc) = ``[t | t + n]`` (padding
    stays -1) and the per-atom scale ``vs`` (nf, nloc) (0 for padding and non-magnetic atoms).
    """
    n = len(vs_mask)
    real = atype >= 0
    vs = np.where(real, vs_mask[np.where(real, atype, 0)], 0.0)
    coord2 = np.concatenate([coord, coord + vs[..., None] * spin], axis=1)
    atype2 = np.concatenate([atype, np.where(real, atype + n, -1)], axis=1)
    return coord2, atype2, vs
