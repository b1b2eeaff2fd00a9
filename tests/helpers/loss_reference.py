"""The ``ener`` and ``ener_spin`` losses (SPEC 8) written as straightforward loops over frames, atoms and
components: the reference of tests/test_loss_*.py."""

from __future__ import annotations

import math

import numpy as np

from helpers.loss import LR, START_LR


# ---------------------------------------------------------------------------------------- reference (loops)
SPEC_ENER = {  # SPEC 11.5
    "start_pref_e": 0.02, "limit_pref_e": 1.0, "start_pref_f": 1000, "limit_pref_f": 1.0, "start_pref_v": 0.0,
    "limit_pref_v": 0.0, "start_pref_ae": 0.0, "limit_pref_ae": 0.0, "start_pref_pf": 0.0, "limit_pref_pf": 0.0,
    "start_pref_gf": 0.0, "limit_pref_gf": 0.0, "use_default_pf": False, "relative_f": None,
    "enable_atom_ener_coeff": False, "numb_generalized_coord": 0, "use_huber": False, "loss_func": "mse",
    "f_use_norm": False, "huber_delta": 0.01, "intensive_ener_virial": False,
}
SPEC_SPIN = {
    "start_pref_e": 0.02, "limit_pref_e": 1.0, "start_pref_fr": 1000, "limit_pref_fr": 1.0, "start_pref_fm": 10000,
    "limit_pref_fm": 10.0, "start_pref_v": 0.0, "limit_pref_v": 0.0, "start_pref_ae": 0.0, "limit_pref_ae": 0.0,
    "enable_atom_ener_coeff": False, "loss_func": "mse", "intensive_ener_virial": False,
}


def _h(x, d):
    return 0.5 * x * x if abs(x) <= d else d * (abs(x) - 0.5 * d)


class _Ref:
    """Per-batch quantities of SPEC 8.1 computed with loops."""

    def __init__(self, c, out, lab, lr, start_lr):
        self.c, self.out, self.lab = c, out, lab
        self.nf, self.n = out["mask"].shape
        self.m = out["mask"]
        self.N = [int(sum(self.m[f])) for f in range(self.nf)]
        self.inv = [1.0 / k if k else 0.0 for k in self.N]
        self.lr, self.start_lr = lr, start_lr

    def pref(self, t):
        s, l_ = self.c[f"start_pref_{t}"], self.c[f"limit_pref_{t}"]
        return l_ + (s - l_) * self.lr / self.start_lr

    def on(self, t):
        return self.c[f"start_pref_{t}"] != 0 or self.c[f"limit_pref_{t}"] != 0

    def pool(self, fn):
        """Mean of fn(f, i) (a list of component values) over masked atoms and their components."""
        vals = [v for f in range(self.nf) for i in range(self.n) if self.m[f, i] for v in fn(f, i)]
        return sum(vals) / len(vals) if vals else 0.0

    def frames(self, fn):
        return sum(fn(f) for f in range(self.nf)) / self.nf

    def energy_residual(self):
        o, lab = self.out, self.lab
        d = []
        for f in range(self.nf):
            if self.c["enable_atom_ener_coeff"]:
                e = sum(lab["atom_ener_coeff"][f, i] * o["atom_energy"][f, i, 0] for i in range(self.n))
            else:
                e = o["energy"][f, 0]
            d.append(lab["energy"][f, 0] - e)
        return d


def _finish(loss, met, finds):
    out = {}
    for k, v in met.items():
        out[k] = v if all(finds[k]) else float("nan")
    out["rmse"] = math.sqrt(loss)
    return loss, out


