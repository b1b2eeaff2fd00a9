"""Rules of a normalised input that dargs' types cannot express: mutually exclusive keys, list lengths
against ``type_map``, value ranges (every failure a :class:`ConfigError` naming the key).  The descriptor,
fitting and spin sections are checked by their own modules (``check``)."""

from __future__ import annotations

import re

from ..descriptor import get_descriptor
from ..fitting import get_fitting
from ..model import spin_settings
from .errors import check_types, finite, need, suggest
from .schema import MODEL_UNSUPPORTED

_BATCH_RE = re.compile(r"^(auto(:\d+)?|max:\d+|filter:\d+)$")
_PROB_RE = re.compile(r"^(prob_uniform|prob_sys_size(;\d+:\d+:[0-9.eE+-]+)*)$")


def check_exclusive(raw: dict) -> None:
    """Mutually exclusive keys, judged on the input before defaults are filled."""
    lr = raw.get("learning_rate", {})
    given = [k for k in ("stop_lr", "stop_lr_ratio") if lr.get(k) is not None]
    need(len(given) < 2, "learning_rate",
         "'stop_lr' and 'stop_lr_ratio' are mutually exclusive (stop_lr = start_lr * "
          "stop_lr_ratio); give only one")
    need(len(given) == 1, "learning_rate", "give one of 'stop_lr' or 'stop_lr_ratio'")
    need(not ("warmup_steps" in lr and lr.get("warmup_ratio") is not None), "learning_rate",
         "'warmup_steps' and 'warmup_ratio' are mutually exclusive; give only one")
    tr = raw.get("training", {})
    given = [k for k in ("numb_steps", "numb_epoch") if tr.get(k) is not None]
    need(len(given) < 2, "training",
         "'numb_steps' and 'numb_epoch' are mutually exclusive; give only one")
    need(len(given) == 1, "training", "give one of 'numb_steps' or 'numb_epoch'")


def _check_model(m: dict) -> None:
    tm = m["type_map"]
    need(len(tm) > 0 and len(set(tm)) == len(tm), "model/type_map",
         f"expected a non-empty list of distinct element names, got {tm}")
    nt = len(tm)
    for k in MODEL_UNSUPPORTED:
        need(k not in m, f"model/{k}", "a DeePMD-kit option that dpcore does not implement")
    need(m["type"] == "standard", "model/type", f"only 'standard' is supported, got '{m['type']}'")
    d, f = m["descriptor"], m["fitting_net"]
    get_descriptor(d["type"]).check(d, tm)
    get_fitting(f["type"]).check(f, tm)
    check_types(m["pair_exclude_types"], nt, "model/pair_exclude_types", pairs=True)
    check_types(m["atom_exclude_types"], nt, "model/atom_exclude_types", pairs=False)
    need(m["data_stat_nbatch"] >= 1, "model/data_stat_nbatch", "must be >= 1")
    need(m["data_stat_protect"] > 0, "model/data_stat_protect", "must be > 0")
    pob = m["preset_out_bias"]
    if pob is not None:
        for k, v in pob.items():
            need(k == "energy", "model/preset_out_bias",
                 f"unknown key '{k}'; only 'energy' is an output of this model")
            need(isinstance(v, list) and len(v) == nt, "model/preset_out_bias/energy",
                 f"expected a list of {nt} entries (number or null per type), got {v}")
            for t, b in enumerate(v):
                one = b[0] if isinstance(b, list) and len(b) == 1 else b
                need(b is None or finite(one), f"model/preset_out_bias/energy/{t}",
                     f"expected a number, [number] or null, got {b}")
    if "spin" in m:
        spin_settings.check(m["spin"], tm)


def _check_data_section(sec: dict, loc: str) -> None:
    bs = sec["batch_size"]
    ok = (bs >= 1) if isinstance(bs, int) else (
        bool(_BATCH_RE.match(bs)) if isinstance(bs, str) else all(b >= 1 for b in bs))
    need(ok, f"{loc}/batch_size",
         f"expected a positive int, a list of them, 'auto', 'auto:N', 'max:N' or 'filter:N'; "
          f"got {bs!r}")
    need(bool(_PROB_RE.match(sec["auto_prob"])), f"{loc}/auto_prob",
         f"expected 'prob_uniform', 'prob_sys_size' or 'prob_sys_size;a:b:w;...', got "
          f"'{sec['auto_prob']}'")
    systems = sec["systems"]
    need(bool(systems) and all(systems if isinstance(systems, list) else [systems]),
         f"{loc}/systems", "expected a path or a non-empty list of paths")


