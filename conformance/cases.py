"""The conformance catalogue: every case is plain data, ``{"name", "model": spec, "system": spec}``.

Host side only (NumPy): nothing here imports a framework.  The runner writes the chosen cases to
``cases.json``; every backend process rebuilds the same model and system from the same specs (the
builders are deterministic for their seeds) and the runner checks that all processes saw identical
parameters and inputs (a fingerprint per case).

Model specs
    ``{"kind": "config", "config": <normalised model section>, "seed": int, "stats_seed": int | None}``
        fresh networks from ``seed``; with ``stats_seed`` the statistics (davg, dstd, out_bias,
        fparam/aparam avg and inv_std) are replaced by random NON-trivial values, so a backend that
        ignores one of them cannot pass.
        A config with a ``spin`` section builds a :class:`~dpcore.model.spin_model.SpinEnergyModel`
        (its 2n-type backbone gets the random statistics).
    ``{"kind": "file", "path": "model.dp"}``   a DeePMD-kit model file, used as stored.
    Either config spec may carry ``"compress": {"min_nbor_dist": Å, "step": .., "extrapolate": ..}``: the
        model's embedding nets are then tabulated (:func:`dpcore.descriptor.tabulate.compress_model`) after
        the statistics are set (catalogue models named ``*_compressed``, catalogue "compress").

System specs (sizes follow the model's ``rcut`` and ``sel``, so the same spec fits any model)
    ``kind``       "periodic" (box rows = lattice vectors) or "cluster" (no box, non-PBC);
    ``natoms``     real atoms (None: from ``density`` and the box);
    ``box_scale``  periodic cube edge in units of ``rcut`` before skewing (None: from natoms/density);
    ``density``    atoms / Å^3, or "auto" = min(0.1, half of ``sum(sel)`` per cut-off sphere);
    ``triclinic``  skew the off-diagonal box entries by up to 25 % of the edge;
    ``nframes``, ``seed``, ``min_dist`` (Å), ``padding`` (extra atoms of type -1),
    ``types``      "random" (one shuffled type list for all frames) or "per_frame" (2-D atype);
    ``fparam``     "auto" (random values when the model has numb_fparam > 0) or "omit" (use default_fparam).
    Spin models also get ``spin`` (nf, n, 3): random directions, magnitudes uniform in [0.5, 2] μB.
"""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np

# A normalised model section (all defaults filled, SPEC 11); catalogue models override a few keys.
BASE_MODEL = {
    "type_map": ["O", "H"],
    "descriptor": {
        "type": "se_e2_a", "sel": [16, 16], "rcut": 4.0, "rcut_smth": 0.5, "neuron": [4, 8, 16], "axis_neuron": 4,
        "activation_function": "tanh", "resnet_dt": False, "type_one_side": False, "precision": "float64",
        "trainable": True, "seed": None, "exclude_types": [], "env_protection": 0.0, "set_davg_zero": False,
    },
    "fitting_net": {
        "type": "ener", "numb_fparam": 0, "numb_aparam": 0, "default_fparam": None, "dim_case_embd": 0,
        "neuron": [16, 16], "activation_function": "tanh", "precision": "float64", "resnet_dt": True,
        "trainable": True, "rcond": None, "seed": None, "atom_ener": [], "use_aparam_as_mask": False,
    },
    "pair_exclude_types": [], "atom_exclude_types": [], "preset_out_bias": None, "data_stat_nbatch": 10,
    "data_stat_protect": 0.01,
}

THREE_TYPES = {"type_map": ["O", "H", "C"], "descriptor": {"sel": [12, 12, 8]}}

