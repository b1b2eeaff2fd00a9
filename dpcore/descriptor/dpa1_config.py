"""DPA-1 configuration (SPEC_DPA1 1): input.json arguments, checks, warnings, fresh parameters, trainable mask
and data statistics.  Shared by ``dpa1``/``se_atten`` and ``se_atten_v2`` (:mod:`dpcore.descriptor.se_atten_v2`,
which forces ``tebd_input_mode: "strip"`` and ``smooth_type_embedding: true``)."""

from __future__ import annotations

import warnings

TEBD_MODES = ("concat", "strip")


class DPA1Warning(UserWarning):
    """A DPA-1 setting whose DeePMD-kit behaviour users should know (SPEC_DPA1 section 0)."""


# ------------------------------------------------------------------------------------------- arguments
def args(v2: bool = False) -> list:
    """dargs arguments of the section (DeePMD-kit 3.2 argcheck defaults: ``set_davg_zero`` true for dpa1,
    false for se_atten_v2; ``smooth_type_embedding`` false; neuron [10, 20, 40]; axis_neuron 4)."""
    from dargs import Argument

    def opt(*a, **k):
        return Argument(*a, optional=True, **k)

    common = [
        opt("sel", [int, list[int], str], default="auto"),
        opt("rcut", float, default=6.0),
        opt("rcut_smth", float, default=0.5),
        opt("neuron", list[int], default=[10, 20, 40]),
        opt("axis_neuron", int, default=4, alias=["n_axis_neuron"]),
        opt("lmax", int),
        opt("activation_function", str, default="tanh"),
        opt("resnet_dt", bool, default=False),
        opt("type_one_side", bool, default=False),
        opt("precision", str, default="default"),
        opt("trainable", bool, default=True),
        opt("seed", [int, None], default=None),
        opt("exclude_types", list[list[int]], default=[]),
        opt("env_protection", float, default=0.0),
        opt("attn", int, default=128),
        opt("attn_layer", int, default=2),
        opt("attn_dotr", bool, default=True),
        opt("attn_mask", bool, default=False),
    ]
    mode = [] if v2 else [
        opt("stripped_type_embedding", [bool, None], default=None),
        opt("smooth_type_embedding", bool, default=False, alias=["smooth_type_embdding"]),
    ]
    tail = [
        opt("set_davg_zero", bool, default=not v2),
        opt("trainable_ln", bool, default=True),
        opt("ln_eps", [float, None], default=None),
        opt("tebd_dim", int, default=8),
        opt("use_econf_tebd", bool, default=False),
        opt("use_tebd_bias", bool, default=False),
        *([] if v2 else [opt("tebd_input_mode", str, default="concat")]),
        opt("scaling_factor", float, default=1.0),
        opt("normalize", bool, default=True),
        opt("temperature", [float, None], default=None),
        opt("concat_output_tebd", bool, default=True),
    ]
    return common + mode + tail


def mode_of(cfg: dict) -> tuple[str, bool]:
    """``(tebd_input_mode, smooth)`` in effect: ``stripped_type_embedding`` (deprecated) overrides the mode;
    se_atten_v2 is always strip and smooth."""
    if cfg.get("type") == "se_atten_v2":
        return "strip", True
    mode = cfg.get("tebd_input_mode", "concat")
    if cfg.get("stripped_type_embedding") is not None:
        mode = "strip" if cfg["stripped_type_embedding"] else "concat"
    return mode, bool(cfg.get("smooth_type_embedding", False))


def nnei_of(cfg: dict) -> int:
    """Neighbour capacity: ``sel`` (an int) or ``sum(sel)`` (a list, summed as DeePMD-kit does)."""
    sel = cfg["sel"]
    return int(sel) if isinstance(sel, int) else int(sum(sel))


