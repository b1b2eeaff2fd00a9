"""The ``ener`` and ``ener_spin`` losses (SPEC 8) against a straightforward loop implementation of the formulas.

Everything here runs on NumPy (and once on array-api-strict); framework runs are in
tests/isolated/test_loss_*.py, which reuse :func:`make_batch`, :func:`ref_ener`, :func:`ref_spin`.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from dpcore.loss import EnergyLoss, EnergySpinLoss, make_loss
from helpers import TOL

START_LR = 1e-3
LR = 3.7e-4  # current learning rate: prefactors mix start and limit

# --------------------------------------------------------------------------------------------------- data
DEFAULT_FILL = {"energy": 0.0, "force": 0.0, "virial": 0.0, "atom_ener": 0.0, "atom_pref": 1.0,
                "atom_ener_coeff": 1.0, "drdq": 0.0, "force_mag": 0.0}


def make_batch(seed=0, nf=3, nloc=5, ngc=2, missing=(), masked=True, mag=(1, 0, 1, 1, 0)):
    """Model outputs and labels of a small batch (NumPy float64; mask int32; find flags Python floats).

    masked: frame 1 has two padded atoms and frame 2 one excluded atom (non-uniform N_f).
    missing: label names whose find flag is 0 (their arrays filled with the loader's default).
    mag: which atom slots are magnetic (mask_mag) for the spin outputs.
    """
    rng = np.random.default_rng(seed)
    mask = np.ones((nf, nloc), np.int32)
    if masked:
        mask[1, 3:] = 0
        mask[min(2, nf - 1), 0] = 0
    ae = rng.normal(-1.0, 0.3, (nf, nloc, 1)) * mask[..., None]
    out = {
        "atom_energy": ae, "energy": ae.sum(axis=1), "force": rng.normal(size=(nf, nloc, 3)),
        "virial": rng.normal(0, 3, (nf, 9)), "mask": mask, "force_mag": rng.normal(size=(nf, nloc, 3)),
        "mask_mag": np.broadcast_to(np.asarray(mag, bool)[None, :nloc, None], (nf, nloc, 1)).copy(),
    }
    labels = {
        "energy": out["energy"] + rng.normal(0, 2.0, (nf, 1)),
        "force": out["force"] + rng.normal(0, 1.0, (nf, nloc, 3)) * rng.uniform(0.05, 2, (nf, nloc, 1)),
        "virial": out["virial"] + rng.normal(0, 3, (nf, 9)),
        "atom_ener": rng.normal(-1.0, 0.5, (nf, nloc)),
        "atom_pref": rng.uniform(0.5, 2.0, (nf, nloc)),
        "atom_ener_coeff": rng.choice([-1.0, 1.0, 2.0], (nf, nloc)),
        "drdq": rng.normal(size=(nf, nloc * 3 * ngc)),
        "force_mag": out["force_mag"] + rng.normal(size=(nf, nloc, 3)),
    }
    for k in DEFAULT_FILL:
        labels[f"find_{k}"] = 1.0
    for k in missing:
        labels[k] = np.full_like(labels[k], DEFAULT_FILL[k])
        labels[f"find_{k}"] = 0.0
    return out, labels


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


def assert_matches(got, want, tol=TOL["float64"]):
    loss, met = got
    wloss, wmet = want
    assert set(met) == set(wmet), (sorted(met), sorted(wmet))
    assert abs(float(loss) - wloss) <= tol * max(abs(wloss), 1e-300), (float(loss), wloss)
    for k, v in wmet.items():
        g = float(met[k])
        if math.isnan(v):
            assert math.isnan(g), k
        else:
            assert abs(g - v) <= tol * max(abs(v), 1e-300), (k, g, v)


# ------------------------------------------------------------------------------------------- option matrix
BASE_PREFS = {"start_pref_e": 0.02, "limit_pref_e": 1.0, "start_pref_f": 1000, "limit_pref_f": 1.0,
              "start_pref_v": 0.0, "limit_pref_v": 1.0,  # OR rule: start 0, limit 1 is active
              "start_pref_ae": 1.0, "limit_pref_ae": 0.0}
PF = {"off": {}, "pf": {"start_pref_pf": 2.0, "limit_pref_pf": 1.0},
      "default_pf": {"start_pref_pf": 2.0, "limit_pref_pf": 1.0, "use_default_pf": True}}
GF = {"off": {}, "gf": {"start_pref_gf": 0.5, "limit_pref_gf": 3.0, "numb_generalized_coord": 2}}
HUBER = {"off": {}, "h0.3": {"use_huber": True, "huber_delta": 0.3},
         "h3": {"use_huber": True, "huber_delta": [0.3, 0.5, 0.1]}}
MISSING = {"all": (), "no_e_v": ("energy", "virial"), "no_f_ae": ("force", "atom_ener"),
           "no_pref_drdq_coeff": ("atom_pref", "drdq", "atom_ener_coeff")}


def _matrix():
    for lf, inten, rel, pf, miss, hub, norm, coeff, gf in itertools.product(
            ("mse", "mae"), (False, True), (None, 0.5), PF, MISSING, HUBER, (False, True), (False, True), GF):
        cfg = {**BASE_PREFS, "loss_func": lf, "intensive_ener_virial": inten, "relative_f": rel,
               "f_use_norm": norm, "enable_atom_ener_coeff": coeff, **PF[pf], **HUBER[hub], **GF[gf]}
        if rel is None:
            del cfg["relative_f"]
        cid = f"{lf}-{'int' if inten else 'ext'}-rel{rel}-{pf}-{miss}-{hub}-norm{int(norm)}-coeff{int(coeff)}-{gf}"
        yield pytest.param(cfg, MISSING[miss], id=cid)


MATRIX = list(_matrix())


@pytest.mark.parametrize("cfg,missing", MATRIX)
def test_ener_option_matrix(cfg, missing):
    huber_on = cfg.get("use_huber", False)
    if huber_on and ("start_pref_pf" in cfg or "start_pref_gf" in cfg or cfg.get("relative_f") is not None):
        with pytest.raises(RuntimeError, match="Huber loss is not implemented"):
            make_loss(cfg, start_lr=START_LR)
        return
    if cfg["f_use_norm"] and not (huber_on or cfg["loss_func"] == "mae"):
        with pytest.raises(RuntimeError, match="f_use_norm can only be True when use_huber or loss_func='mae'"):
            make_loss(cfg, start_lr=START_LR)
        return
    loss = make_loss(cfg, "numpy", START_LR)
    out, labels = make_batch(missing=missing)
    assert_matches(loss(out, labels, LR), ref_ener(cfg, out, labels))
    if cfg["loss_func"] == "mse":  # the mae=True flag of evaluation tools
        assert_matches(loss(out, labels, LR, mae=True), ref_ener(cfg, out, labels, mae=True))


def test_option_matrix_is_complete():
    ids = [p.id for p in MATRIX]
    assert len(ids) == len(set(ids)) == 2 * 2 * 2 * 3 * 4 * 3 * 2 * 2 * 2


SPIN_MATRIX = [
    pytest.param({**SPIN_PREFS, "loss_func": lf, "intensive_ener_virial": inten, "enable_atom_ener_coeff": coeff},
                 MISSING_SPIN[miss], mag, id=f"{lf}-{'int' if inten else 'ext'}-coeff{int(coeff)}-{miss}-mag{mag}")
    for SPIN_PREFS, MISSING_SPIN in [(
        {"start_pref_e": 0.02, "limit_pref_e": 1.0, "start_pref_fr": 1000, "limit_pref_fr": 1.0,
         "start_pref_fm": 0.0, "limit_pref_fm": 10.0, "start_pref_v": 2.0, "limit_pref_v": 0.0,
         "start_pref_ae": 1.0, "limit_pref_ae": 1.0},
        {"all": (), "no_e_fm": ("energy", "force_mag"), "no_f_v_ae": ("force", "virial", "atom_ener")})]
    for lf in ("mse", "mae") for inten in (False, True) for coeff in (False, True) for miss in MISSING_SPIN
    for mag in ("10110", "00000", "11111")
]


@pytest.mark.parametrize("cfg,missing,mag", SPIN_MATRIX)
def test_ener_spin_option_matrix(cfg, missing, mag):
    loss = make_loss({"type": "ener_spin", **cfg}, "numpy", START_LR)
    out, labels = make_batch(seed=5, missing=missing, mag=[int(x) for x in mag])
    got = loss(out, labels, LR)
    assert_matches(got, ref_spin(cfg, out, labels))
    if mag == "00000" and "force_mag" not in missing:  # no magnetic atom: term and metric 0 (PT nan_to_num)
        assert float(got[1]["rmse_fm" if cfg["loss_func"] == "mse" else "mae_fm"]) == 0.0


def test_spin_defaults_and_keys():
    loss = make_loss({"type": "ener_spin"}, start_lr=START_LR)
    out, labels = make_batch(seed=2)
    assert_matches(loss(out, labels, LR), ref_spin({}, out, labels))
    assert loss.display_keys == ["rmse", "rmse_e", "rmse_fm", "rmse_fr"]
    assert loss.label_requirements == ["energy", "force", "force_mag"]
    on = make_loss({"type": "ener_spin", "start_pref_v": 1, "limit_pref_v": 1, "loss_func": "mae"})
    assert on.display_keys == ["mae_e", "mae_fm", "mae_fr", "mae_v", "rmse"]  # SPEC 12
    assert make_loss({"type": "ener_spin", "limit_pref_v": 1}).display_keys == [
        "rmse", "rmse_e", "rmse_fm", "rmse_fr", "rmse_v"]
    with pytest.warns(UserWarning, match="ignored by the ener_spin loss"):
        make_loss({"type": "ener_spin", "relative_f": 0.1, "start_pref_pf": 1.0})
    out.pop("mask_mag")
    with pytest.raises(KeyError, match="mask_mag"):
        loss(out, labels, LR)


# ------------------------------------------------------------------------------------- activation, keys
def test_term_active_when_start_or_limit_nonzero():
    """dpcore's OR rule on every backend: ``start 0, limit 1`` trains the virial (PyTorch's AND rule would not)."""
    out, labels = make_batch(seed=1)
    base = make_loss({}, start_lr=START_LR)
    for start, limit in ((0.0, 1.0), (1.0, 0.0), (2.0, 3.0)):
        cfg = {"start_pref_v": start, "limit_pref_v": limit}
        loss = make_loss(cfg, start_lr=START_LR)
        assert loss.active["v"] and "rmse_v" in loss.display_keys and "virial" in loss.label_requirements
        for lr in (START_LR, 0.0, LR):
            total, met = loss(out, labels, lr)
            assert_matches((total, met), ref_ener(cfg, out, labels, lr=lr))
            pref = limit + (start - limit) * lr / START_LR
            extra = float(total) - float(base(out, labels, lr)[0])
            assert (extra > 0) == (pref > 0), (start, limit, lr)
    off = make_loss({"start_pref_v": 0.0, "limit_pref_v": 0.0})
    assert not off.active["v"] and "rmse_v" not in off(out, labels, LR)[1]


def test_prefactor_follows_learning_rate_exactly():
    out, labels = make_batch(seed=4, masked=False)
    cfg = {"start_pref_e": 0.0, "limit_pref_e": 0.0, "start_pref_f": 7.0, "limit_pref_f": 2.0}
    loss = make_loss(cfg, start_lr=START_LR)
    for lr in (START_LR, 0.5 * START_LR, 0.0):
        total, met = loss(out, labels, lr)
        assert float(total) == pytest.approx((2.0 + 5.0 * lr / START_LR) * float(met["l2_force_loss"]), rel=1e-14)
    from dpcore.loss.common import prefactor
    assert prefactor(1000, 1, 1e-3, 1e-3) == 1000 and prefactor(1000, 1, 0.0, 1e-3) == 1
    lr_arr = np.asarray(LR)  # a 0-d array learning rate
    assert_matches(loss(out, labels, lr_arr), ref_ener(cfg, out, labels))


@pytest.mark.parametrize("cfg,keys", [
    ({}, ["rmse", "rmse_e", "rmse_f"]),
    ({"start_pref_v": 1, "limit_pref_v": 1}, ["rmse", "rmse_e", "rmse_f", "rmse_v"]),
    ({"loss_func": "mae", "limit_pref_v": 1}, ["mae_e", "mae_f", "mae_v", "rmse"]),
    ({"start_pref_ae": 1, "start_pref_pf": 1, "start_pref_gf": 1, "numb_generalized_coord": 2},
     ["rmse", "rmse_ae", "rmse_e", "rmse_f", "rmse_gf", "rmse_pf"]),
    ({"loss_func": "mae", "start_pref_ae": 1, "start_pref_pf": 1, "start_pref_gf": 1, "numb_generalized_coord": 2},
     ["mae_ae", "mae_e", "mae_f", "mae_pf", "rmse", "rmse_gf"]),
    ({"start_pref_e": 0, "limit_pref_e": 0}, ["rmse", "rmse_f"]),
])
def test_display_keys(cfg, keys):
    loss = make_loss(cfg)
    assert loss.display_keys == keys
    out, labels = make_batch()
    _, met = loss(out, labels, LR)
    assert sorted(k for k in met if "l2_" not in k) == keys
    assert list(met) == sorted(met)


def test_missing_labels_give_nan_metrics_and_no_loss():
    cfg = {"start_pref_v": 1.0, "limit_pref_v": 1.0, "start_pref_pf": 1.0, "limit_pref_pf": 1.0}
    out, labels = make_batch(missing=("virial", "atom_pref"))
    loss = make_loss(cfg)
    total, met = loss(out, labels, LR)
    assert math.isnan(float(met["rmse_v"])) and math.isnan(float(met["rmse_pf"]))
    assert not math.isnan(float(met["rmse_e"])) and not math.isnan(float(total))
    only_e_f, _ = make_loss({})(out, labels, LR)
    assert float(total) == pytest.approx(float(only_e_f), rel=1e-14)
    # keys absent from the batch altogether count as missing
    lab = {k: v for k, v in labels.items() if "virial" not in k}
    assert math.isnan(float(loss(out, lab, LR)[1]["rmse_v"]))
    # use_default_pf: a missing atom_pref counts as 1 whatever was filled in, find_pf = 1
    labels["atom_pref"][:] = 0.0
    dflt = make_loss({**cfg, "use_default_pf": True})
    _, met = dflt(out, labels, LR)
    assert float(met["rmse_pf"]) == pytest.approx(float(met["rmse_f"]), rel=1e-14)


def test_no_mask_in_model_output_uses_atype_or_all_atoms():
    out, labels = make_batch(masked=False)
    want = make_loss({})(out, labels, LR)
    out.pop("mask")
    assert_matches(make_loss({})(out, labels, LR), (float(want[0]), {k: float(v) for k, v in want[1].items()}))
    out2, labels2 = make_batch(masked=True)
    mask = out2.pop("mask")
    labels2["atype"] = np.where(mask > 0, 0, -1)
    assert_matches(make_loss({}, start_lr=START_LR)(out2, labels2, LR), ref_ener({}, {**out2, "mask": mask}, labels2))


def test_loss_is_float64_for_float32_outputs():
    out, labels = make_batch()
    out32 = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in out.items()}
    total, met = make_loss({})(out32, labels, LR)
    assert np.asarray(total).dtype == np.float64 and all(np.asarray(v).dtype == np.float64 for v in met.values())


def test_label_requirements():
    assert make_loss({}).label_requirements == ["energy", "force"]
    full = make_loss({"limit_pref_v": 1, "start_pref_ae": 1, "start_pref_pf": 1, "start_pref_gf": 1,
                      "numb_generalized_coord": 2, "enable_atom_ener_coeff": True})
    assert full.label_requirements == ["energy", "force", "virial", "atom_ener", "atom_pref", "drdq",
                                       "atom_ener_coeff"]
    assert make_loss({"start_pref_f": 0, "limit_pref_f": 0, "start_pref_pf": 1}).label_requirements == [
        "energy", "force", "atom_pref"]


def test_serialize_and_alias():
    loss = make_loss({"type": "ener_hess", "start_pref_v": 1.0}, start_lr=START_LR)
    assert isinstance(loss, EnergyLoss)
    s = loss.serialize()
    assert s["@class"] == "EnergyLoss" and s["starter_learning_rate"] == START_LR and s["start_pref_v"] == 1.0
    assert isinstance(make_loss({"type": "ener_spin"}), EnergySpinLoss)


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("cfg,exc,match", [
    ({"loss_func": "l1"}, ValueError, r"loss/loss_func: expected 'mse' or 'mae', got 'l1'"),
    ({"use_huber": True, "huber_delta": [0.1, 0.2]}, ValueError, r"loss/huber_delta: a list must have 3 values"),
    ({"start_pref_gf": 1.0}, RuntimeError, r"dimension of generalized coordinates should be larger than 0"),
    ({"limit_pref_gf": 1.0, "numb_generalized_coord": 0}, RuntimeError, r"generalized coordinates"),
    ({"use_huber": True, "start_pref_pf": 1.0}, RuntimeError, r"Huber loss is not implemented"),
    ({"use_huber": True, "relative_f": 0.1}, RuntimeError, r"Huber loss is not implemented"),
    ({"use_huber": True, "limit_pref_gf": 1.0, "numb_generalized_coord": 1}, RuntimeError, r"Huber loss"),
    ({"f_use_norm": True}, RuntimeError, r"f_use_norm can only be True when use_huber or loss_func='mae'"),
    ({"start_pref_h": 1.0}, NotImplementedError, r"Hessian"),
    ({"type": "dos"}, ValueError, r"loss/type: expected one of"),
    ({"start_pref_x": 1.0}, ValueError, r"unknown keys \['start_pref_x'\]"),
    ({"start_pref_e": -1.0}, ValueError, r"loss/start_pref_e: must be a number >= 0"),
])
def test_construction_errors(cfg, exc, match):
    with pytest.raises(exc, match=match):
        make_loss(cfg)


def test_drdq_width_error():
    loss = make_loss({"start_pref_gf": 1.0, "numb_generalized_coord": 3})
    out, labels = make_batch(ngc=2)
    with pytest.raises(RuntimeError, match=r"label drdq has 30 values per frame; expected .* 5 \* 3 \* 3"):
        loss(out, labels, LR)


@pytest.mark.parametrize("name,label,supported", [
    ("tensorflow", "TensorFlow", False), ("paddle", "Paddle", False), ("torch", "PyTorch", True)])
def test_use_default_pf_capability(name, label, supported):
    """The capability is read from the backend registry: no framework is imported to decide."""
    import sys

    before = {m for m in ("torch", "tensorflow", "paddle") if m in sys.modules}
    cfg = {"use_default_pf": True, "start_pref_pf": 1.0}
    if supported:
        assert make_loss(cfg, backend=name).use_default_pf
    else:
        with pytest.raises(NotImplementedError, match=rf"^{label} backend does not support use_default_pf=True\.$"):
            make_loss(cfg, backend=name)
        make_loss({"start_pref_pf": 1.0}, backend=name)  # without the option: fine
    assert {m for m in ("torch", "tensorflow", "paddle") if m in sys.modules} == before


def test_numpy_and_strict_backends_accept_use_default_pf():
    for be in ("numpy", "array_api_strict"):
        assert make_loss({"use_default_pf": True}, backend=be).use_default_pf


# ---------------------------------------------------------------------------------------- array-api-strict
def test_array_api_strict_same_numbers():
    xps = pytest.importorskip("array_api_strict")
    cfgs = [
        {**BASE_PREFS, "start_pref_pf": 1.0, "start_pref_gf": 1.0, "numb_generalized_coord": 2, "relative_f": 0.3,
         "enable_atom_ener_coeff": True, "intensive_ener_virial": True},
        {**BASE_PREFS, "use_huber": True, "huber_delta": [0.3, 0.5, 0.1], "f_use_norm": True},
        {**BASE_PREFS, "loss_func": "mae", "f_use_norm": True, "start_pref_pf": 1.0, "use_default_pf": True},
    ]
    dev = xps.Device("device1")
    for cfg in cfgs:
        out, labels = make_batch(missing=("virial",))
        to = lambda t: {k: (xps.asarray(v, device=dev) if isinstance(v, np.ndarray) else v) for k, v in t.items()}  # noqa: E731
        got = make_loss(cfg, "array_api_strict", START_LR)(to(out), to(labels), LR)
        assert got[0].device == dev
        assert_matches(got, ref_ener(cfg, out, labels))
    cfg = {"start_pref_v": 1.0, "limit_pref_ae": 1.0, "loss_func": "mae"}
    out, labels = make_batch(seed=3)
    got = make_loss({"type": "ener_spin", **cfg}, "array_api_strict", START_LR)(to(out), to(labels), xps.asarray(LR))
    assert_matches(got, ref_spin(cfg, out, labels))


# ------------------------------------------------------------------ framework checks (tests/isolated/test_loss_*)
FRAMEWORK_CASES = {  # name: (loss section, missing labels); no use_default_pf (refused on TF / Paddle)
    "mse_all_terms": ({**BASE_PREFS, "start_pref_pf": 2.0, "start_pref_gf": 0.5, "numb_generalized_coord": 2,
                       "relative_f": 0.3, "enable_atom_ener_coeff": True, "intensive_ener_virial": True}, ()),
    "mse_missing": ({**BASE_PREFS, "start_pref_pf": 2.0}, ("virial", "atom_pref")),
    "huber_norm": ({**BASE_PREFS, "use_huber": True, "huber_delta": [0.3, 0.5, 0.1], "f_use_norm": True}, ()),
    "mae_norm_pf": ({**BASE_PREFS, "loss_func": "mae", "f_use_norm": True, "limit_pref_pf": 1.0}, ("energy",)),
    "spin_mse": ({"type": "ener_spin", "limit_pref_v": 1.0, "start_pref_ae": 1.0, "intensive_ener_virial": True},
                 ("atom_ener",)),
    "spin_mae": ({"type": "ener_spin", "limit_pref_v": 1.0, "loss_func": "mae", "enable_atom_ener_coeff": True}, ()),
}


def _to_numpy_result(be, res):
    loss, met = res
    return float(be.to_numpy(loss)), {k: float(be.to_numpy(v)) for k, v in met.items()}


def check_backend_values(be, jit: bool = False, tol=TOL["float64"]):
    """Every FRAMEWORK_CASES loss on ``be`` arrays (lr a 0-d float64 array) equals NumPy's to ``tol``."""
    for name, (cfg, missing) in FRAMEWORK_CASES.items():
        out, labels = make_batch(seed=11, missing=missing)
        want = make_loss(cfg, "numpy", START_LR)(out, labels, LR)
        loss = make_loss(cfg, be.name, START_LR)
        fn = be.jit(lambda o, lab, lr: loss(o, lab, lr)) if jit else loss
        got = fn(be.tree_asarray(out), be.tree_asarray(labels), be.asarray(np.asarray(LR)))
        assert be.to_numpy(got[0]).dtype == np.float64, name
        try:
            assert_matches(_to_numpy_result(be, got), _to_numpy_result(be, want), tol)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None