# name -> (overrides of BASE_MODEL, network seed)
MODELS = {
    "two_side": ({}, 11),
    "one_side": ({"descriptor": {"type_one_side": True}}, 12),
    "float32": ({"descriptor": {"precision": "float32"}, "fitting_net": {"precision": "float32"}}, 13),
    "mixed_precision": ({"descriptor": {"precision": "float32"}, "fitting_net": {"precision": "float64"}}, 14),
    "fparam_aparam": ({"fitting_net": {"numb_fparam": 2, "numb_aparam": 2}}, 15),
    "default_fparam": ({"fitting_net": {"numb_fparam": 2, "default_fparam": [0.5, -0.3]}}, 16),
    "exclusions": ({**THREE_TYPES, "descriptor": {"sel": [12, 12, 8], "exclude_types": [[0, 1]]},
                    "pair_exclude_types": [[1, 2]], "atom_exclude_types": [2]}, 17),
    "activations": ({**THREE_TYPES, "descriptor": {"sel": [12, 12, 8], "activation_function": "gelu",
                                                   "resnet_dt": True, "env_protection": 0.01},
                     "fitting_net": {"activation_function": "softplus", "neuron": [12, 24]}}, 18),
    "dense": ({"descriptor": {"rcut": 3.5, "rcut_smth": 1.0, "sel": [64, 64]}}, 19),
    # spin models (SPEC 7.1): backbone of 2n types, sel doubled, env_protection 0 -> 0.01
    "spin": ({"type_map": ["Ni", "O"], "descriptor": {"sel": [40, 40]},
              "spin": {"use_spin": [True, False], "virtual_scale": [0.3], "scheme": "deepspin",
                       "allow_missing_label": False}}, 20),
    "spin_float32": ({"type_map": ["Ni", "O"], "descriptor": {"sel": [24, 24], "precision": "float32",
                                                             "type_one_side": True},
                      "fitting_net": {"precision": "float32"},
                      "spin": {"use_spin": [0], "virtual_scale": 0.35, "scheme": "deepspin",
                               "allow_missing_label": False}}, 21),
    "spin_three_types": ({"type_map": ["Fe", "Ni", "O"], "descriptor": {"sel": [12, 12, 12]},
                          "fitting_net": {"numb_fparam": 1, "numb_aparam": 1},
                          "pair_exclude_types": [[0, 2]], "atom_exclude_types": [1],
                          "spin": {"use_spin": ["Fe", "Ni"], "virtual_scale": [0.25, 0.4, 0.7], "scheme": "deepspin",
                                   "allow_missing_label": False}}, 22),
}

PERIODIC = {"kind": "periodic", "natoms": 12, "box_scale": None, "density": "auto", "triclinic": True,
            "nframes": 2, "seed": 0, "min_dist": 0.9, "padding": 0, "types": "random", "fparam": "auto"}
SYSTEMS = {
    "pbc_triclinic": dict(PERIODIC, seed=101),
    "pbc_orthorhombic": dict(PERIODIC, triclinic=False, natoms=10, seed=102),
    # cell heights ~0.45 rcut: neighbours come from 3 image shells, including images of the centre itself
    "small_box": dict(PERIODIC, natoms=2, box_scale=0.5, seed=103),
    "cluster": dict(PERIODIC, kind="cluster", natoms=10, seed=104),
    "pbc_padding": dict(PERIODIC, natoms=14, padding=2, seed=105),
    "per_frame_types": dict(PERIODIC, natoms=12, types="per_frame", seed=106),
    "no_fparam": dict(PERIODIC, fparam="omit", seed=107),
    "pbc_three_types": dict(PERIODIC, natoms=15, seed=108),
}

# (model, system) pairs; the quick catalogue covers every feature the issue lists at least once
FULL = [
    ("two_side", "pbc_triclinic"), ("dense", "small_box"), ("one_side", "cluster"), ("fparam_aparam", "pbc_triclinic"),
    ("float32", "pbc_triclinic"), ("exclusions", "pbc_three_types"),
    ("one_side", "pbc_orthorhombic"), ("float32", "cluster"), ("mixed_precision", "per_frame_types"),
    ("activations", "pbc_padding"), ("default_fparam", "no_fparam"), ("two_side", "cluster"),
    ("spin", "pbc_triclinic"), ("spin", "small_box"), ("spin", "cluster"), ("spin_float32", "pbc_orthorhombic"),
    ("spin_three_types", "pbc_padding"),
]
QUICK = FULL[:6]
SPIN = [c for c in FULL if c[0].startswith("spin")]