def check(cfg: dict, type_map: list, loc: str = "model/descriptor") -> None:
    """Rules of a normalised section (ConfigError naming the key) and the SPEC_DPA1 0 warnings."""
    from ..config.errors import SEL_AUTO, check_act_prec, check_types, finite, need

    nt, sel = len(type_map), cfg["sel"]
    if isinstance(sel, str):
        need(bool(SEL_AUTO.match(sel)), f"{loc}/sel", f"expected an int, a list of ints or 'auto' / 'auto:factor', "
             f"got '{sel}'")
    else:
        ok = sel >= 0 if isinstance(sel, int) else all(s >= 0 for s in sel) and len(sel) > 0
        need(ok, f"{loc}/sel", f"expected a non-negative int (DPA-1 neighbours of all types), got {sel}")
    need(finite(cfg["rcut"]) and cfg["rcut"] > 0, f"{loc}/rcut", f"must be > 0, got {cfg['rcut']}")
    need(0 <= cfg["rcut_smth"] < cfg["rcut"], f"{loc}/rcut_smth",
         f"must satisfy 0 <= rcut_smth < rcut = {cfg['rcut']}, got {cfg['rcut_smth']}")
    check_act_prec(cfg, loc)
    ng = cfg["neuron"][-1] if cfg["neuron"] else None
    need(ng is not None and 1 <= cfg["axis_neuron"] <= ng, f"{loc}/axis_neuron",
         f"must be in 1..neuron[-1] = {ng}, got {cfg['axis_neuron']}")
    check_types(cfg["exclude_types"], nt, f"{loc}/exclude_types", pairs=True)
    need(cfg["env_protection"] >= 0, f"{loc}/env_protection", "must be >= 0")
    need(not cfg["attn_mask"], f"{loc}/attn_mask", "true is refused by DeePMD-kit (\"old implementation of "
         "attn_mask is not supported\"); remove it or set it to false")
    need(cfg.get("lmax", 1) == 1, f"{loc}/lmax", f"the DPA-1 moment basis lmax > 1 is not supported by dpcore, got "
         f"{cfg.get('lmax')}")
    need(not cfg["use_econf_tebd"], f"{loc}/use_econf_tebd", "the electronic-configuration type embedding is not "
         "supported by dpcore yet")
    need(cfg.get("tebd_input_mode", "concat") in TEBD_MODES, f"{loc}/tebd_input_mode",
         f"expected one of {list(TEBD_MODES)}, got '{cfg.get('tebd_input_mode')}'")
    for key in ("attn", "tebd_dim"):
        need(cfg[key] >= 1, f"{loc}/{key}", f"must be >= 1, got {cfg[key]}")
    need(cfg["attn_layer"] >= 0, f"{loc}/attn_layer", f"must be >= 0, got {cfg['attn_layer']}")
    need(finite(cfg["scaling_factor"]) and cfg["scaling_factor"] > 0, f"{loc}/scaling_factor", "must be > 0")
    if isinstance(sel, list) and len(sel) > 1:  # [n] is how DeePMD-kit stores an int sel: same in both programs
        warnings.warn(f"{loc}/sel is a list {sel}: DPA-1 uses its sum ({sum(sel)}) as one capacity for neighbours "
                      "of all types (DeePMD-kit's `dp train` neighbour statistics replace a list by its first "
                      f"element, {sel[0]}); give one int", DPA1Warning, stacklevel=2)
    behaviour_warnings(cfg, davg_nonzero=not cfg["set_davg_zero"], where=loc)


def behaviour_warnings(cfg: dict, davg_nonzero: bool, where: str) -> None:
    """SPEC_DPA1 0.2-0.3: energies that depend on the first atom's type, or jump at rcut."""
    mode, smooth = mode_of(cfg)
    if davg_nonzero and (mode == "concat" or not smooth):
        warnings.warn(f"{where}: empty neighbour slots carry the type of the frame's first atom and, with a non-zero "
                      f"davg (set_davg_zero false), enter the descriptor ({mode}"
                      f"{'' if smooth else ', smooth_type_embedding false'}): energies depend on which atom is listed "
                      "first, as in DeePMD-kit", DPA1Warning, stacklevel=3)
    jumps = not smooth or (davg_nonzero and (mode == "concat" or bool(cfg.get("exclude_types"))))
    if jumps:
        why = "smooth_type_embedding is false" if not smooth else (
            "davg is non-zero with tebd_input_mode concat" if mode == "concat" else
            "davg is non-zero with descriptor exclude_types")
        warnings.warn(f"{where}: the energy is not continuous at rcut ({why}; DeePMD-kit behaves the same); use "
                      "se_atten_v2, or smooth_type_embedding true with set_davg_zero true, for a smooth model",
                      DPA1Warning, stacklevel=3)


def validate(cfg: dict, ntypes: int) -> None:
    """Checks before any array is built (``sel`` resolved)."""
    if isinstance(cfg["sel"], str):
        raise ValueError(f"model/descriptor/sel is {cfg['sel']!r}: it is resolved from the training data by `dpcore "
                         "train` (see `dpcore neighbor-stat`); give one integer to build a model directly")
    if not cfg["rcut_smth"] < cfg["rcut"]:
        raise ValueError(f"model/descriptor: rcut_smth ({cfg['rcut_smth']}) must be smaller than rcut ({cfg['rcut']})")
    if cfg["axis_neuron"] > cfg["neuron"][-1]:
        raise ValueError(f"model/descriptor/axis_neuron ({cfg['axis_neuron']}) exceeds the embedding width "
                         f"{cfg['neuron'][-1]}")
    if cfg.get("attn_mask"):
        raise NotImplementedError("model/descriptor/attn_mask: old implementation of attn_mask is not supported.")
    if mode_of(cfg)[0] not in TEBD_MODES:
        raise NotImplementedError(f"model/descriptor/tebd_input_mode {cfg.get('tebd_input_mode')!r} is not supported")
    if cfg.get("use_econf_tebd"):
        raise NotImplementedError("model/descriptor/use_econf_tebd is not supported by dpcore yet")