def check_backend_gradient(be, fd_tol=1e-7):
    """d loss / d (force, energy) on ``be`` matches central differences of the NumPy loss; finite at zero residual."""
    cfg, missing = FRAMEWORK_CASES["mse_all_terms"]
    out, labels = make_batch(seed=12, missing=missing)
    np_loss = make_loss(cfg, "numpy", START_LR)
    loss = make_loss(cfg, be.name, START_LR)
    lab_be, out_be = be.tree_asarray(labels), be.tree_asarray(out)

    def f(force, energy):
        return loss({**out_be, "force": force, "energy": energy}, lab_be, LR)[0]

    _, (g_f, g_e) = be.value_and_grad(f, argnums=(0, 1))(be.asarray(out["force"]), be.asarray(out["energy"]))
    g_f, g_e = be.to_numpy(g_f), be.to_numpy(g_e)
    h = 1e-6
    for key, g in (("force", g_f), ("energy", g_e)):
        fd = np.zeros_like(out[key])
        for idx in np.ndindex(out[key].shape):
            vals = []
            for s in (h, -h):
                x = out[key].copy()
                x[idx] += s
                vals.append(float(np_loss({**out, key: x}, labels, LR)[0]))
            fd[idx] = (vals[0] - vals[1]) / (2 * h)
        assert np.max(np.abs(g - fd)) <= fd_tol * np.max(np.abs(fd)), key
    # f_use_norm at an exactly zero force residual: the gradient is finite (no sqrt(0) NaN)
    cfg, _ = FRAMEWORK_CASES["huber_norm"]
    labels["force"][0, 1] = out["force"][0, 1]
    loss = make_loss(cfg, be.name, START_LR)
    lab_be = be.tree_asarray(labels)
    _, (g,) = be.value_and_grad(lambda force: loss({**out_be, "force": force}, lab_be, LR)[0])(be.asarray(out["force"]))
    assert np.all(np.isfinite(be.to_numpy(g)))


