r"""The ``ener_spin`` loss (``loss.type = "ener_spin"``; SPEC 8.1, 8.3).

Notation as in :mod:`dpcore.loss.ener` (``m_fi`` = model ``mask`` of the real atoms, ``inv_f = 1/N_f``,
``pool`` the masked mean).  ``dF_r`` is the residual of the real-atom force (eV/Å), ``dF_m`` of the
magnetic force ``force_mag`` (eV/μB).  ``sel`` = atoms with ``mask_mag`` (model output (nf, nloc, 1)
bool: magnetic type with ``virtual_scale > 0``) and ``m``; ``n_sel = |sel|``.

Options (defaults in brackets)
------------------------------
start_pref_X / limit_pref_X, X in e [0.02 / 1], fr [1000 / 1], fm [10000 / 10], v [0 / 0], ae [0 / 0]:
    ``pref_X(t) = limit + (start - limit) * lr(t) / start_lr``; a term is ACTIVE when start OR limit is
    non-zero (dpcore's rule on every backend; DeePMD-kit's PyTorch needs both).
loss_func ["mse"]: ``"mse"`` or ``"mae"``.
intensive_ener_virial [False]: MSE energy/virial terms scale by ``inv_f^2`` (else legacy ``inv_f``).
enable_atom_ener_coeff [False]: predicted energy ``E_f = sum_i c_fi e_fi``.
start_pref_pf / limit_pref_pf, relative_f: accepted (input schema) and ignored, as DeePMD-kit does;
    a non-default value gives a UserWarning.

Terms::

    MSE                                             MAE
    e : pref_e  find_e  mean_f(dE_f^2 inv_f^p)      mean_f(|dE_f| inv_f)
    fr: pref_fr find_f  pool(dF_r^2)                pool(|dF_r|)
    fm: pref_fm find_fm sum_sel dF_m^2 / (3 n_sel)  sum_sel |dF_m| / (3 n_sel)     (0 if n_sel = 0)
    v : pref_v  find_v  mean_f(mean_9(dV^2) inv_f^p) mean_f(mean_9|dV| inv_f)
    ae: pref_ae find_ae pool(de^2)                  pool(|de|)

Metrics: MSE ``rmse_e`` (per atom, ``inv^2``), ``rmse_fr``, ``rmse_fm``, ``rmse_v`` (per atom), ``rmse_ae``,
``rmse = sqrt(L)``, and ``l2_ener_loss``, ``l2_force_r_loss``, ``l2_force_m_loss``, ``l2_virial_loss``,
``l2_atom_ener_loss``; MAE ``mae_e, mae_fr, mae_fm, mae_v, mae_ae, rmse``.  NaN when the label is missing.
"""

from __future__ import annotations

import warnings

from .common import Loss

SPIN_DEFAULTS = {
    "start_pref_e": 0.02, "limit_pref_e": 1.0, "start_pref_fr": 1000, "limit_pref_fr": 1.0,
    "start_pref_fm": 10000, "limit_pref_fm": 10.0, "start_pref_v": 0.0, "limit_pref_v": 0.0,
    "start_pref_ae": 0.0, "limit_pref_ae": 0.0, "start_pref_pf": 0.0, "limit_pref_pf": 0.0,
    "relative_f": None, "enable_atom_ener_coeff": False, "loss_func": "mse", "intensive_ener_virial": False,
}
L2 = {"e": "ener", "fr": "force_r", "fm": "force_m", "v": "virial", "ae": "atom_ener"}  # l2_<name>_loss keys


