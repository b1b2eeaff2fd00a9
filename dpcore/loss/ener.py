r"""The ``ener`` loss (``loss.type = "ener"``, alias ``"ener_hess"``; SPEC 8.1-8.2).

Notation: ``nf`` frames, ``N = nloc`` atoms; ``m_fi`` the model's atom ``mask`` (real atom, type not
in ``atom_exclude_types``), ``N_f = sum_i m_fi``, ``inv_f = 1/N_f`` (0 if ``N_f = 0``).  Residuals are
label minus prediction: ``dE_f`` (eV), ``dF_fi`` (eV/Å, 3-vector), ``dV_f`` (eV, 9), ``de_fi`` (eV).
``pool(x) = sum_{f,i,c} m_fi x_fic / (ncomp * sum m)`` is the masked mean over atoms (and components);
``mean_f`` the mean over frames.  All reductions are float64.

Options (normalised ``loss`` section, SPEC 11.5; defaults in brackets)
---------------------------------------------------------------------
start_pref_X / limit_pref_X, X in e [0.02 / 1], f [1000 / 1], v [0 / 0], ae [0 / 0], pf [0 / 0], gf [0 / 0]:
    ``pref_X(t) = limit + (start - limit) * lr(t) / start_lr``.  A term is ACTIVE when its start OR limit
    prefactor is non-zero -- dpcore's rule on every backend (DeePMD-kit's NumPy/JAX/TF rule; its
    PyTorch/Paddle backends need both non-zero and silently drop a ``start 0, limit 1`` term; dpcore
    does not).  Inactive terms have no loss contribution and no metric.
start_pref_h / limit_pref_h [0 / 0]: Hessian term, not supported (non-zero -> NotImplementedError).
loss_func ["mse"]: ``"mse"`` or ``"mae"`` (else ValueError).
intensive_ener_virial [False]: MSE energy/virial terms scale by ``inv_f^p`` with ``p = 2`` (else legacy
    ``p = 1``).  Ignored by MAE and Huber.
relative_f [None]: ``dF_fi <- dF_fi / (|F^label_fi|_2 + relative_f)``; used by the f, pf and gf terms.
enable_atom_ener_coeff [False]: predicted energy ``E_f = sum_i c_fi e_fi``, ``c`` = label ``atom_ener_coeff``.
use_default_pf [False]: ``find_pf = 1`` and a missing ``atom_pref`` counts as 1 (else ``find_pf =
    find_atom_pref``).  Not available on TensorFlow and Paddle (NotImplementedError at construction,
    SPEC Decisions; read from the adapter's ``capabilities["use_default_pf"]``).
numb_generalized_coord [0]: ``ngc``; ``drdq`` label (nf, N*3*ngc).  gf active with ``ngc < 1`` -> RuntimeError.
use_huber [False], huber_delta [0.01] (float, or ``[d_e, d_f, d_v]``; other lengths -> ValueError):
    MSE branch uses ``h_d(x) = x^2/2 if |x| <= d else d(|x| - d/2)``.  With pf, gf or relative_f ->
    RuntimeError.
f_use_norm [False]: force terms on ``|dF_fi|_2`` per atom instead of components; needs use_huber or
    loss_func "mae" (RuntimeError otherwise).

Terms (``find_L``: 1 if label L is present in the batch, else 0 -> the term contributes 0)
-------------------------------------------------------------------------------------------
MSE::

    e : pref_e  find_e        mean_f(dE_f^2 inv_f^p)        Huber: mean_f h_de(dE_f inv_f)
    f : pref_f  find_f        pool(dF^2)                    Huber: pool(h_df(dF)) or pool(h_df(|dF_i|))
    v : pref_v  find_v        mean_f(mean_9(dV^2) inv_f^p)  Huber: mean_{f,9} h_dv(dV inv_f)
    ae: pref_ae find_ae       pool(de^2)                    Huber: pool(h_de(de))
    pf: pref_pf find_f find_pf pool(dF^2 w)                 (w = atom_pref, repeated over xyz)
    gf: pref_gf find_f find_drdq mean_{f,q}(dG_fq^2),  dG_fq = sum_{3N} drdq[f, :, q] (m dF)[f, :]

MAE: ``mean_f(|dE_f| inv_f)``, ``pool(|dF|)`` (f_use_norm: ``pool(|dF_i|_2)``), ``mean_f(mean_9|dV_f| inv_f)``,
``pool(|de|)``, ``pool(|dF| w)``; the gf term stays squared.

Metrics (0-d float64; NaN when the label is missing)
----------------------------------------------------
MSE: ``rmse_e = sqrt(mean_f(dE^2 inv^2))`` (per atom), ``rmse_f = sqrt(pool(dF^2))``,
``rmse_v = sqrt(mean_f(mean_9(dV^2) inv^2))`` (per atom), ``rmse_ae = sqrt(pool(de^2))``,
``rmse_pf = sqrt(pool(dF^2 w))``, ``rmse_gf = sqrt(mean(dG^2))``, ``rmse = sqrt(L)``; not displayed:
``l2_ener_loss = mean(dE^2)``, ``l2_force_loss = pool(dF^2)``, ``l2_virial_loss = mean(dV^2)``,
``l2_atom_ener_loss``, ``l2_pref_force_loss``, ``l2_gen_force_loss``.  Huber keeps these plain RMSEs.
MAE: ``mae_e, mae_f, mae_v, mae_ae, mae_pf`` (the term expressions), ``rmse_gf``, ``rmse``.
``mae=True`` call flag (MSE): also ``mae_e`` (per atom), ``mae_e_all``, ``mae_f``, ``mae_v``.
"""