def check_use_default_pf_refused(backend: str, label: str):
    with pytest.raises(NotImplementedError, match=rf"^{label} backend does not support use_default_pf=True\.$"):
        make_loss({"use_default_pf": True, "start_pref_pf": 1.0}, backend=backend)
    assert not make_loss({"start_pref_pf": 1.0}, backend=backend).use_default_pf


def test_normalised_config_sections():
    """make_loss takes the normalised loss section of dpcore.config as is (every key known)."""
    from dpcore.config import normalize_config

    base = {"model": {"type_map": ["O"], "descriptor": {"type": "se_e2_a", "sel": [4], "rcut": 3.0, "rcut_smth": 0.5},
                      "fitting_net": {}},
            "learning_rate": {"start_lr": 1e-3, "stop_lr": 1e-5},
            "training": {"training_data": {"systems": "x"}, "numb_steps": 3}}
    for loss in ({}, {"type": "ener_hess", "relative_f": 0.2, "limit_pref_v": 1.0}, {"loss_func": "mae"}):
        cfg = normalize_config({**base, "loss": loss})
        made = make_loss(cfg["loss"], "numpy", cfg["learning_rate"]["start_lr"])
        assert isinstance(made, EnergyLoss) and made.start_lr == 1e-3
    spin = {**base, "model": {**base["model"], "spin": {"use_spin": [True], "virtual_scale": [0.3]}},
            "loss": {"type": "ener_spin"}}
    try:
        cfg = normalize_config(spin)
    except Exception as e:  # the spin model section is owned elsewhere; only the loss is checked here
        pytest.skip(f"spin config not accepted: {e}")
    assert isinstance(make_loss(cfg["loss"]), EnergySpinLoss)