# -- compressed models (dpcore compress, SPEC_COMPRESS): a catalogue model with its embedding nets tabulated after
# the statistics are set.  min_nbor_dist (Å) at or below the systems' closest pairs keeps every input inside the
# tables (spin: the virtual atoms sit 0.15-0.6 Å from their atoms); "extrapolated" (min_nbor_dist 3 Å, extrapolate 2,
# pairs down to 0.3 Å) puts inputs in the coarse part and past the end of the tables, so the C1 linear
# extrapolation is compared across backends too.
COMPRESSED = {  # name -> (catalogue model, compress_model keyword arguments)
    "two_side_compressed": ("two_side", {"min_nbor_dist": 0.9}),
    "one_side_compressed": ("one_side", {"min_nbor_dist": 0.9}),
    "float32_compressed": ("float32", {"min_nbor_dist": 0.9}),
    "exclusions_compressed": ("exclusions", {"min_nbor_dist": 0.9, "step": 0.02}),
    "extrapolated_compressed": ("two_side", {"min_nbor_dist": 3.0, "extrapolate": 2}),
    "spin_compressed": ("spin", {"min_nbor_dist": 0.15}),
    "spin_float32_compressed": ("spin_float32", {"min_nbor_dist": 0.15}),
}
MODELS.update({name: MODELS[base] for name, (base, _) in COMPRESSED.items()})
SYSTEMS["close_pairs"] = dict(PERIODIC, natoms=12, min_dist=0.3, seed=109)  # pairs down to 0.3 Å
COMPRESS_CASES = [("two_side_compressed", "pbc_triclinic"), ("one_side_compressed", "cluster"),
                  ("float32_compressed", "pbc_triclinic"), ("exclusions_compressed", "pbc_three_types"),
                  ("extrapolated_compressed", "close_pairs"), ("spin_compressed", "pbc_triclinic"),
                  ("spin_float32_compressed", "pbc_orthorhombic")]
FULL += COMPRESS_CASES
SPIN += [c for c in COMPRESS_CASES if c[0].startswith("spin")]
CATALOGUES = {"quick": QUICK, "full": FULL, "spin": SPIN}
CATALOGUES["compress"] = COMPRESS_CASES

# -- DPA-1 (SPEC_DPA1): mixed-type neighbour list (``sel`` one int), type embedding, gated attention, one fitting
# net for all types.  Full normalised descriptor sections: concat without smoothing and davg != 0 (empty slots
# typed as the frame's first atom, which per_frame_types and padding atoms vary), se_atten_v2 in float32 with
# exclusions, and a spin model (sel not doubled).
DPA1_DESCRIPTOR = {
    "type": "dpa1", "sel": 48, "rcut": 4.0, "rcut_smth": 0.5, "neuron": [4, 8], "axis_neuron": 4,
    "activation_function": "tanh", "resnet_dt": False, "type_one_side": False, "precision": "float64",
    "trainable": True, "seed": None, "exclude_types": [], "env_protection": 0.0, "attn": 8, "attn_layer": 2,
    "attn_dotr": True, "attn_mask": False, "stripped_type_embedding": None, "smooth_type_embedding": False,
    "set_davg_zero": False, "trainable_ln": True, "ln_eps": None, "tebd_dim": 4, "use_econf_tebd": False,
    "use_tebd_bias": False, "tebd_input_mode": "concat", "scaling_factor": 1.0, "normalize": True,
    "temperature": None, "concat_output_tebd": True,
}
DPA1_V2_DESCRIPTOR = {k: v for k, v in DPA1_DESCRIPTOR.items()
                      if k not in ("tebd_input_mode", "stripped_type_embedding", "smooth_type_embedding")}