def nlist_sel(cfg) -> int:
    """One mixed-type block of ``nnei`` slots (an int: :func:`dpcore.nlist.build_neighbor_list` then keeps the
    nearest ``nnei`` neighbours of any type, not split by type)."""
    return nnei_of(cfg)


def spin_backbone(cfg: dict) -> dict:
    """Descriptor section of a spin model's 2n-type backbone: ``sel`` is NOT doubled for DPA-1 (SPEC_DPA1 9)."""
    return dict(cfg)


def dim_out(cfg) -> int:
    """``neuron[-1] * axis_neuron`` (+ ``tebd_dim`` with ``concat_output_tebd``)."""
    return cfg["neuron"][-1] * cfg["axis_neuron"] + (cfg["tebd_dim"] if cfg["concat_output_tebd"] else 0)


# ------------------------------------------------------------------------------------------- parameters
def init_params(cfg: dict, ntypes: int, seed=None) -> dict:
    """Fresh parameters (NumPy), deterministic for ``seed``: embedding ``child_rng(seed, 0, 0)``, strip net
    ``(seed, 0, 1)``, attention layer l ``(seed, 0, 2, l, 0|1)``, type embedding ``(seed, 1)``; layer norms
    w = 1, b = 0; davg 0, dstd 1.  Weights ``N(0, 1/sqrt(n_in + n_out))``, biases ``N(0, 1)``."""
    import math

    import numpy as np

    from ..network import child_rng, init_net
    from ..precision import precision_name
    from ..type_embedding import init_type_embedding

    ddt = precision_name(cfg["precision"])
    mode, _ = mode_of(cfg)
    nnei, dt, ng, h = nnei_of(cfg), cfg["tebd_dim"], cfg["neuron"][-1], cfg["attn"]
    in_dim = 1 if mode == "strip" else 1 + dt * (1 if cfg["type_one_side"] else 2)
    params = {"davg": np.zeros((ntypes, nnei, 4), dtype=ddt), "dstd": np.ones((ntypes, nnei, 4), dtype=ddt),
              "type_embedding": init_type_embedding((seed, 1), ntypes, dt, cfg["use_tebd_bias"], ddt),
              "embedding": {"0": init_net(child_rng(seed, 0, 0), in_dim, cfg["neuron"], None, cfg["resnet_dt"], ddt)}}
    if mode == "strip":
        strip_in = dt * (1 if cfg["type_one_side"] else 2)
        params["embedding_strip"] = {"0": init_net(child_rng(seed, 0, 1), strip_in, cfg["neuron"], None,
                                                   cfg["resnet_dt"], ddt)}

    def dense(rng, n_in, n_out):
        return {"w": rng.normal(0.0, 1.0 / math.sqrt(n_in + n_out), size=(n_in, n_out)).astype(ddt),
                "b": rng.normal(0.0, 1.0, size=(n_out,)).astype(ddt)}

    params["attention"] = {str(l): {"in_proj": dense(child_rng(seed, 0, 2, l, 0), ng, 3 * h),
                                    "out_proj": dense(child_rng(seed, 0, 2, l, 1), h, ng),
                                    "layer_norm": {"w": np.ones(ng, dtype=ddt), "b": np.zeros(ng, dtype=ddt)}}
                           for l in range(cfg["attn_layer"])}
    return params


def trainable_mask(cfg: dict, params: dict) -> dict:
    """Networks, type embedding and attention follow ``trainable``; layer norms also need ``trainable_ln``;
    ``davg``/``dstd`` are never trained."""
    tr = bool(cfg.get("trainable", True))
    ln = tr and bool(cfg.get("trainable_ln", True))

    def all_of(tree, flag):
        return {k: all_of(v, flag) for k, v in tree.items()} if isinstance(tree, dict) else flag

    mask = {k: all_of(v, tr) for k, v in params.items() if k not in ("davg", "dstd", "attention")}
    mask.update(davg=False, dstd=False, attention={
        l: {"in_proj": all_of(layer["in_proj"], tr), "out_proj": all_of(layer["out_proj"], tr),
            "layer_norm": all_of(layer["layer_norm"], ln)} for l, layer in params.get("attention", {}).items()})
    return mask


def stats(model_cfg: dict, params: dict, batches, stat_file=None) -> dict:
    """``{"davg", "dstd"}`` from the environment matrices of the statistics frames on the mixed-type neighbour
    list (DeePMD-kit's ``EnvMatStatSe`` with ``mixed_types``: per centre type over all nnei slots), in the
    descriptor precision; ``davg`` stays 0 with ``set_davg_zero``."""
    from ..stat.descriptor import descriptor_stats

    davg, dstd = descriptor_stats(model_cfg, batches, stat_file=stat_file)
    ddt = params["davg"].dtype
    return {"davg": davg.astype(ddt), "dstd": dstd.astype(ddt)}
