"""Machinery shared by the ``ener`` and ``ener_spin`` losses (SPEC 8.1).

* :class:`Loss`: option handling (defaults, active terms, backend capabilities) and the call protocol;
* :class:`Reducer`: the masked means of SPEC 8.1 (``inv_f``, ``pool``, ``frame_mean``) in float64;
* :func:`huber`, :func:`safe_norm`: element-wise helpers.

Everything here is written against the array API (namespace of ``model_out["energy"]``), with no
Python control flow on array values: the find flags may be Python floats (then a missing label is
decided in Python) or 0-d arrays (then :meth:`Loss.gate` uses ``where``), so the losses run under
``jax.jit`` and ``tf.function``.
"""

from __future__ import annotations

import numbers

from ..xp import device_of, namespace

NAN = float("nan")


def backend_info(backend: str):
    """The static facts of ``backend`` (:class:`dpcore.backends.registry.BackendInfo`; imports no framework)."""
    from ..backends.registry import info

    return info(backend)


def prefactor(start, limit, lr, start_lr):
    """Loss prefactor at learning rate ``lr`` (SPEC 8.1): ``limit + (start - limit) * lr / start_lr``.

    ``lr`` may be a Python float or a 0-d array (the result is then an array of its namespace).
    """
    return limit + (start - limit) * (lr / start_lr)


def huber(x, delta: float):
    """``h(x) = 0.5 x^2`` if ``|x| <= delta`` else ``delta (|x| - delta/2)`` (element-wise)."""
    xp = namespace(x)
    ax = xp.abs(x)
    return xp.where(ax > delta, delta * (ax - 0.5 * delta), 0.5 * x * x)


def safe_norm(x):
    """Euclidean norm over the last axis, with a zero (not NaN) gradient at ``x = 0``."""
    xp = namespace(x)
    s = xp.sum(x * x, axis=-1)
    pos = s > 0.0
    return xp.where(pos, xp.sqrt(xp.where(pos, s, 1.0)), 0.0)


class Reducer:
    """Masked means over a batch (SPEC 8.1), all in float64.

    mask: (nf, nloc) real atoms not excluded (any dtype; cast to float64).
    ``inv``: (nf,) ``1/N_f`` (0 where ``N_f = 0``), ``N_f = sum_i m_fi``.
    frame_mask: optional (nf,) 1 for real frames, 0 for padding frames (a batch padded to a shape bucket,
    :mod:`dpcore.train.buckets`; their atoms are masked): means over frames count the real frames only.
    """

    def __init__(self, xp, mask, frame_mask=None):
        self.xp = xp
        self.m = xp.astype(mask, xp.float64)
        self.nf, self.nloc = int(mask.shape[0]), int(mask.shape[1])
        self.fm = None if frame_mask is None else xp.astype(frame_mask, xp.float64)
        self._frames = self.nf if frame_mask is None else xp.sum(self.fm)
        n_f = xp.sum(self.m, axis=1)
        pos = n_f > 0.0
        self.inv = xp.where(pos, 1.0 / xp.where(pos, n_f, 1.0), 0.0)
        total = xp.sum(n_f)
        self._total = xp.where(total > 0.0, total, 1.0)  # sum(m x) is 0 when total is 0

    def pool(self, x):
        """``sum_{f,i,c} m_fi x_fic / (ncomp * sum m)`` for x (nf, nloc, ncomp) or (nf, nloc) (ncomp 1)."""
        xp = self.xp
        if len(x.shape) == 2:
            return xp.sum(self.m * x) / self._total
        return xp.sum(self.m[:, :, None] * x) / (int(x.shape[2]) * self._total)

    def frame_mean(self, x, power: int = 0):
        """``mean_f(x_f * inv_f^power)`` for x (nf,)."""
        w = {0: self.fm, 1: self.inv, 2: self.inv * self.inv}[power]  # inv is 0 on padding frames
        return self.xp.sum(x if w is None else x * w) / self._frames

    def mean(self, x):
        """Plain mean over all elements of x (nf, ...) (padding frames, all zero, not counted)."""
        n = 1
        for s in x.shape[1:]:
            n *= int(s)
        if self.fm is not None:
            x = x * self.xp.reshape(self.fm, (-1,) + (1,) * (len(x.shape) - 1))
        return self.xp.sum(x) / (self._frames * max(n, 1))