MODELS.update({
    "dpa1": ({"type_map": ["O", "H", "C"], "descriptor": DPA1_DESCRIPTOR,
              "fitting_net": {"neuron": [12, 12]}}, 31),
    "se_atten_v2_float32": ({**THREE_TYPES, "descriptor": {**DPA1_V2_DESCRIPTOR, "type": "se_atten_v2",
                                                           "precision": "float32", "type_one_side": True,
                                                           "exclude_types": [[0, 2]], "attn_layer": 1},
                             "fitting_net": {"precision": "float32"}, "pair_exclude_types": [[1, 2]]}, 32),
    "dpa1_spin": ({"type_map": ["Ni", "O"], "descriptor": {**DPA1_DESCRIPTOR, "sel": 80, "attn_layer": 1},
                   "spin": {"use_spin": [True, False], "virtual_scale": [0.3], "scheme": "deepspin",
                            "allow_missing_label": False}}, 33),
})
DPA1_CASES = [("dpa1", "pbc_triclinic"), ("dpa1", "per_frame_types"), ("dpa1", "pbc_padding"), ("dpa1", "cluster"),
              ("se_atten_v2_float32", "pbc_three_types"), ("se_atten_v2_float32", "cluster"),
              ("dpa1_spin", "pbc_triclinic")]
CATALOGUES["dpa1"] = DPA1_CASES
FULL += DPA1_CASES  # `dpcore conformance` (default full) covers DPA-1 energy and spin models on every backend
# (dpa1_spin stays out of SPIN: tests run "spin" and "dpa1" on all six backends, and would compile it twice)
# opt-in kinds (conformance/kinds_train.py) and the (model, system) pairs that run them, per catalogue
TRAIN_KINDS = ["loss", "loss_default_pf", "train_step"]
CASE_KINDS = {"quick": {("two_side", "pbc_triclinic"): TRAIN_KINDS[:2]},  # train_step: ~25 s of tf/jax compiling
              "full": {("two_side", "pbc_triclinic"): TRAIN_KINDS}}
USER_SYSTEMS = ["pbc_triclinic", "small_box", "cluster"]


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def model_config(name: str) -> dict:
    """The full (normalised) model section of catalogue model ``name``."""
    return _merge(BASE_MODEL, MODELS[name][0])


def model_spec(name: str) -> dict:
    """The model spec of catalogue model ``name``: its config, network seed and statistics seed."""
    spec = {"kind": "config", "config": model_config(name), "seed": MODELS[name][1], "stats_seed": MODELS[name][1] + 1000}
    if name in COMPRESSED:  # compressed after the statistics (see build_model)
        spec["compress"] = dict(COMPRESSED[name][1])
    return spec


def catalogue(which: str = "quick") -> list[dict]:
    """The cases of catalogue ``which`` ("quick" or "full")."""
    if which not in CATALOGUES:
        raise ValueError(f"unknown case catalogue {which!r}; expected one of {sorted(CATALOGUES)}")
    return [{"name": f"{m}-{s}", "model": model_spec(m), "system": dict(SYSTEMS[s]),
             **({"kinds": list(CASE_KINDS[which][m, s])} if (m, s) in CASE_KINDS.get(which, {}) else {})}
            for m, s in CATALOGUES[which]]


def user_cases(model_spec: dict, label: str) -> list[dict]:
    """A user's model (file or config spec) on the standard systems, each sized from the model's rcut and sel."""
    return [{"name": f"{label}-{s}", "model": model_spec, "system": dict(SYSTEMS[s])} for s in USER_SYSTEMS]