def ref_ener(cfg, out, lab, lr=LR, start_lr=START_LR, mae=False):
    """SPEC 8.2 with loops over frames, atoms and components."""
    c = {**SPEC_ENER, **cfg}
    r = _Ref(c, out, lab, lr, start_lr)
    nf, n = r.nf, r.n
    mse = c["loss_func"] == "mse"
    hub = c["use_huber"] and mse
    dl = c["huber_delta"] if isinstance(c["huber_delta"], list) else [c["huber_delta"]] * 3
    p = 2 if c["intensive_ener_virial"] else 1
    fe, ff, fv = lab["find_energy"], lab["find_force"], lab["find_virial"]
    fae, fap, fdq = lab["find_atom_ener"], lab["find_atom_pref"], lab["find_drdq"]
    fpf = 1.0 if c["use_default_pf"] else fap
    loss, met, finds = 0.0, {}, {}

    def dF(f, i):
        d = lab["force"][f, i] - out["force"][f, i]
        if c["relative_f"] is not None:
            d = d / (np.linalg.norm(lab["force"][f, i]) + c["relative_f"])
        return list(d)

    if r.on("e"):
        dE = r.energy_residual()
        if mse:
            term = (r.frames(lambda f: _h(dE[f] * r.inv[f], dl[0])) if hub
                    else r.frames(lambda f: dE[f] ** 2 * r.inv[f] ** p))
            met["rmse_e"] = math.sqrt(r.frames(lambda f: dE[f] ** 2 * r.inv[f] ** 2))
            met["l2_ener_loss"] = r.frames(lambda f: dE[f] ** 2)
            if mae:
                met["mae_e"] = r.frames(lambda f: abs(dE[f]) * r.inv[f])
                met["mae_e_all"] = r.frames(lambda f: abs(dE[f]))
        else:
            term = met["mae_e"] = r.frames(lambda f: abs(dE[f]) * r.inv[f])
        loss += r.pref("e") * fe * term
        for k in ("rmse_e", "l2_ener_loss", "mae_e", "mae_e_all"):
            finds[k] = [fe]
    if r.on("f"):
        sq = r.pool(lambda f, i: [x * x for x in dF(f, i)])
        if mse:
            if hub and c["f_use_norm"]:
                term = r.pool(lambda f, i: [_h(np.linalg.norm(dF(f, i)), dl[1])])
            elif hub:
                term = r.pool(lambda f, i: [_h(x, dl[1]) for x in dF(f, i)])
            else:
                term = sq
            met["rmse_f"], met["l2_force_loss"] = math.sqrt(sq), sq
            if mae:
                met["mae_f"] = r.pool(lambda f, i: [abs(x) for x in dF(f, i)])
        else:
            term = met["mae_f"] = (r.pool(lambda f, i: [np.linalg.norm(dF(f, i))]) if c["f_use_norm"]
                                   else r.pool(lambda f, i: [abs(x) for x in dF(f, i)]))
        loss += r.pref("f") * ff * term
        for k in ("rmse_f", "l2_force_loss", "mae_f"):
            finds[k] = [ff]
    if r.on("v"):
        dV = [[lab["virial"][f, k] - out["virial"][f, k] for k in range(9)] for f in range(nf)]
        ms = [sum(x * x for x in dV[f]) / 9 for f in range(nf)]
        if mse:
            term = (sum(_h(x * r.inv[f], dl[2]) for f in range(nf) for x in dV[f]) / (9 * nf) if hub
                    else r.frames(lambda f: ms[f] * r.inv[f] ** p))
            met["rmse_v"] = math.sqrt(r.frames(lambda f: ms[f] * r.inv[f] ** 2))
            met["l2_virial_loss"] = r.frames(lambda f: ms[f])
            if mae:
                met["mae_v"] = r.frames(lambda f: sum(abs(x) for x in dV[f]) / 9 * r.inv[f])
        else:
            term = met["mae_v"] = r.frames(lambda f: sum(abs(x) for x in dV[f]) / 9 * r.inv[f])
        loss += r.pref("v") * fv * term
        for k in ("rmse_v", "l2_virial_loss", "mae_v"):
            finds[k] = [fv]
    if r.on("ae"):
        de = lambda f, i: lab["atom_ener"][f, i] - out["atom_energy"][f, i, 0]  # noqa: E731
        sq = r.pool(lambda f, i: [de(f, i) ** 2])
        if mse:
            term = r.pool(lambda f, i: [_h(de(f, i), dl[0])]) if hub else sq
            met["rmse_ae"], met["l2_atom_ener_loss"] = math.sqrt(sq), sq
        else:
            term = met["mae_ae"] = r.pool(lambda f, i: [abs(de(f, i))])
        loss += r.pref("ae") * fae * term
        for k in ("rmse_ae", "l2_atom_ener_loss", "mae_ae"):
            finds[k] = [fae]
    if r.on("pf"):
        def w(f, i):
            return 1.0 if (c["use_default_pf"] and not fap) else lab["atom_pref"][f, i]
        if mse:
            term = r.pool(lambda f, i: [x * x * w(f, i) for x in dF(f, i)])
            met["rmse_pf"], met["l2_pref_force_loss"] = math.sqrt(term), term
        else:
            term = met["mae_pf"] = r.pool(lambda f, i: [abs(x) * w(f, i) for x in dF(f, i)])
        loss += r.pref("pf") * ff * fpf * term
        for k in ("rmse_pf", "l2_pref_force_loss", "mae_pf"):
            finds[k] = [ff, fpf]
    if r.on("gf"):
        ngc = c["numb_generalized_coord"]
        acc = []
        for f in range(nf):
            for q in range(ngc):
                g = 0.0
                for i in range(n):
                    d = dF(f, i)
                    for k in range(3):
                        g += lab["drdq"][f, (3 * i + k) * ngc + q] * r.m[f, i] * d[k]
                acc.append(g * g)
        term = sum(acc) / len(acc)
        met["rmse_gf"] = math.sqrt(term)
        if mse:
            met["l2_gen_force_loss"] = term
        loss += r.pref("gf") * ff * fdq * term
        for k in ("rmse_gf", "l2_gen_force_loss"):
            finds[k] = [ff, fdq]
    return _finish(loss, met, finds)


