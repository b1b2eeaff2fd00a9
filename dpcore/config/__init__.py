"""input.json schema and normalisation (SPEC 11; DeePMD-kit 3.2 argcheck defaults and aliases).

>>> cfg = normalize_config(json.load(open("input.json")))   # validated, defaults filled
>>> write_normalized(cfg, "out.json")

:func:`normalize_config` resolves aliases to canonical names, drops keys that
start with ``_``, fills every default and checks types, required keys,
unknown keys and the rules argcheck cannot express (mutually exclusive keys,
list lengths against ``type_map``, value ranges).  Every problem raises
:class:`ConfigError` whose message starts with the location, e.g.
``model/descriptor/sel: ...``; an unknown key gets the closest valid key *of
that section* (``loss`` of type ``ener_spin``: ``start_pref_f`` -> ``start_pref_fr``).

The structure is declared with ``dargs`` (imported lazily; ``pip install dpcore[train]``);
dargs normalises, and the error reporting is ours.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Optional

__all__ = [
    "ConfigError",
    "normalize_config",
    "load_config",
    "write_normalized",
    "NormalizedConfig",
    "ACTIVATIONS",
    "PRECISIONS",
]

ACTIVATIONS = ("tanh", "relu", "relu6", "softplus", "sigmoid", "silu", "gelu", "gelu_tf",
               "none", "linear", "silut")
PRECISIONS = ("default", "float16", "float32", "float64", "bfloat16", "half", "single", "double")
# DeePMD-kit choices dpcore deliberately does not implement (clearer than "unknown").
_NOT_IMPLEMENTED = {
    "se_e2_r", "se_r", "se_e3", "se_at", "se_a_3be", "se_t", "se_atten", "dpa1", "se_atten_v2",
    "dpa2", "dpa3", "hybrid", "se_e3_tebd", "loc_frame", "se_a_tpe", "se_a_ebd", "se_a_mask",
    "dipole", "polar", "dos", "property", "tensor", "AdamW", "LKF", "AdaMuon", "HybridMuon",
}
# model keys of DeePMD-kit that dpcore does not implement
_MODEL_UNSUPPORTED = ("use_srtab", "smin_alpha", "sw_rmin", "sw_rmax", "srtab_add_bias",
                      "type_embedding", "modifier", "compress", "finetune_head",
                      "model_branch_alias")


class ConfigError(ValueError):
    """Invalid input; the message starts with the location (``model/descriptor/sel: ...``)."""


class NormalizedConfig(dict):
    """A normalised input dict that remembers the file it was read from (``source_path``)."""

    source_path: str | None = None


def _dargs():
    try:
        import dargs
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "checking input.json needs dargs; install it with `pip install dpcore[train]`"
        ) from exc
    return dargs


# ----------------------------------------------------------------------------- schema
@functools.lru_cache(maxsize=1)
def schema():
    """The dargs ``Argument`` tree of the whole input (root name ``input``)."""
    A, V = _dargs().Argument, _dargs().Variant
    opt = functools.partial(A, optional=True)
    Num = [float, int]

    se_e2_a = [
        opt("sel", [list[int], str], default="auto"),
        opt("rcut", float, default=6.0),
        opt("rcut_smth", float, default=0.5),
        opt("neuron", list[int], default=[10, 20, 40]),
        opt("axis_neuron", int, default=4, alias=["n_axis_neuron"]),
        opt("activation_function", str, default="tanh"),
        opt("resnet_dt", bool, default=False),
        opt("type_one_side", bool, default=False),
        opt("precision", str, default="default"),
        opt("trainable", bool, default=True),
        opt("seed", [int, None], default=None),
        opt("exclude_types", list[list[int]], default=[]),
        opt("env_protection", float, default=0.0),
        opt("set_davg_zero", bool, default=False),
    ]
    ener_fit = [
        opt("numb_fparam", int, default=0),
        opt("numb_aparam", int, default=0),
        opt("default_fparam", [list[float], None], default=None),
        opt("dim_case_embd", int, default=0),
        opt("neuron", list[int], default=[120, 120, 120], alias=["n_neuron"]),
        opt("activation_function", str, default="tanh"),
        opt("precision", str, default="default"),
        opt("resnet_dt", bool, default=True),
        opt("trainable", [list[bool], bool], default=True),
        opt("rcond", [float, None], default=None),
        opt("seed", [int, None], default=None),
        opt("atom_ener", list[Optional[float]], default=[]),
        opt("layer_name", list),
        opt("use_aparam_as_mask", bool, default=False),
    ]
    spin = [
        A("use_spin", [list[bool], list[int], list[str]]),
        opt("virtual_scale", [float, list[float]]),
        opt("spin_norm", list[float]),
        opt("virtual_len", list[float]),
        opt("scheme", str, default="deepspin"),
        opt("allow_missing_label", bool, default=False),
    ]
    model = A("model", dict, [
        A("type_map", list[str]),
        A("descriptor", dict, sub_variants=[V("type", [A("se_e2_a", dict, se_e2_a, alias=["se_a"])])]),
        A("fitting_net", dict, sub_variants=[
            V("type", [A("ener", dict, ener_fit)], optional=True, default_tag="ener")]),
        opt("spin", dict, spin),
        opt("data_stat_nbatch", int, default=10),
        opt("data_stat_protect", float, default=1e-2),
        opt("data_bias_nsample", int, default=10),
        opt("pair_exclude_types", list[list[int]], default=[]),
        opt("atom_exclude_types", list[int], default=[]),
        opt("preset_out_bias", [dict, None], default=None),
        opt("type", str, default="standard"),
        opt("info", dict),
        *[opt(k, object) for k in _MODEL_UNSUPPORTED],
    ])

    def pref(name, start, limit):
        return [opt(f"start_pref_{name}", Num, default=start),
                opt(f"limit_pref_{name}", Num, default=limit)]

    ener_loss = [
        *pref("e", 0.02, 1.0), *pref("f", 1000, 1.0), *pref("v", 0.0, 0.0), *pref("h", 0.0, 0.0),
        *pref("ae", 0.0, 0.0), *pref("pf", 0.0, 0.0),
        opt("use_default_pf", bool, default=False),
        opt("relative_f", [float, None]),
        opt("enable_atom_ener_coeff", bool, default=False),
        *pref("gf", 0.0, 0.0),
        opt("numb_generalized_coord", int, default=0),
        opt("use_huber", bool, default=False),
        opt("loss_func", str, default="mse"),
        opt("f_use_norm", bool, default=False),
        opt("huber_delta", [float, list[float]], default=0.01),
        opt("intensive_ener_virial", bool, default=False),
    ]
    spin_loss = [
        *pref("e", 0.02, 1.0), *pref("fr", 1000, 1.0), *pref("fm", 10000, 10.0),
        *pref("v", 0.0, 0.0), *pref("ae", 0.0, 0.0), *pref("pf", 0.0, 0.0),
        opt("relative_f", [float, None]),
        opt("enable_atom_ener_coeff", bool, default=False),
        opt("loss_func", str, default="mse"),
        opt("intensive_ener_virial", bool, default=False),
    ]
    loss = opt("loss", dict, sub_variants=[V("type", [
        A("ener", dict, ener_loss, alias=["ener_hess"]), A("ener_spin", dict, spin_loss)],
        optional=True, default_tag="ener")], default={})

    def lr_common():
        return [
            A("start_lr", float),
            opt("stop_lr", [float, None], default=None),
            opt("stop_lr_ratio", [float, None], default=None),
            opt("warmup_steps", int, default=0),
            opt("warmup_ratio", [float, None], default=None),
            opt("warmup_start_factor", float, default=0.0),
            opt("scale_by_worker", str, default="linear"),
        ]

    lr = A("learning_rate", dict, sub_variants=[V("type", [
        A("exp", dict, [*lr_common(), opt("decay_steps", int, default=5000),
                        opt("decay_rate", [float, None], default=None),
                        opt("smooth", bool, default=False)]),
        A("cosine", dict, lr_common()),
        A("wsd", dict, [*lr_common(), opt("decay_phase_ratio", float, default=0.1),
                        opt("decay_type", str, default="inverse_linear")]),
    ], optional=True, default_tag="exp")])
    optimizer = opt("optimizer", dict, sub_variants=[V("type", [A("Adam", dict, [
        opt("adam_beta1", float, default=0.9), opt("adam_beta2", float, default=0.999),
        opt("weight_decay", float, default=0.0)])], optional=True, default_tag="Adam")],
        default={})

    def data_args(validation: bool):
        out = [
            A("systems", [str, list[str]]),
            opt("rglob_patterns", [list[str], None], default=None),
            opt("batch_size", [list[int], int, str], default="auto"),
            opt("auto_prob", str, default="prob_sys_size", alias=["auto_prob_style"]),
            opt("sys_probs", [list[float], None], default=None, alias=["sys_weights"]),
        ]
        if validation:
            out.append(opt("numb_btch", int, default=1, alias=["numb_batch"]))
        else:
            out.append(opt("min_pair_dist", float, default=0.0))
        return out

    training = A("training", dict, [
        A("training_data", dict, data_args(False)),
        opt("validation_data", [dict, None], data_args(True), default=None),
        opt("numb_steps", int, alias=["stop_batch", "num_step", "num_steps", "numb_step"]),
        opt("numb_epoch", [int, float], alias=["num_epochs", "num_epoch", "numb_epochs"]),
        opt("seed", [int, None], default=None),
        opt("disp_file", str, default="lcurve.out"),
        opt("disp_freq", int, default=1000),
        opt("save_freq", int, default=1000),
        opt("save_dir", [str, None], default=None),
        opt("save_ckpt", str, default="model.ckpt"),
        opt("max_ckpt_keep", int, default=5),
        opt("ckpt_keep_ratio", [float, None], default=None),
        opt("disp_training", bool, default=True),
        opt("time_training", bool, default=True),
        opt("disp_avg", bool, default=False),
        opt("stat_file", str),
        opt("stat_file_mode", str, default="update"),
        opt("enable_ema", bool, default=False),
        opt("ema_decay", float, default=0.999),
        opt("change_bias_after_training", bool, default=False),
        opt("gradient_max_norm", float),
        opt("acc_freq", int, default=1),
        opt("tensorboard", bool, default=False),
        opt("tensorboard_log_dir", str, default="log"),
        opt("tensorboard_freq", int, default=1),
        opt("profiling", bool, default=False),
        opt("profiling_file", str, default="timeline.json"),
        opt("enable_profiler", bool, default=False),
        opt("mixed_precision", dict, [A("compute_prec", str),
                                      opt("output_prec", str, default="float32")]),
        opt("zero_stage", int, default=0),
        opt("neighbor_graph_method", str, default="auto"),
        opt("enable_compile", bool, default=False),
        opt("enable_tf32", bool, default=False),
    ])
    return A("input", dict, [model, lr, loss, optimizer, training])


# ------------------------------------------------------------------- error reporting
def _loc(path, name: str | None = None) -> str:
    parts = [p for p in (*(path or ()), *([name] if name else ())) if p != "input"]
    return "/".join(parts) if parts else "(top level)"


def _type_names(arg) -> str:
    names = []
    for d in arg.dtype:
        n = "null" if d is type(None) else (d.__name__ if isinstance(d, type) else str(d))
        names.append(n.replace("typing.", "").replace("Optional[float]", "float|null"))
    return "|".join(sorted(names))


def _short(value: Any) -> str:
    text = json.dumps(value) if _jsonable(value) else repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def suggest(key: str, allowed: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest key of ``allowed`` (declaration order).

    Candidates are ranked by difflib similarity, then by the length of the common
    prefix, then by declaration order — so in ``ener_spin`` ``start_pref_f`` gives
    ``start_pref_fr`` (same prefix, declared before ``start_pref_fm``), not
    ``start_pref_pf`` (same similarity, shorter common prefix).
    """
    def prefix(a: str, b: str) -> int:
        return len(os.path.commonprefix([a, b]))

    scored = []
    for i, cand in enumerate(allowed):
        r = difflib.SequenceMatcher(None, key, cand).ratio()
        if r >= 0.6:
            scored.append((-round(r, 6), -prefix(key, cand), i, cand))
    return f"; did you mean '{min(scored)[3]}'?" if scored else ""