class EnergySpinLoss(Loss):
    """The ``ener_spin`` loss (module docstring: options, formulas, metrics)."""

    TYPE = "ener_spin"
    CLASS, VERSION = "EnergySpinLoss", 2
    DEFAULTS = SPIN_DEFAULTS
    TERMS = ("e", "fr", "fm", "v", "ae")

    def __init__(self, loss_cfg: dict, backend: str = "numpy", start_lr: float = 1.0):
        super().__init__(loss_cfg, backend, start_lr)
        c = self.config
        ignored = [k for k in ("start_pref_pf", "limit_pref_pf", "relative_f") if c[k] != SPIN_DEFAULTS[k]]
        if ignored:
            warnings.warn(f"loss (ener_spin): {ignored} are accepted but ignored by the ener_spin loss",
                          UserWarning, stacklevel=3)

    @property
    def label_requirements(self) -> list:
        """Labels read by the active terms (each with its ``find_<name>`` flag)."""
        names = {"e": "energy", "fr": "force", "fm": "force_mag", "v": "virial", "ae": "atom_ener"}
        out = [names[t] for t in self.TERMS if self.active[t]]
        if self.enable_atom_ener_coeff and self.active["e"]:
            out.append("atom_ener_coeff")
        return out

    def _metric_keys(self) -> list:
        mse = self.loss_func == "mse"
        keys = ["rmse"]
        for t in self.TERMS:
            if self.active[t]:
                keys += [f"rmse_{t}", f"l2_{L2[t]}_loss"] if mse else [f"mae_{t}"]
        return keys

    def _compute(self, xp, out, labels, red, pref, mae):
        nf, nloc = red.nf, red.nloc
        a, mse = self.active, self.loss_func == "mse"
        p = 2 if self.intensive else 1
        terms, met = [], {}

        def add(t, find, value, rmse2=None, l2=None):
            """Term ``t``: loss value; MSE metrics rmse_t = sqrt(rmse2), l2_*_loss = l2 (default: value)."""
            if mse:
                met[f"rmse_{t}"] = self.gate(xp.sqrt(value if rmse2 is None else rmse2), find)
                met[f"l2_{L2[t]}_loss"] = self.gate(value if l2 is None else l2, find)
            else:
                met[f"mae_{t}"] = self.gate(value, find)
            terms.append(pref[t] * find * value)

        ae_pred = xp.reshape(self.f64(out["atom_energy"]), (nf, nloc))
        if a["e"]:
            if self.enable_atom_ener_coeff:
                e_pred = xp.sum(self.label(labels, "atom_ener_coeff", (nf, nloc), 1.0) * ae_pred, axis=1)
            else:
                e_pred = xp.reshape(self.f64(out["energy"]), (nf,))
            d = self.label(labels, "energy", (nf,)) - e_pred
            find = self.find(labels, "energy")
            if mse:
                add("e", find, red.frame_mean(d * d, p), red.frame_mean(d * d, 2), red.frame_mean(d * d))
            else:
                add("e", find, red.frame_mean(xp.abs(d), 1))
        if a["fr"]:
            df = self.label(labels, "force", (nf, nloc, 3)) - self.f64(out["force"])
            add("fr", self.find(labels, "force"), red.pool(df * df) if mse else red.pool(xp.abs(df)))
        if a["fm"]:
            if out.get("mask_mag") is None:
                raise KeyError("loss (ener_spin): the model output has no 'mask_mag' (magnetic atoms); "
                               "the force_mag term needs a spin model")
            sel = xp.reshape(xp.astype(out["mask_mag"], xp.float64), (nf, nloc)) * red.m
            n_sel = xp.sum(sel)
            denom = 3.0 * xp.where(n_sel > 0.0, n_sel, 1.0)  # numerators are 0 when n_sel = 0
            dfm = self.label(labels, "force_mag", (nf, nloc, 3)) - self.f64(out["force_mag"])
            err = dfm * dfm if mse else xp.abs(dfm)
            add("fm", self.find(labels, "force_mag"), xp.sum(sel[:, :, None] * err) / denom)
        if a["v"]:
            dv = self.label(labels, "virial", (nf, 9)) - xp.reshape(self.f64(out["virial"]), (nf, 9))
            find = self.find(labels, "virial")
            if mse:
                dv2 = xp.sum(dv * dv, axis=1) / 9.0
                add("v", find, red.frame_mean(dv2, p), red.frame_mean(dv2, 2), red.frame_mean(dv2))
            else:
                add("v", find, red.frame_mean(xp.sum(xp.abs(dv), axis=1) / 9.0, 1))
        if a["ae"]:
            dae = self.label(labels, "atom_ener", (nf, nloc)) - ae_pred
            add("ae", self.find(labels, "atom_ener"), red.pool(dae * dae) if mse else red.pool(xp.abs(dae)))
        return terms, met
