"""The input.json schema (SPEC 11; DeePMD-kit 3.2 argcheck defaults and aliases), declared with dargs.

The ``model.descriptor`` and ``model.fitting_net`` variants come from the descriptor and fitting registries
(each module's ``args()``), the ``model.spin`` keys from :mod:`dpcore.model.spin_settings`.
"""

from __future__ import annotations

import functools

from ..descriptor import DESCRIPTORS
from ..fitting import FITTINGS
from ..model import spin_settings

# DeePMD-kit choices dpcore deliberately does not implement (clearer than "unknown").
NOT_IMPLEMENTED = {
    "se_e2_r", "se_r", "se_e3", "se_at", "se_a_3be", "se_t",
    "dpa2", "dpa3", "hybrid", "se_e3_tebd", "loc_frame", "se_a_tpe", "se_a_ebd", "se_a_mask",
    "dipole", "polar", "dos", "property", "tensor", "AdamW", "LKF", "AdaMuon", "HybridMuon",
}
# model keys of DeePMD-kit that dpcore does not implement
MODEL_UNSUPPORTED = ("use_srtab", "smin_alpha", "sw_rmin", "sw_rmax", "srtab_add_bias",
                     "type_embedding", "modifier", "compress", "finetune_head",
                     "model_branch_alias")


def dargs():
    """The dargs module (a clear error naming the extra when it is missing)."""
    try:
        import dargs
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "checking input.json needs dargs; install it with `pip install dpcore[train]`"
        ) from exc
    return dargs


@functools.lru_cache(maxsize=1)
def schema():
    """The dargs ``Argument`` tree of the whole input (root name ``input``)."""
    A, V = dargs().Argument, dargs().Variant
    opt = functools.partial(A, optional=True)
    Num = [float, int]

    model = A("model", dict, [
        A("type_map", list[str]),
        A("descriptor", dict, sub_variants=[V("type", [
            A(name, dict, DESCRIPTORS.get(name).args(), alias=list(DESCRIPTORS.get(name).ALIASES))
            for name in DESCRIPTORS.names()])]),
        A("fitting_net", dict, sub_variants=[V("type", [
            A(name, dict, FITTINGS.get(name).args(), alias=list(FITTINGS.get(name).ALIASES))
            for name in FITTINGS.names()], optional=True, default_tag="ener")]),
        opt("spin", dict, spin_settings.args()),
        opt("data_stat_nbatch", int, default=10),
        opt("data_stat_protect", float, default=1e-2),
        opt("data_bias_nsample", int, default=10),
        opt("pair_exclude_types", list[list[int]], default=[]),
        opt("atom_exclude_types", list[int], default=[]),
        opt("preset_out_bias", [dict, None], default=None),
        opt("type", str, default="standard"),
        opt("info", dict),
        *[opt(k, object) for k in MODEL_UNSUPPORTED],
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
        opt("shape_buckets", [int, str]),  # dpcore only (absent = "auto"): padded batch shapes, dpcore.train.buckets
    ])
    return A("input", dict, [model, lr, loss, optimizer, training])