def _from_dargs(exc) -> ConfigError:
    """Re-word a dargs ArgumentError with its location first."""
    msg = exc.message or str(exc)
    m = re.match(r"key `([^`]+)` (.*)", msg, re.S)
    path = exc.path.split("/") if exc.path else []
    if m:
        name, rest = m.groups()
        loc = _loc(path if path and path[-1] == name else [*path, name])
        return ConfigError(f"{loc}: {rest}")
    return ConfigError(f"{_loc(path)}: {msg}")


def _variant_hook(vrnt, argdict: dict, path) -> None:
    flag = vrnt.flag_name
    choices = [*vrnt.choice_dict, *vrnt.choice_alias]
    if flag not in argdict:
        if not vrnt.optional:
            raise ConfigError(f"{_loc(path, flag)}: required key missing (expected one of {choices})")
        return
    tag = argdict[flag]
    loc = _loc(path, flag)
    if not isinstance(tag, str):
        raise ConfigError(f"{loc}: expected a string, one of {choices}; got {_short(tag)}")
    if tag in choices:
        return
    if tag in _NOT_IMPLEMENTED:
        raise ConfigError(
            f"{loc}: '{tag}' is a DeePMD-kit option that dpcore does not implement; "
            f"supported: {choices}"
        )
    raise ConfigError(f"{loc}: unknown {flag} '{tag}'; expected one of {choices}"
                      + suggest(tag, choices))