class Loss:
    """Base of the energy losses: options, active terms, backend check, call protocol.

    Subclasses set ``TYPE``, ``DEFAULTS`` (SPEC 11.5), ``TERMS`` (names with start/limit prefactors)
    and implement ``_compute(xp, model_out, labels, red, pref, mae)`` returning ``(terms, metrics)``.
    """

    TYPE = ""
    DEFAULTS: dict = {}
    TERMS: tuple = ()
    IGNORED: tuple = ("type",)

    def __init__(self, loss_cfg: dict, backend: str = "numpy", start_lr: float = 1.0):
        cfg = {k: v for k, v in dict(loss_cfg).items() if not str(k).startswith("_")}
        unknown = sorted(set(cfg) - set(self.DEFAULTS) - set(self.IGNORED))
        if unknown:
            raise ValueError(f"loss ({self.TYPE}): unknown keys {unknown}; expected some of {sorted(self.DEFAULTS)}")
        self.config = {**self.DEFAULTS, **cfg, "type": self.TYPE}
        if not (isinstance(start_lr, numbers.Real) and start_lr > 0):
            raise ValueError(f"loss: start_lr (learning_rate/start_lr) must be > 0, got {start_lr}")
        self.start_lr = float(start_lr)
        self.backend = backend
        self._backend_info = backend_info(backend)
        self.capabilities = dict(self._backend_info.capabilities)
        for k, v in self.config.items():
            if "_pref_" in k and not (isinstance(v, numbers.Real) and not isinstance(v, bool) and v >= 0):
                raise ValueError(f"loss/{k}: must be a number >= 0, got {v!r}")
        self.loss_func = self.config["loss_func"]
        if self.loss_func not in ("mse", "mae"):
            raise ValueError(f"loss/loss_func: expected 'mse' or 'mae', got '{self.loss_func}'")
        self.intensive = bool(self.config["intensive_ener_virial"])
        self.enable_atom_ener_coeff = bool(self.config["enable_atom_ener_coeff"])
        # dpcore's rule on every backend: a term is active when start OR limit prefactor is non-zero
        self.active = {t: self.config[f"start_pref_{t}"] != 0 or self.config[f"limit_pref_{t}"] != 0
                       for t in self.TERMS}

    def _backend_refuses(self, option: str, value: str = "True") -> None:
        if not self.capabilities.get(option, True):
            raise NotImplementedError(
                f"{self._backend_info.display_name} backend does not support {option}={value}.")

    # -- call protocol ---------------------------------------------------------------------------------------
    def prefactors(self, lr) -> dict:
        """``pref_X(lr)`` of every active term (SPEC 8.1)."""
        return {t: prefactor(self.config[f"start_pref_{t}"], self.config[f"limit_pref_{t}"], lr, self.start_lr)
                for t in self.TERMS if self.active[t]}

    def __call__(self, model_out: dict, labels: dict, lr, *, mae: bool = False):
        """``(loss, metrics)``: a 0-d float64 array and a dict of 0-d float64 arrays (SPEC 8.2 / 8.3).

        model_out: model outputs (namespace of ``model_out["energy"]``); labels: batch labels and
        ``find_<name>`` flags (missing keys: find 0); lr: current learning rate (float or 0-d array);
        mae: also report ``mae_e``, ``mae_e_all``, ``mae_f``, ``mae_v`` in MSE mode (evaluation tools).
        """
        xp = namespace(model_out["energy"])
        self._xp, self._dev = xp, device_of(xp, model_out["energy"])
        if not isinstance(lr, numbers.Real):
            lr = xp.astype(xp.asarray(lr, device=self._dev), xp.float64)
        else:
            lr = float(lr)
        mask = model_out.get("mask")
        if mask is None:  # no mask from the model: real atoms (atype >= 0) if known, else every atom
            atype = labels.get("atype")
            nf, nloc = int(model_out["atom_energy"].shape[0]), int(model_out["atom_energy"].shape[1])
            mask = (self.label(labels, "atype", (nf, nloc)) >= 0.0) if atype is not None else \
                xp.ones_like(xp.reshape(self.f64(model_out["atom_energy"]), (nf, nloc)))
        red = Reducer(xp, mask, labels.get("frame_mask"))
        terms, metrics = self._compute(xp, model_out, labels, red, self.prefactors(lr), mae)
        loss = xp.zeros((), dtype=xp.float64, device=self._dev)
        for t in terms:
            loss = loss + t
        metrics["rmse"] = xp.sqrt(loss)
        return loss, dict(sorted(metrics.items()))

    # -- helpers for subclasses ------------------------------------------------------------------------------
    def f64(self, x):
        return self._xp.astype(x, self._xp.float64)

    def label(self, labels: dict, name: str, shape: tuple, default: float = 0.0):
        """Label ``name`` as a float64 array of ``shape`` (``default`` everywhere if absent)."""
        xp = self._xp
        x = labels.get(name)
        if x is None:
            return xp.zeros(shape, dtype=xp.float64, device=self._dev) + default
        if not hasattr(x, "shape") or namespace(x) is not xp:
            x = xp.asarray(x, device=self._dev)
        return xp.reshape(xp.astype(x, xp.float64), shape)

    def find(self, labels: dict, name: str):
        """``find_<name>``: Python float, or a float64 0-d array when given as an array (e.g. traced)."""
        f = labels.get(f"find_{name}", 1.0 if name in labels else 0.0)
        if isinstance(f, numbers.Real):
            return float(f)
        return self._xp.astype(self._xp.asarray(f, device=self._dev), self._xp.float64)

    def gate(self, value, find):
        """``value`` where the label exists (find > 0), NaN otherwise (``display_if_exist``)."""
        xp = self._xp
        if isinstance(find, float):
            return value if find > 0.0 else xp.zeros((), dtype=xp.float64, device=self._dev) + NAN
        return xp.where(find > 0.0, value, NAN)

    @property
    def display_keys(self) -> list:
        """lcurve columns: metric keys of the active terms without ``l2_`` keys, sorted (SPEC 12)."""
        return sorted(k for k in self._metric_keys() if "l2_" not in k)

    def serialize(self) -> dict:
        return {"@class": self.CLASS, "@version": self.VERSION, "starter_learning_rate": self.start_lr,
                **{k: v for k, v in self.config.items() if k != "type"}}

    def __repr__(self) -> str:
        on = [t for t in self.TERMS if self.active[t]]
        return f"{type(self).__name__}(loss_func={self.loss_func!r}, active={on}, backend={self.backend!r})"
