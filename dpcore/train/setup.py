"""The model to train (host side): ``sel: "auto"`` from the data, fresh parameters with data statistics
(or ``--init-model``'s), spin statistics frames, and the training keys dpcore refuses."""

from __future__ import annotations

import copy
import functools
import logging
import math
import os
import time

import numpy as np

from ..descriptor import get_descriptor

log = logging.getLogger("dpcore.train")

# training keys dpcore accepts but does not implement: (default, error if changed?)
_UNSUPPORTED = {"enable_ema": (False, True), "acc_freq": (1, True),
                "change_bias_after_training": (False, True), "zero_stage": (0, True),
                "tensorboard": (False, False), "profiling": (False, False), "enable_profiler": (False, False),
                "enable_compile": (False, False), "enable_tf32": (False, False),
                "ckpt_keep_ratio": (None, False)}


def resolve_sel(cfg: dict, systems) -> dict:
    """Copy of ``cfg`` with ``model.descriptor.sel: "auto[:f]"`` replaced from the training data: per-type counts
    ``4 * ceil(int(max_t * f) / 4)`` (SPEC 11.2), or for a mixed-type descriptor (DPA-1) one int from the largest
    **total** neighbour count (DeePMD-kit's ``update_sel`` with ``mixed_type``; SPEC_DPA1 1).  A spin model counts
    real atoms only, as DeePMD-kit does; with DPA-1 the virtual atoms then compete for those slots (warned)."""
    from ..stat.neighbor import auto_sel, data_neighbor_stat, parse_auto_sel

    d = cfg["model"]["descriptor"]
    factor = parse_auto_sel(d["sel"])
    if factor is None:
        return cfg
    cfg = copy.deepcopy(cfg)
    ntypes = len(cfg["model"]["type_map"])
    mixed = bool(get_descriptor(d["type"]).MIXED_TYPES)
    min_dist, max_nbor = data_neighbor_stat(systems, d["rcut"], ntypes, mixed_types=mixed)
    sel = auto_sel(max_nbor, factor)
    cfg["model"]["descriptor"]["sel"] = sel[0] if mixed else sel
    log.info("sel %r from the training data: max neighbours %s%s within rcut %g -> sel %s (min pair distance %.4f)",
             d["sel"], max_nbor.tolist(), " (all types)" if mixed else "", d["rcut"],
             cfg["model"]["descriptor"]["sel"], min_dist)
    if mixed and cfg["model"].get("spin") is not None:
        _warn_mixed_spin_sel(int(max_nbor[0]), sel[0], d["sel"])
    return cfg


def _warn_mixed_spin_sel(real_max: int, sel: int, asked: str) -> None:
    """SPEC_DPA1 9: a mixed-type spin backbone keeps ``sel`` (not doubled) while every real neighbour brings a
    virtual or placeholder partner into the same nearest-``sel`` list."""
    import warnings

    from ..descriptor.dpa1_config import DPA1Warning

    warnings.warn(f"model/descriptor/sel {asked!r} -> {sel} counts real atoms only (up to {real_max} neighbours), as "
                  "DeePMD-kit does; in a spin model with a mixed-type descriptor each neighbour also brings its virtual "
                  f"(or placeholder) atom into the same {sel} slots, so the list is cut. Give sel >= "
                  f"{2 * real_max + 2} (about 2 x neighbours + 2) to keep every neighbour", DPA1Warning, stacklevel=3)


def nlist_maker(model_cfg: dict):
    """``make_nlist(coord, atype, box)`` for the data's neighbour-list cache (model rcut, sel, exclusions)."""
    from ..nlist import build_neighbor_list

    d = model_cfg["descriptor"]
    return functools.partial(build_neighbor_list, rcut=d["rcut"], sel=get_descriptor(d["type"]).nlist_sel(d),
                             pair_exclude_types=model_cfg.get("pair_exclude_types", ()))


def _check_same_structure(params: dict, reference: dict, where: str, path: str = "") -> None:
    if isinstance(reference, dict):
        if not isinstance(params, dict) or set(params) != set(reference):
            got = sorted(params) if isinstance(params, dict) else type(params).__name__
            raise ValueError(f"{where}: parameters at {path or '/'} have keys {got}, "
                             f"the input's model has {sorted(reference)}")
        for k in reference:
            _check_same_structure(params[k], reference[k], where, f"{path}/{k}")
    elif np.shape(params) != np.shape(reference):
        raise ValueError(f"{where}: parameter {path} has shape {np.shape(params)}, the input's model needs "
                         f"{np.shape(reference)} (different sel/neuron/type_map?)")