from __future__ import annotations

from .common import Loss, huber, safe_norm

ENER_DEFAULTS = {
    "start_pref_e": 0.02, "limit_pref_e": 1.0, "start_pref_f": 1000, "limit_pref_f": 1.0,
    "start_pref_v": 0.0, "limit_pref_v": 0.0, "start_pref_h": 0.0, "limit_pref_h": 0.0,
    "start_pref_ae": 0.0, "limit_pref_ae": 0.0, "start_pref_pf": 0.0, "limit_pref_pf": 0.0,
    "use_default_pf": False, "relative_f": None, "enable_atom_ener_coeff": False,
    "start_pref_gf": 0.0, "limit_pref_gf": 0.0, "numb_generalized_coord": 0, "use_huber": False,
    "loss_func": "mse", "f_use_norm": False, "huber_delta": 0.01, "intensive_ener_virial": False,
}


class EnergyLoss(Loss):
    """The ``ener`` loss (module docstring: options, formulas, metrics)."""

    TYPE = "ener"
    CLASS, VERSION = "EnergyLoss", 4
    DEFAULTS = ENER_DEFAULTS
    TERMS = ("e", "f", "v", "ae", "pf", "gf")

    def __init__(self, loss_cfg: dict, backend: str = "numpy", start_lr: float = 1.0):
        super().__init__(loss_cfg, backend, start_lr)
        c = self.config
        if c["start_pref_h"] != 0 or c["limit_pref_h"] != 0:
            raise NotImplementedError("loss: the Hessian term (start_pref_h / limit_pref_h) is not supported by dpcore")
        self.use_default_pf = bool(c["use_default_pf"])
        if self.use_default_pf:
            self._backend_refuses("use_default_pf")
        self.relative_f = None if c["relative_f"] is None else float(c["relative_f"])
        self.ngc = int(c["numb_generalized_coord"])
        if self.active["gf"] and self.ngc < 1:
            raise RuntimeError("When generalized force loss is used, the dimension of generalized coordinates "
                               "should be larger than 0 (loss/numb_generalized_coord = "
                               f"{c['numb_generalized_coord']})")
        self.use_huber = bool(c["use_huber"])
        delta = c["huber_delta"]
        if isinstance(delta, (list, tuple)):
            if len(delta) != 3:
                raise ValueError("loss/huber_delta: a list must have 3 values [delta_e, delta_f, delta_v], "
                                 f"got {len(delta)}: {list(delta)}")
            self.huber_delta = tuple(float(d) for d in delta)
        else:
            self.huber_delta = (float(delta),) * 3
        if self.use_huber and (self.active["pf"] or self.active["gf"] or self.relative_f is not None):
            raise RuntimeError("Huber loss is not implemented for force with atom_pref, generalized force "
                               "and relative force (loss/use_huber with pf, gf or relative_f).")
        self.f_use_norm = bool(c["f_use_norm"])
        if self.f_use_norm and not (self.use_huber or self.loss_func == "mae"):
            raise RuntimeError("f_use_norm can only be True when use_huber or loss_func='mae' "
                               "(loss/f_use_norm).")

    @property
    def label_requirements(self) -> list:
        """Labels read by the active terms (each with its ``find_<name>`` flag)."""
        a, out = self.active, []
        if a["e"]:
            out.append("energy")
        if a["f"] or a["pf"] or a["gf"]:
            out.append("force")
        if a["v"]:
            out.append("virial")
        if a["ae"]:
            out.append("atom_ener")
        if a["pf"]:
            out.append("atom_pref")
        if a["gf"]:
            out.append("drdq")
        if self.enable_atom_ener_coeff and a["e"]:
            out.append("atom_ener_coeff")
        return out

    def _metric_keys(self) -> list:
        a, mse = self.active, self.loss_func == "mse"
        keys = ["rmse"]
        for t, l2 in (("e", "ener"), ("f", "force"), ("v", "virial"), ("ae", "atom_ener"), ("pf", "pref_force")):
            if a[t]:
                keys += [f"rmse_{t}", f"l2_{l2}_loss"] if mse else [f"mae_{t}"]
        if a["gf"]:
            keys += ["rmse_gf"] + (["l2_gen_force_loss"] if mse else [])
        return keys

    def _compute(self, xp, out, labels, red, pref, mae):
        nf, nloc = red.nf, red.nloc
        a, mse = self.active, self.loss_func == "mse"
        de_, df_, dv_ = self.huber_delta
        huber_on = mse and self.use_huber
        terms, met = [], {}
        ae_pred = xp.reshape(self.f64(out["atom_energy"]), (nf, nloc))
        if a["e"]:
            find = self.find(labels, "energy")
            if self.enable_atom_ener_coeff:
                e_pred = xp.sum(self.label(labels, "atom_ener_coeff", (nf, nloc), 1.0) * ae_pred, axis=1)
            else:
                e_pred = xp.reshape(self.f64(out["energy"]), (nf,))
            d = self.label(labels, "energy", (nf,)) - e_pred
            d2 = d * d
            if not mse:
                val = red.frame_mean(xp.abs(d), 1)
                met["mae_e"] = self.gate(val, find)
            else:
                val = red.frame_mean(huber(d * red.inv, de_)) if huber_on else red.frame_mean(d2, 2 if self.intensive else 1)
                met["rmse_e"] = self.gate(xp.sqrt(red.frame_mean(d2, 2)), find)
                met["l2_ener_loss"] = self.gate(red.frame_mean(d2), find)
                if mae:
                    met["mae_e"] = self.gate(red.frame_mean(xp.abs(d), 1), find)
                    met["mae_e_all"] = self.gate(red.frame_mean(xp.abs(d)), find)
            terms.append(pref["e"] * find * val)
        if a["f"] or a["pf"] or a["gf"]:
            find_f = self.find(labels, "force")
            f_hat = self.label(labels, "force", (nf, nloc, 3))
            df = f_hat - self.f64(out["force"])
            if self.relative_f is not None:
                df = df / (safe_norm(f_hat)[:, :, None] + self.relative_f)
            df2 = df * df
        if a["f"]:
            if not mse:
                val = red.pool(safe_norm(df)) if self.f_use_norm else red.pool(xp.abs(df))
                met["mae_f"] = self.gate(val, find_f)
            else:
                if huber_on:
                    val = red.pool(huber(safe_norm(df), df_)) if self.f_use_norm else red.pool(huber(df, df_))
                else:
                    val = red.pool(df2)
                l2 = red.pool(df2)
                met["rmse_f"] = self.gate(xp.sqrt(l2), find_f)
                met["l2_force_loss"] = self.gate(l2, find_f)
                if mae:
                    met["mae_f"] = self.gate(red.pool(xp.abs(df)), find_f)
            terms.append(pref["f"] * find_f * val)
        if a["v"]:
            find = self.find(labels, "virial")
            dv = self.label(labels, "virial", (nf, 9)) - xp.reshape(self.f64(out["virial"]), (nf, 9))
            dv2 = xp.sum(dv * dv, axis=1) / 9.0
            if not mse:
                val = red.frame_mean(xp.sum(xp.abs(dv), axis=1) / 9.0, 1)
                met["mae_v"] = self.gate(val, find)
            else:
                val = (red.mean(huber(dv * red.inv[:, None], dv_)) if huber_on
                       else red.frame_mean(dv2, 2 if self.intensive else 1))
                met["rmse_v"] = self.gate(xp.sqrt(red.frame_mean(dv2, 2)), find)
                met["l2_virial_loss"] = self.gate(red.frame_mean(dv2), find)
                if mae:
                    met["mae_v"] = self.gate(red.frame_mean(xp.sum(xp.abs(dv), axis=1) / 9.0, 1), find)
            terms.append(pref["v"] * find * val)
        if a["ae"]:
            find = self.find(labels, "atom_ener")
            dae = self.label(labels, "atom_ener", (nf, nloc)) - ae_pred
            if not mse:
                val = red.pool(xp.abs(dae))
                met["mae_ae"] = self.gate(val, find)
            else:
                l2 = red.pool(dae * dae)
                val = red.pool(huber(dae, de_)) if huber_on else l2
                met["rmse_ae"] = self.gate(xp.sqrt(l2), find)
                met["l2_atom_ener_loss"] = self.gate(l2, find)
            terms.append(pref["ae"] * find * val)
        if a["pf"]:
            find_ap = self.find(labels, "atom_pref")
            w = self.label(labels, "atom_pref", (nf, nloc), 1.0)
            if self.use_default_pf:  # a missing atom_pref counts as 1 whatever the loader filled in
                w = self._where_found(find_ap, w, 1.0)
                find_ap = 1.0
            find = find_f * find_ap
            w = w[:, :, None]
            if not mse:
                val = red.pool(xp.abs(df) * w)
                met["mae_pf"] = self.gate(val, find)
            else:
                val = red.pool(df2 * w)
                met["rmse_pf"] = self.gate(xp.sqrt(val), find)
                met["l2_pref_force_loss"] = self.gate(val, find)
            terms.append(pref["pf"] * find * val)
        if a["gf"]:
            find = find_f * self.find(labels, "drdq")
            width = nloc * 3 * self.ngc
            if labels.get("drdq") is not None:
                width = 1
                for s in labels["drdq"].shape[1:]:
                    width *= int(s)
            if width != nloc * 3 * self.ngc:
                raise RuntimeError(f"label drdq has {width} values per frame; expected natoms * 3 * "
                                   f"numb_generalized_coord = {nloc} * 3 * {self.ngc} (loss/numb_generalized_coord)")
            drdq = self.label(labels, "drdq", (nf, nloc * 3, self.ngc))
            mdf = xp.reshape(red.m[:, :, None] * df, (nf, nloc * 3, 1))
            dgen = xp.sum(drdq * mdf, axis=1)  # (nf, ngc)
            val = red.mean(dgen * dgen)
            met["rmse_gf"] = self.gate(xp.sqrt(val), find)
            if mse:
                met["l2_gen_force_loss"] = self.gate(val, find)
            terms.append(pref["gf"] * find * val)
        return terms, met

    def _where_found(self, find, x, fill: float):
        if isinstance(find, float):
            return x if find > 0.0 else self._xp.zeros_like(x) + fill
        return self._xp.where(find > 0.0, x, fill)