# ------------------------------------------------------------------------------------------------ builders
def build_model(spec: dict):
    """``EnergyModel`` (or ``SpinEnergyModel``) of a model spec (see module docstring)."""
    from dpcore import EnergyModel, SpinEnergyModel, load
    from dpcore.model.init import init_params

    if spec["kind"] == "file":
        return load(spec["path"])
    if spec["kind"] != "config":
        raise ValueError(f"unknown model spec kind {spec['kind']!r}; expected 'config' or 'file'")
    cfg = copy.deepcopy(spec["config"])
    if isinstance(cfg["descriptor"].get("sel"), str):
        raise ValueError(f"model/descriptor/sel is {cfg['descriptor']['sel']!r}: the conformance check needs "
                         "explicit neighbour capacities (a list of ints, one per type)")
    if "spin" in cfg:
        model = SpinEnergyModel.from_config(cfg, spec["seed"])
        cfg, params = model.config, model.params
    else:
        params = init_params(cfg, spec["seed"])
        model = EnergyModel(cfg, params)
    if spec.get("stats_seed") is not None:
        randomize_statistics(cfg, params, spec["stats_seed"])
    if spec.get("compress") is not None:  # {"min_nbor_dist", "step", "extrapolate"}: tabulated embedding nets
        from dpcore.descriptor.tabulate import compress_model

        compress_model(model, **spec["compress"])
    return model


def randomize_statistics(cfg: dict, params: dict, seed: int) -> None:
    """Replace the data statistics in ``params`` (in place) by random, physically shaped values.

    davg = [avg_r, 0, 0, 0] per type (zero with ``set_davg_zero``), dstd = [std_r, std_a x 3] > 0,
    out_bias ~ N(-1, 0.5) eV, fparam/aparam avg ~ N(0, 1) and inv_std ~ U(0.5, 2); dtypes are kept.
    """
    rng = np.random.default_rng(seed)
    d = params["descriptor"]
    nt, nnei, _ = d["davg"].shape
    davg = np.zeros((nt, nnei, 4))
    if not cfg["descriptor"].get("set_davg_zero", False):
        davg[..., 0] = rng.normal(0.3, 0.1, (nt, 1))
    dstd = np.repeat(rng.uniform(0.5, 1.5, (nt, 1, 2)), nnei, axis=1)[..., [0, 1, 1, 1]]
    d["davg"], d["dstd"] = davg.astype(d["davg"].dtype), dstd.astype(d["dstd"].dtype)
    params["out_bias"] = rng.normal(-1.0, 0.5, np.shape(params["out_bias"])).astype(np.asarray(params["out_bias"]).dtype)
    f = params["fitting"]
    for k in ("fparam", "aparam"):
        if f"{k}_avg" in f:
            dt = f[f"{k}_avg"].dtype
            f[f"{k}_avg"] = rng.normal(0, 1, f[f"{k}_avg"].shape).astype(dt)
            f[f"{k}_inv_std"] = rng.uniform(0.5, 2, f[f"{k}_inv_std"].shape).astype(dt)


def auto_density(model) -> float:
    """Atoms per Å^3 that fill about half of the neighbour capacity ``sum(sel)`` (at most 0.1)."""
    sphere = 4.0 / 3.0 * math.pi * model.rcut**3
    return min(0.1, 0.5 * sum(model.sel) / sphere)