def _alias_hook(arg, argdict: dict, path) -> None:
    given = [k for k in (arg.name, *arg.alias) if k in argdict]
    if len(given) > 1:
        raise ConfigError(
            f"{_loc(path, arg.name)}: given more than once as {given} (aliases of "
            f"'{arg.name}'); keep one"
        )


def _required_hook(arg, argdict: dict, path) -> None:
    if not arg.optional and arg.name not in argdict:
        raise ConfigError(f"{_loc(path, arg.name)}: required key missing "
                          f"(expected <{_type_names(arg)}>)")


def _type_hook(arg, value, path) -> None:
    loc = _loc(path, arg.name)
    dargs = _dargs()
    numeric = any(t in (int, float) for t in arg.dtype)
    bad = isinstance(value, bool) and bool not in arg.dtype and numeric
    if not bad and object not in arg.dtype:
        try:
            arg._check_data(value, path)
        except dargs.dargs.ArgumentError:
            bad = True
    if bad:
        raise ConfigError(f"{loc}: expected <{_type_names(arg)}>, got {_short(value)}")


def _strict_hook(arg, value: dict, path) -> None:
    allowed = list(arg.flatten_sub(value, path))
    if not allowed:
        return  # a free-form dict (info, preset_out_bias)
    for key in value:
        if key not in allowed:
            raise ConfigError(
                f"{_loc(path)}: unknown key '{key}'" + suggest(key, allowed)
            )


