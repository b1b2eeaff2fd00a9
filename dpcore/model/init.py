"""Fresh parameters for an energy model from its (normalised) config, deterministic for a seed."""

from __future__ import annotations

import numpy as np

from ..descriptor.se_e2_a import dim_out
from ..network import get_activation, init_net
from ..precision import precision_name


def _rng(seed, *path: int) -> np.random.Generator:
    """Independent stream per network: ``default_rng([*path, seed])`` (DeePMD's child-seed scheme)."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([*path, *([seed] if isinstance(seed, int) else seed)])


def validate(cfg) -> None:
    """Checks that need the whole model config (clear errors before any array is built)."""
    d, f = cfg["descriptor"], cfg["fitting_net"]
    ntypes = len(cfg["type_map"])
    if isinstance(d["sel"], str):
        raise ValueError(f"model/descriptor/sel is {d['sel']!r}: it is resolved from the training data by `dpcore train` "
                         "(see `dpcore neighbor-stat`); give one integer per type to build a model directly")
    if len(d["sel"]) != ntypes:
        raise ValueError(f"model/descriptor/sel has {len(d['sel'])} entries but type_map has {ntypes} types")
    if not d["rcut_smth"] < d["rcut"]:
        raise ValueError(f"model/descriptor: rcut_smth ({d['rcut_smth']}) must be smaller than rcut ({d['rcut']})")
    if d["axis_neuron"] > d["neuron"][-1]:
        raise ValueError(f"model/descriptor/axis_neuron ({d['axis_neuron']}) exceeds the embedding width {d['neuron'][-1]}")
    for where, act in (("descriptor", d["activation_function"]), ("fitting_net", f["activation_function"])):
        try:
            get_activation(act)
        except ValueError as e:
            raise ValueError(f"model/{where}/activation_function: {e}") from None
    for where, p in (("descriptor", d["precision"]), ("fitting_net", f["precision"])):
        try:
            precision_name(p)
        except ValueError as e:
            raise ValueError(f"model/{where}/precision: {e}") from None
    for t in cfg.get("atom_exclude_types", []):
        if not 0 <= t < ntypes:
            raise ValueError(f"model/atom_exclude_types: type {t} outside 0..{ntypes - 1}")


def init_params(cfg, seed=None) -> dict:
    """Parameter dict of a freshly initialised model (NumPy arrays; davg 0, dstd 1, biases 0)."""
    validate(cfg)
    d, f = cfg["descriptor"], cfg["fitting_net"]
    ntypes = len(cfg["type_map"])
    nnei = sum(d["sel"])
    ddt, fdt = precision_name(d["precision"]), precision_name(f["precision"])
    dseed = d["seed"] if d.get("seed") is not None else seed
    fseed = f["seed"] if f.get("seed") is not None else seed
    n_emb = ntypes if d["type_one_side"] else ntypes * ntypes
    embedding = {str(k): init_net(_rng(dseed, 0, k), 1, d["neuron"], None, d["resnet_dt"], ddt) for k in range(n_emb)}
    in_dim = dim_out(d) + f["numb_fparam"] + (0 if f.get("use_aparam_as_mask") else f["numb_aparam"]) + f.get("dim_case_embd", 0)
    nets = {str(t): init_net(_rng(fseed, 1, t), in_dim, f["neuron"], 1, f["resnet_dt"], fdt) for t in range(ntypes)}
    fitting = {"nets": nets, "bias_atom_e": np.zeros((ntypes, 1))}
    for kind in ("fparam", "aparam"):
        n = f[f"numb_{kind}"]
        if n > 0:
            fitting[f"{kind}_avg"] = np.zeros(n, dtype=fdt)
            fitting[f"{kind}_inv_std"] = np.ones(n, dtype=fdt)
    if f.get("dim_case_embd", 0) > 0:
        fitting["case_embd"] = np.zeros(f["dim_case_embd"], dtype=fdt)
    return {
        "descriptor": {"davg": np.zeros((ntypes, nnei, 4), dtype=ddt), "dstd": np.ones((ntypes, nnei, 4), dtype=ddt),
                       "embedding": embedding},
        "fitting": fitting,
        "out_bias": np.zeros(ntypes),
        "out_std": np.ones(ntypes),
    }