def build_model_and_stats(cfg: dict, train_sampler, *, init_params: dict | None = None,
                          use_stat_file: bool = True):
    """The model to train: fresh parameters (seeded by ``training.seed``) with data statistics, or
    ``init_params`` (``--init-model``: parameters and statistics kept).

    Statistics on ``train_sampler.stat_batches(model.data_stat_nbatch)`` (SPEC 2.4, 5.3, 5.4):
    descriptor ``davg``/``dstd`` (cast to the descriptor precision; read from / stored in
    ``training.stat_file`` when given), fparam/aparam average and inverse std, and the energy
    ``out_bias`` (least squares on per-type atom counts).  A spin model's descriptor statistics and
    bias are those of its 2n-type backbone on the frames with virtual atoms (:func:`spin_stat_samples`).
    ``use_stat_file=False``: ignore ``training.stat_file`` (the data-parallel workers other than rank 0, which
    compute the same statistics and receive rank 0's, so that one process alone writes the file).
    """
    from ..stat.labels import energy_bias, fparam_aparam_stats
    from ..model.factory import model_from_config

    model = model_from_config(cfg["model"], seed=cfg["training"].get("seed"))
    if init_params is not None:
        _check_same_structure(init_params, model.params, "init-model")
        model.set_params(copy.deepcopy(init_params))
        return model
    mcfg, params = model.config, model.params  # the backbone's for a spin model
    t0 = time.perf_counter()
    samples = train_sampler.stat_batches(mcfg["data_stat_nbatch"])
    backbone_samples = spin_stat_samples(model, samples) if is_spin(model) else samples
    d, stat_file = mcfg["descriptor"], cfg["training"].get("stat_file") if use_stat_file else None
    params["descriptor"].update(get_descriptor(d["type"]).stats(mcfg, params["descriptor"], backbone_samples,
                                                                stat_file=stat_file))
    fit = mcfg["fitting_net"]
    fstats = fparam_aparam_stats(samples, fit["numb_fparam"], fit["numb_aparam"], mcfg["data_stat_protect"],
                                 fit.get("default_fparam"))
    for k, v in fstats.items():
        params["fitting"][k] = v.astype(params["fitting"][k].dtype)
    ntypes = len(mcfg["type_map"])
    if any(s.get("find_energy", 0.0) > 0 or s.get("find_atom_ener", 0.0) > 0 for s in samples):
        bias = energy_bias(backbone_samples, ntypes, mcfg.get("atom_exclude_types", ()), mcfg.get("preset_out_bias"))
        params["out_bias"] = bias["out_bias"].reshape(ntypes)
        log.info("energy bias per type %s eV (fit residual %.3g eV/atom)", np.round(params["out_bias"], 6).tolist(),
                 float(bias["rmse_per_atom"]))
    else:
        log.warning("no energy labels in the statistics frames: out_bias left at 0")
    log.info("statistics from %d frames in %.2f s", sum(s["coord"].shape[0] for s in samples), time.perf_counter() - t0)
    model.set_params(params)
    return model


def is_spin(model) -> bool:
    return getattr(model, "model_type", "standard") == "spin_ener"


def spin_stat_samples(model, samples: list) -> list:
    """Statistics frames of a spin model as its backbone sees them (DeePMD-kit's ``spin_sampled_func``):
    ``coord' = [r | r + vs * s]``, ``atype' = [t | t + n]``, ``natoms' = [2 nloc, 2 nloc, counts, counts]``
    (the virtual types are excluded atoms of the backbone, so the energy bias ignores their columns)."""
    from ..model.spin_settings import virtual_atoms

    out = []
    for s in samples:
        coord2, atype2, _ = virtual_atoms(s["coord"], s["atype"], s["spin"], model.virtual_scale_mask)
        natoms = np.asarray(s["natoms"])
        out.append({**s, "coord": coord2, "atype": atype2,
                    "natoms": np.concatenate([2 * natoms[:, :2], natoms[:, 2:], natoms[:, 2:]], axis=1)})
    return out


def check_training_section(tr: dict) -> None:
    for key, (default, fatal) in _UNSUPPORTED.items():
        value = tr.get(key, default)
        if value != default:
            msg = f"training/{key} = {value!r} is not supported by dpcore train"
            if fatal:
                raise NotImplementedError(msg)
            log.warning("%s; ignored", msg)


def steps_from_config(tr: dict, train_sampler) -> int:
    if tr.get("numb_steps") is not None:
        return int(tr["numb_steps"])
    return max(1, math.ceil(float(tr["numb_epoch"]) * len(train_sampler)))


def load_init_model(path):
    """A model file (.dp/.yaml) or a dpcore checkpoint, for ``--init-model``."""
    from ..model.factory import load
    from .checkpoint import model_from_checkpoint

    p = str(path)
    if not os.path.exists(p) and not os.path.exists(p + ".npz") and not os.path.isdir(os.path.dirname(p) or "."):
        raise FileNotFoundError(f"init-model {p!r} not found")
    if p.endswith((".dp", ".yaml", ".yml", ".h5", ".hdf5")):
        if not os.path.exists(p):
            raise FileNotFoundError(f"init-model {p!r} not found")
        model = load(p)
        if "compress" in model.config["descriptor"]:
            # the tabulated forward would bypass the embedding nets: they would get no gradient
            raise ValueError(f"init-model {p!r} is a compressed model (dpcore compress): training needs the "
                             "embedding nets; start from the model file before compression")
        return model
    return model_from_checkpoint(p)