def _traverse(value: dict, **hooks) -> None:
    dargs = _dargs()
    try:
        schema().traverse_value(value, path=[], **hooks)
    except dargs.dargs.ArgumentError as exc:
        raise _from_dargs(exc) from None


# ------------------------------------------------------------------------ value rules
def _need(cond: bool, loc: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{loc}: {msg}")


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


_BATCH_RE = re.compile(r"^(auto(:\d+)?|max:\d+|filter:\d+)$")
_PROB_RE = re.compile(r"^(prob_uniform|prob_sys_size(;\d+:\d+:[0-9.eE+-]+)*)$")
_SEL_RE = re.compile(r"^auto(:\d+(\.\d*)?)?$")


def check_exclusive(raw: dict) -> None:
    """Mutually exclusive keys, judged on the input before defaults are filled."""
    lr = raw.get("learning_rate", {})
    given = [k for k in ("stop_lr", "stop_lr_ratio") if lr.get(k) is not None]
    _need(len(given) < 2, "learning_rate",
          "'stop_lr' and 'stop_lr_ratio' are mutually exclusive (stop_lr = start_lr * "
          "stop_lr_ratio); give only one")
    _need(len(given) == 1, "learning_rate", "give one of 'stop_lr' or 'stop_lr_ratio'")
    _need(not ("warmup_steps" in lr and lr.get("warmup_ratio") is not None), "learning_rate",
          "'warmup_steps' and 'warmup_ratio' are mutually exclusive; give only one")
    tr = raw.get("training", {})
    given = [k for k in ("numb_steps", "numb_epoch") if tr.get(k) is not None]
    _need(len(given) < 2, "training",
          "'numb_steps' and 'numb_epoch' are mutually exclusive; give only one")
    _need(len(given) == 1, "training", "give one of 'numb_steps' or 'numb_epoch'")


def _check_act_prec(sec: dict, loc: str) -> None:
    act = sec["activation_function"].lower()
    base = act.split(":")[0]
    _need(act in ACTIVATIONS or (base in ("silut", "custom_silu") and ":" in act),
          f"{loc}/activation_function",
          f"unknown activation '{sec['activation_function']}'; expected one of "
          f"{list(ACTIVATIONS)} or 'silut:T'" + suggest(act, list(ACTIVATIONS)))
    _need(sec["precision"] in PRECISIONS, f"{loc}/precision",
          f"unknown precision '{sec['precision']}'; expected one of {list(PRECISIONS)}")
    _need(all(n > 0 for n in sec["neuron"]), f"{loc}/neuron",
          f"layer widths must be positive, got {sec['neuron']}")


def _check_types(items, ntypes: int, loc: str, pairs: bool) -> None:
    for it in items:
        ok = len(it) == 2 and all(0 <= t < ntypes for t in it) if pairs else 0 <= it < ntypes
        _need(ok, loc, f"entry {it} is not {'a pair of types' if pairs else 'a type'} "
              f"in 0..{ntypes - 1}")


def _check_model(m: dict) -> None:
    tm = m["type_map"]
    _need(len(tm) > 0 and len(set(tm)) == len(tm), "model/type_map",
          f"expected a non-empty list of distinct element names, got {tm}")
    nt = len(tm)
    for k in _MODEL_UNSUPPORTED:
        _need(k not in m, f"model/{k}", "a DeePMD-kit option that dpcore does not implement")
    _need(m["type"] == "standard", "model/type", f"only 'standard' is supported, got '{m['type']}'")
    d, loc = m["descriptor"], "model/descriptor"
    sel = d["sel"]
    if isinstance(sel, str):
        _need(bool(_SEL_RE.match(sel)), f"{loc}/sel",
              f"expected a list of {nt} ints (one per type) or 'auto' / 'auto:factor', got '{sel}'")
    else:
        _need(len(sel) == nt and all(s >= 0 for s in sel), f"{loc}/sel",
              f"expected {nt} non-negative ints (one per type in type_map {tm}), got {sel}")
    _need(_finite(d["rcut"]) and d["rcut"] > 0, f"{loc}/rcut", f"must be > 0, got {d['rcut']}")
    _need(0 <= d["rcut_smth"] < d["rcut"], f"{loc}/rcut_smth",
          f"must satisfy 0 <= rcut_smth < rcut = {d['rcut']}, got {d['rcut_smth']}")
    _check_act_prec(d, loc)
    _need(1 <= d["axis_neuron"] <= d["neuron"][-1] if d["neuron"] else False, f"{loc}/axis_neuron",
          f"must be in 1..neuron[-1] = {d['neuron'][-1] if d['neuron'] else None}, "
          f"got {d['axis_neuron']}")
    _check_types(d["exclude_types"], nt, f"{loc}/exclude_types", pairs=True)
    _need(d["env_protection"] >= 0, f"{loc}/env_protection", "must be >= 0")
    f, loc = m["fitting_net"], "model/fitting_net"
    _check_act_prec(f, loc)
    for k in ("numb_fparam", "numb_aparam", "dim_case_embd"):
        _need(f[k] >= 0, f"{loc}/{k}", f"must be >= 0, got {f[k]}")
    if f["default_fparam"] is not None:
        _need(len(f["default_fparam"]) == f["numb_fparam"], f"{loc}/default_fparam",
              f"has {len(f['default_fparam'])} values; expected numb_fparam = {f['numb_fparam']}")
    if isinstance(f["trainable"], list):
        _need(len(f["trainable"]) == len(f["neuron"]) + 1, f"{loc}/trainable",
              f"a list needs len(neuron)+1 = {len(f['neuron']) + 1} entries, "
              f"got {len(f['trainable'])}")
    _need(len(f["atom_ener"]) <= nt, f"{loc}/atom_ener",
          f"has {len(f['atom_ener'])} entries; at most one per type ({nt})")
    _need("layer_name" not in f, f"{loc}/layer_name",
          "shared fitting layers are a TensorFlow-only DeePMD-kit option; dpcore does not "
          "implement it")
    _check_types(m["pair_exclude_types"], nt, "model/pair_exclude_types", pairs=True)
    _check_types(m["atom_exclude_types"], nt, "model/atom_exclude_types", pairs=False)
    _need(m["data_stat_nbatch"] >= 1, "model/data_stat_nbatch", "must be >= 1")
    _need(m["data_stat_protect"] > 0, "model/data_stat_protect", "must be > 0")
    pob = m["preset_out_bias"]
    if pob is not None:
        for k, v in pob.items():
            _need(k == "energy", "model/preset_out_bias",
                  f"unknown key '{k}'; only 'energy' is an output of this model")
            _need(isinstance(v, list) and len(v) == nt, "model/preset_out_bias/energy",
                  f"expected a list of {nt} entries (number or null per type), got {v}")
            for t, b in enumerate(v):
                one = b[0] if isinstance(b, list) and len(b) == 1 else b
                _need(b is None or _finite(one), f"model/preset_out_bias/energy/{t}",
                      f"expected a number, [number] or null, got {b}")
    if "spin" in m:
        _check_spin(m["spin"], tm)


def _check_spin(sp: dict, tm: list[str]) -> None:
    loc, nt = "model/spin", len(tm)
    use = sp["use_spin"]
    if all(isinstance(u, bool) for u in use):
        _need(len(use) == nt, f"{loc}/use_spin",
              f"expected {nt} booleans (one per type in {tm}), got {use}")
        nspin = sum(use)
    elif all(isinstance(u, int) for u in use):
        _need(all(0 <= u < nt for u in use), f"{loc}/use_spin", f"type indices must be in 0..{nt - 1}")
        nspin = len(set(use))
    else:
        _need(all(u in tm for u in use), f"{loc}/use_spin",
              f"element names must be in type_map {tm}, got {use}")
        nspin = len(set(use))
    _need(sp["scheme"] == "deepspin", f"{loc}/scheme",
          f"only 'deepspin' is supported ('native' is for DPA4/SeZM), got '{sp['scheme']}'")
    tf = [k for k in ("spin_norm", "virtual_len") if k in sp]
    if tf:
        _need(len(tf) == 2, loc, "the TensorFlow form needs both 'spin_norm' and 'virtual_len'")
        for k in tf:
            _need(len(sp[k]) == nspin and all(x > 0 for x in sp[k]), f"{loc}/{k}",
                  f"expected {nspin} positive numbers (one per magnetic type), got {sp[k]}")
        conv = [vl / sn for vl, sn in zip(sp["virtual_len"], sp["spin_norm"])]
        if "virtual_scale" in sp:
            vs = sp["virtual_scale"]
            _need(isinstance(vs, list) and len(vs) == nspin
                  and all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(vs, conv)),
                  f"{loc}/virtual_scale",
                  f"{vs} contradicts virtual_len / spin_norm = {conv}; give one form")
        else:
            sp["virtual_scale"] = conv
    _need("virtual_scale" in sp, f"{loc}/virtual_scale",
          "required for the deepspin model (or give the TensorFlow form spin_norm + virtual_len)")
    vs = sp["virtual_scale"]
    if isinstance(vs, list):
        _need(len(vs) in (nt, nspin), f"{loc}/virtual_scale",
              f"expected {nt} (one per type) or {nspin} (one per magnetic type) numbers, "
              f"got {len(vs)}")