def build_system(spec: dict, model) -> dict:
    """Deterministic frames for ``model``: coord (nf, n, 3) Å, atype (n,) or (nf, n), box (nf, 9) or None,
    fparam (nf, numb_fparam) / aparam (nf, n, numb_aparam) when the model uses them."""
    rng = np.random.default_rng(spec["seed"])
    ntypes, rcut = model.ntypes, model.rcut
    density = auto_density(model) if spec.get("density", "auto") == "auto" else float(spec["density"])
    natoms, nf, periodic = spec.get("natoms"), int(spec["nframes"]), spec["kind"] == "periodic"
    if spec["kind"] not in ("periodic", "cluster"):
        raise ValueError(f"unknown system kind {spec['kind']!r}; expected 'periodic' or 'cluster'")
    if natoms is None:
        natoms = max(2, round(density * (spec["box_scale"] * rcut) ** 3))
    edge = spec["box_scale"] * rcut if spec.get("box_scale") else (natoms / density) ** (1 / 3)
    coords, boxes = [], []
    for _ in range(nf):
        if periodic:
            box = np.eye(3) * edge
            if spec.get("triclinic", True):
                box = box + rng.uniform(-0.25, 0.25, (3, 3)) * edge * (1 - np.eye(3))
            frac = _place(rng, natoms + spec.get("padding", 0), box, spec.get("min_dist", 0.9))
            coords.append(frac @ box)
            boxes.append(box.ravel())
        else:
            radius = (3 * natoms / (4 * math.pi * density)) ** (1 / 3)
            coords.append(_place(rng, natoms + spec.get("padding", 0), None, spec.get("min_dist", 0.9), radius))
    atype = _types(rng, natoms, ntypes, nf, spec.get("types", "random"))
    if spec.get("padding", 0):
        pad = np.full(atype.shape[:-1] + (spec["padding"],), -1, dtype=atype.dtype)
        atype = np.concatenate([atype, pad], axis=-1)
    fcfg = model.config["fitting_net"]
    system = {"coord": np.array(coords), "atype": atype, "box": np.array(boxes) if periodic else None}
    if fcfg.get("numb_fparam", 0) > 0 and spec.get("fparam", "auto") != "omit":
        system["fparam"] = rng.normal(0.0, 1.0, (nf, fcfg["numb_fparam"]))
    if fcfg.get("numb_aparam", 0) > 0:
        system["aparam"] = rng.normal(0.0, 1.0, (nf, atype.shape[-1], fcfg["numb_aparam"]))
    if getattr(model, "model_type", "standard") == "spin_ener":
        direction = rng.normal(0.0, 1.0, (nf, atype.shape[-1], 3))
        norm = rng.uniform(0.5, 2.0, (nf, atype.shape[-1], 1))
        system["spin"] = direction / np.linalg.norm(direction, axis=-1, keepdims=True) * norm
    return system


def prepare_case(model, system: dict):
    """Host-side inputs, type blocks and atom permutation of a built system (:func:`dpcore.infer.inputs.prepare`,
    or :meth:`SpinEnergyModel.prepare` for spin models)."""
    from dpcore.infer.inputs import prepare

    args = (system["coord"], system["atype"])
    rest = (system["box"], system.get("fparam"), system.get("aparam"))
    if getattr(model, "model_type", "standard") == "spin_ener":
        return model.prepare(*args, system["spin"], *rest)
    return prepare(model, *args, *rest)


def _types(rng, natoms: int, ntypes: int, nf: int, how: str) -> np.ndarray:
    base = np.arange(natoms) % ntypes
    if how == "random":
        rng.shuffle(base)
        return base
    if how == "per_frame":
        rows = [rng.permutation(base) for _ in range(nf)]
        return np.stack(rows)
    raise ValueError(f"unknown types option {how!r}; expected 'random' or 'per_frame'")


_SHELL = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=float)


def _place(rng, n: int, box, min_dist: float, radius: float = 0.0, tries: int = 100000) -> np.ndarray:
    """n points at least ``min_dist`` apart (periodic: fractional coordinates, images of one shell checked;
    cluster: Cartesian points in a ball of ``radius``)."""
    pts: list[np.ndarray] = []
    images = None if box is None else _SHELL @ box
    for _ in range(tries):
        if len(pts) == n:
            break
        if box is None:
            cand = rng.uniform(-radius, radius, 3)
            if cand @ cand > radius * radius:
                continue
            ok = all(np.linalg.norm(cand - p) >= min_dist for p in pts)
        else:
            cand = rng.uniform(0.0, 1.0, 3)
            ok = all(np.min(np.linalg.norm((cand - p) @ box + images, axis=1)) >= min_dist for p in pts)
        if ok:
            pts.append(cand)
    if len(pts) < n:
        raise ValueError(f"could not place {n} atoms {min_dist} Å apart; lower the density or natoms")
    return np.array(pts)