def ref_spin(cfg, out, lab, lr=LR, start_lr=START_LR):
    """SPEC 8.3 with loops."""
    c = {**SPEC_SPIN, **cfg}
    r = _Ref(c, out, lab, lr, start_lr)
    nf, n = r.nf, r.n
    mse = c["loss_func"] == "mse"
    p = 2 if c["intensive_ener_virial"] else 1
    loss, met, finds = 0.0, {}, {}
    err = (lambda x: x * x) if mse else abs
    name = "rmse" if mse else "mae"
    if r.on("e"):
        dE = r.energy_residual()
        term = r.frames(lambda f: dE[f] ** 2 * r.inv[f] ** p) if mse else r.frames(lambda f: abs(dE[f]) * r.inv[f])
        if mse:
            met["rmse_e"] = math.sqrt(r.frames(lambda f: dE[f] ** 2 * r.inv[f] ** 2))
            met["l2_ener_loss"] = r.frames(lambda f: dE[f] ** 2)
        else:
            met["mae_e"] = term
        loss += r.pref("e") * lab["find_energy"] * term
        finds.update({"rmse_e": [lab["find_energy"]], "l2_ener_loss": [lab["find_energy"]], "mae_e": [lab["find_energy"]]})
    for t, key, lname in (("fr", "force", "force_r"), ("fm", "force_mag", "force_m")):
        if not r.on(t):
            continue
        pred = out[key]
        sel = r.m if t == "fr" else r.m * out["mask_mag"][..., 0]
        vals = [err(lab[key][f, i, k] - pred[f, i, k]) for f in range(nf) for i in range(n) if sel[f, i]
                for k in range(3)]
        term = sum(vals) / len(vals) if vals else 0.0
        met[f"{name}_{t}"] = math.sqrt(term) if mse else term
        if mse:
            met[f"l2_{lname}_loss"] = term
        loss += r.pref(t) * lab[f"find_{key}"] * term
        finds[f"{name}_{t}"] = finds[f"l2_{lname}_loss"] = [lab[f"find_{key}"]]
    if r.on("v"):
        dV = [[lab["virial"][f, k] - out["virial"][f, k] for k in range(9)] for f in range(nf)]
        ms = [sum(err(x) for x in dV[f]) / 9 for f in range(nf)]
        term = r.frames(lambda f: ms[f] * r.inv[f] ** (p if mse else 1))
        if mse:
            met["rmse_v"] = math.sqrt(r.frames(lambda f: ms[f] * r.inv[f] ** 2))
            met["l2_virial_loss"] = r.frames(lambda f: ms[f])
        else:
            met["mae_v"] = term
        loss += r.pref("v") * lab["find_virial"] * term
        finds["rmse_v"] = finds["l2_virial_loss"] = finds["mae_v"] = [lab["find_virial"]]
    if r.on("ae"):
        term = r.pool(lambda f, i: [err(lab["atom_ener"][f, i] - out["atom_energy"][f, i, 0])])
        met[f"{name}_ae"] = math.sqrt(term) if mse else term
        if mse:
            met["l2_atom_ener_loss"] = term
        loss += r.pref("ae") * lab["find_atom_ener"] * term
        finds[f"{name}_ae"] = finds["l2_atom_ener_loss"] = [lab["find_atom_ener"]]
    return _finish(loss, met, finds)