def _check_data_section(sec: dict, loc: str) -> None:
    bs = sec["batch_size"]
    ok = (bs >= 1) if isinstance(bs, int) else (
        bool(_BATCH_RE.match(bs)) if isinstance(bs, str) else all(b >= 1 for b in bs))
    _need(ok, f"{loc}/batch_size",
          f"expected a positive int, a list of them, 'auto', 'auto:N', 'max:N' or 'filter:N'; "
          f"got {bs!r}")
    _need(bool(_PROB_RE.match(sec["auto_prob"])), f"{loc}/auto_prob",
          f"expected 'prob_uniform', 'prob_sys_size' or 'prob_sys_size;a:b:w;...', got "
          f"'{sec['auto_prob']}'")
    systems = sec["systems"]
    _need(bool(systems) and all(systems if isinstance(systems, list) else [systems]),
          f"{loc}/systems", "expected a path or a non-empty list of paths")


def check_semantics(c: dict) -> None:
    """Rules argcheck's types cannot express; completes ``model/spin/virtual_scale``."""
    _check_model(c["model"])
    loss, loc = c["loss"], "loss"
    _need(loss["loss_func"] in ("mse", "mae"), f"{loc}/loss_func",
          f"expected 'mse' or 'mae', got '{loss['loss_func']}'")
    for k, v in loss.items():
        if "_pref_" in k:
            _need(_finite(v) and v >= 0, f"{loc}/{k}", f"must be a finite number >= 0, got {v}")
    if isinstance(loss.get("huber_delta"), list):
        _need(len(loss["huber_delta"]) == 3, f"{loc}/huber_delta",
              f"a list needs 3 values [delta_e, delta_f, delta_v], got {loss['huber_delta']}")
    _need(loss["type"] != "ener_spin" or "spin" in c["model"], f"{loc}/type",
          "'ener_spin' needs a model/spin section")
    lr, loc = c["learning_rate"], "learning_rate"
    _need(_finite(lr["start_lr"]) and lr["start_lr"] > 0, f"{loc}/start_lr",
          f"must be a finite number > 0, got {lr['start_lr']}")
    for k in ("stop_lr", "stop_lr_ratio"):
        if lr[k] is not None:
            _need(_finite(lr[k]) and lr[k] >= 0, f"{loc}/{k}", f"must be >= 0, got {lr[k]}")
    _need(lr["warmup_steps"] >= 0, f"{loc}/warmup_steps", "must be >= 0")
    if lr["warmup_ratio"] is not None:
        _need(0 <= lr["warmup_ratio"] < 1, f"{loc}/warmup_ratio", "must be in [0, 1)")
    tr = c["training"]
    if tr.get("numb_steps") is not None:
        _need(tr["numb_steps"] >= 1, "training/numb_steps", f"must be >= 1, got {tr['numb_steps']}")
        _need(lr["warmup_steps"] < tr["numb_steps"], f"{loc}/warmup_steps",
              f"must be < training/numb_steps = {tr['numb_steps']}")
    if tr.get("numb_epoch") is not None:
        _need(tr["numb_epoch"] > 0, "training/numb_epoch", "must be > 0")
    if lr["type"] == "exp":
        _need(lr["decay_steps"] >= 1, f"{loc}/decay_steps", "must be >= 1")
        if lr["decay_rate"] is not None:
            _need(0 < lr["decay_rate"] <= 1, f"{loc}/decay_rate", "must be in (0, 1]")
    if lr["type"] == "wsd":
        _need(0 < lr["decay_phase_ratio"] <= 1, f"{loc}/decay_phase_ratio", "must be in (0, 1]")
        kinds = ["inverse_linear", "cosine", "linear"]
        _need(lr["decay_type"] in kinds, f"{loc}/decay_type",
              f"expected one of {kinds}, got '{lr['decay_type']}'" + suggest(lr["decay_type"], kinds))
    opt = c["optimizer"]
    for k in ("adam_beta1", "adam_beta2"):
        _need(0 <= opt[k] < 1, f"optimizer/{k}", f"must be in [0, 1), got {opt[k]}")
    _need(opt["weight_decay"] >= 0, "optimizer/weight_decay", "must be >= 0")
    _check_data_section(tr["training_data"], "training/training_data")
    if tr["validation_data"] is not None:
        _check_data_section(tr["validation_data"], "training/validation_data")
        _need(tr["validation_data"]["numb_btch"] >= 1, "training/validation_data/numb_btch",
              "must be >= 1")
    for k in ("disp_freq", "save_freq"):
        _need(tr[k] >= 1, f"training/{k}", f"must be >= 1, got {tr[k]}")