def check_semantics(c: dict) -> None:
    """Rules argcheck's types cannot express; completes ``model/spin/virtual_scale``."""
    _check_model(c["model"])
    loss, loc = c["loss"], "loss"
    need(loss["loss_func"] in ("mse", "mae"), f"{loc}/loss_func",
         f"expected 'mse' or 'mae', got '{loss['loss_func']}'")
    for k, v in loss.items():
        if "_pref_" in k:
            need(finite(v) and v >= 0, f"{loc}/{k}", f"must be a finite number >= 0, got {v}")
    if isinstance(loss.get("huber_delta"), list):
        need(len(loss["huber_delta"]) == 3, f"{loc}/huber_delta",
             f"a list needs 3 values [delta_e, delta_f, delta_v], got {loss['huber_delta']}")
    need(loss["type"] != "ener_spin" or "spin" in c["model"], f"{loc}/type",
         "'ener_spin' needs a model/spin section")
    lr, loc = c["learning_rate"], "learning_rate"
    need(finite(lr["start_lr"]) and lr["start_lr"] > 0, f"{loc}/start_lr",
         f"must be a finite number > 0, got {lr['start_lr']}")
    for k in ("stop_lr", "stop_lr_ratio"):
        if lr[k] is not None:
            need(finite(lr[k]) and lr[k] >= 0, f"{loc}/{k}", f"must be >= 0, got {lr[k]}")
    need(lr["warmup_steps"] >= 0, f"{loc}/warmup_steps", "must be >= 0")
    if lr["warmup_ratio"] is not None:
        need(0 <= lr["warmup_ratio"] < 1, f"{loc}/warmup_ratio", "must be in [0, 1)")
    tr = c["training"]
    if tr.get("numb_steps") is not None:
        need(tr["numb_steps"] >= 1, "training/numb_steps", f"must be >= 1, got {tr['numb_steps']}")
        need(lr["warmup_steps"] < tr["numb_steps"], f"{loc}/warmup_steps",
             f"must be < training/numb_steps = {tr['numb_steps']}")
    if tr.get("numb_epoch") is not None:
        need(tr["numb_epoch"] > 0, "training/numb_epoch", "must be > 0")
    if lr["type"] == "exp":
        need(lr["decay_steps"] >= 1, f"{loc}/decay_steps", "must be >= 1")
        if lr["decay_rate"] is not None:
            need(0 < lr["decay_rate"] <= 1, f"{loc}/decay_rate", "must be in (0, 1]")
    if lr["type"] == "wsd":
        need(0 < lr["decay_phase_ratio"] <= 1, f"{loc}/decay_phase_ratio", "must be in (0, 1]")
        kinds = ["inverse_linear", "cosine", "linear"]
        need(lr["decay_type"] in kinds, f"{loc}/decay_type",
             f"expected one of {kinds}, got '{lr['decay_type']}'" + suggest(lr["decay_type"], kinds))
    opt = c["optimizer"]
    for k in ("adam_beta1", "adam_beta2"):
        need(0 <= opt[k] < 1, f"optimizer/{k}", f"must be in [0, 1), got {opt[k]}")
    need(opt["weight_decay"] >= 0, "optimizer/weight_decay", "must be >= 0")
    _check_data_section(tr["training_data"], "training/training_data")
    if tr["validation_data"] is not None:
        _check_data_section(tr["validation_data"], "training/validation_data")
        need(tr["validation_data"]["numb_btch"] >= 1, "training/validation_data/numb_btch",
             "must be >= 1")
    for k in ("disp_freq", "save_freq"):
        need(tr[k] >= 1, f"training/{k}", f"must be >= 1, got {tr[k]}")
    sb = tr.get("shape_buckets", "auto")
    need(sb in ("auto", "off") or (isinstance(sb, int) and not isinstance(sb, bool) and sb >= 1),
         "training/shape_buckets", f"expected 'auto', 'off' or an integer >= 1 (the most padded batch shapes, "
         f"hence compiled training steps), got {sb!r}")