def normalize_config(d: dict) -> NormalizedConfig:
    """Validated copy of an input dict with every default filled (SPEC 11).

    Aliases become canonical names, keys starting with ``_`` are dropped, the
    TensorFlow spin form (``spin_norm``/``virtual_len``) gains ``virtual_scale``.
    Raises :class:`ConfigError` (message starts with the location).
    Idempotent: ``normalize_config(normalize_config(d)) == normalize_config(d)``.
    """
    if not isinstance(d, dict):
        raise ConfigError(f"(top level): expected a dict (JSON object), got {_short(d)}")
    dargs = _dargs()
    arg = schema()
    # 1. flag values of variants and aliases given twice, on the raw input
    _traverse(d, key_hook=_alias_hook, variant_hook=_variant_hook)
    try:
        # 2. aliases -> canonical names, "_*" keys dropped, no defaults yet
        raw = arg.normalize_value(copy.deepcopy(d), trim_pattern="_*", do_default=False)
    except dargs.dargs.ArgumentError as exc:
        raise _from_dargs(exc) from None
    _traverse(raw, key_hook=_required_hook, value_hook=_type_hook, sub_hook=_strict_hook)
    check_exclusive(raw)
    try:
        full = arg.normalize_value(raw, trim_pattern="_*")
        # a section defaulted to {} (loss, optimizer) gets its own defaults in a second pass
        full = arg.normalize_value(full, trim_pattern="_*", inplace=True)
    except dargs.dargs.ArgumentError as exc:
        raise _from_dargs(exc) from None
    check_semantics(full)
    out = NormalizedConfig(full)
    out.source_path = getattr(d, "source_path", None)
    return out


def load_config(path: str | os.PathLike) -> NormalizedConfig:
    """Read a JSON input file and normalise it; remembers ``source_path``."""
    p = Path(path)
    if p.suffix.lower() in (".yaml", ".yml"):
        raise ConfigError(f"{p}: YAML input is not supported; convert it to JSON")
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: not valid JSON ({exc})") from None
    out = normalize_config(d)
    out.source_path = str(p.resolve())
    return out


def write_normalized(d: dict, path: str | os.PathLike, source: str | os.PathLike | None = None
                     ) -> NormalizedConfig:
    """Write the normalised input (all defaults filled) as JSON to ``path``.

    Refuses to overwrite the input it was read from (``source``, or the
    ``source_path`` remembered by :func:`load_config`).  Returns the normalised dict.
    """
    src = source if source is not None else getattr(d, "source_path", None)
    target = Path(path)
    if src is not None and Path(src).resolve() == target.resolve():
        raise ConfigError(
            f"{target}: refusing to overwrite the input file the configuration was read "
            "from; write the normalised copy to another path (e.g. out.json)"
        )
    norm = normalize_config(d)
    norm.source_path = None if src is None else str(Path(src).resolve())
    target.write_text(json.dumps(norm, indent=4) + "\n")
    return norm


def normalize_model(model: dict) -> dict:
    """Validated ``model`` section with every default filled (same rules and messages as :func:`normalize_config`)."""
    if not isinstance(model, dict):
        raise ConfigError(f"model: expected a dict (JSON object), got {_short(model)}")
    wrapper = {"model": model, "learning_rate": {"start_lr": 1e-3, "stop_lr": 1e-8},
               "training": {"training_data": {"systems": "(none)"}, "numb_steps": 1}}  # data are not read here
    if "spin" in model:
        wrapper["loss"] = {"type": "ener_spin"}
    return dict(normalize_config(wrapper)["model"])
