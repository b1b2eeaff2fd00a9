"""Model compression of se_e2_a (SPEC_COMPRESS): each embedding net tabulated as piecewise quintic polynomials.

Host side, NumPy, following DeePMD-kit 3.2.0's ``DPTabulate`` step by step (same knots, same derivative
propagation, same coefficient formulas), so a model compressed here has the tables ``dp compress`` makes.

* range per centre type ``t`` (SPEC 2): ``lower_t = floor(min_c -davg[t,0,c]/dstd[t,0,c])``,
  ``upper_t = ceil(max_c (sw(r_min)/r_min - davg[t,0,c])/dstd[t,0,c])`` with ``r_min = min_nbor_dist`` (Å);
  a two-side net ``(t_c, tau)`` uses ``t_c``'s range, a one-side net the union over types with ``sel > 0``;
* knots (SPEC 3): ``lower, lower+s0, ... (< upper), upper, upper+s1, ... (< e*upper), e*upper`` with
  ``s0 = step``, ``s1 = 10 step``, ``e = extrapolate``;
* values, first and second derivatives of the net at the knots (SPEC 4) and the quintic Hermite
  coefficients of every interval (SPEC 5).

Where it lives (see :mod:`dpcore.descriptor.se_e2_a`): ``cfg["compress"] = {"info": {"<e>": [lower, upper,
e*upper, s0, s1, check_frequency]}}`` (floats) and ``params["compress"] = {"table": {"<e>": (nspline, 6, ng)}}``
(coefficient-major, the transpose of DeePMD-kit's ``(nspline, 6 ng)`` rows), ``e`` the embedding key.
The embedding nets stay in the model; a reader that ignores the tables gets the exact original model.
"""

from __future__ import annotations

import copy

import numpy as np

from ..network import get_activation

_SQRT_2_PI = np.sqrt(2 / np.pi)
_GGELU = 0.044715


def _sigmoid(z):
    e = np.exp(np.where(z >= 0, -z, z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _act_derivatives(name: str, z, y):
    """First and second derivative of activation ``name`` at pre-activation ``z`` (``y = act(z)``)."""
    if name in ("linear", "none"):
        return np.ones_like(z), np.zeros_like(z)
    if name == "tanh":
        return 1 - y * y, -2 * y * (1 - y * y)
    if name in ("gelu", "gelu_tf"):
        q = np.tanh(_SQRT_2_PI * (z + _GGELU * z**3))
        p = _SQRT_2_PI * (1 - q**2) * (3 * _GGELU * z**2 + 1)
        return (0.5 * _SQRT_2_PI * z * (1 - q**2) * (3 * _GGELU * z**2 + 1) + 0.5 * q + 0.5,
                3 * _GGELU * _SQRT_2_PI * z**2 * (1 - q**2) - _SQRT_2_PI * z * p * (3 * _GGELU * z**2 + 1) * q + p)
    if name == "relu":
        return (z > 0).astype(z.dtype), np.zeros_like(z)
    if name == "relu6":
        return ((z > 0) & (z < 6)).astype(z.dtype), np.zeros_like(z)
    if name == "softplus":
        s = _sigmoid(z)
        return s, s * (1 - s)
    if name == "sigmoid":
        return y * (1 - y), y * (1 - y) * (1 - 2 * y)
    if name == "silu":
        s = _sigmoid(z)
        ds = s * (1 - s)
        return s + z * ds, 2 * ds + z * ds * (1 - 2 * s)
    raise ValueError(f"Unsupported activation function: {name} (model compression supports linear, none, tanh, "
                     "gelu, gelu_tf, relu, relu6, softplus, sigmoid, silu)")


def switch(r: float, rcut_smth: float, rcut: float) -> float:
    """The quintic switch of SPEC 2.1 at one distance (1 below ``rcut_smth``, 0 beyond ``rcut``)."""
    if r < rcut_smth:
        return 1
    if r < rcut:
        u = (r - rcut_smth) / (rcut - rcut_smth)
        return u * u * u * (-6 * u * u + 15 * u - 10) + 1
    return 0


def env_mat_range(cfg: dict, davg, dstd, min_nbor_dist: float):
    """``(lower, upper)`` (ntypes,) of the embedding input per centre type (SPEC 2), in the dtype of davg."""
    sw = switch(min_nbor_dist, cfg["rcut_smth"], cfg["rcut"])
    lower = np.floor(-davg[:, 0] / dstd[:, 0])
    upper = np.ceil(((1 / min_nbor_dist) * sw - davg[:, 0]) / dstd[:, 0])
    return np.min(lower, axis=1), np.max(upper, axis=1)


def knot_data(net: dict, xx, activation: str):
    """Net values ``y``, ``dy/dx`` and ``d2y/dx2`` at the knots xx (n,): three (n, ng) arrays (SPEC 4)."""
    act = get_activation(activation)
    name = str(activation).lower()
    x = xx.reshape(-1, 1)
    dy = dy2 = None
    for i in range(len(net)):
        layer = net[str(i)]
        w, b = layer["w"], layer["b"]
        n_in, n_out = w.shape
        zbar = np.matmul(x, w) + b
        res = x if n_out == n_in else np.concatenate([x, x], axis=1) if n_out == 2 * n_in else None
        y = act(np, zbar)[0] + (0 if res is None else res)
        d1, d2 = _act_derivatives(name, zbar, y if res is None else y - res)
        if i == 0:  # scalar input: u' = 1, u'' = 0
            wr = np.broadcast_to(w.reshape(1, -1), y.shape)
            dz, dz2 = d1 * wr, d2 * wr * wr
            if res is not None:
                dz = dz + np.ones((1, n_out), dtype=y.dtype)
        else:
            acc1, acc2 = np.matmul(dy2, w), np.matmul(dy, w)
            dz, dz2 = d1 * acc2, d1 * acc1 + d2 * acc2 * acc2
            if res is not None:
                dz = dz + (dy if n_out == n_in else np.concatenate([dy, dy], axis=1))
                dz2 = dz2 + (dy2 if n_out == n_in else np.concatenate([dy2, dy2], axis=1))
        x, dy, dy2 = y, dz, dz2
    dt = net["0"]["w"].dtype
    return x.astype(dt), dy.astype(dt), dy2.astype(dt)


def spline_table(net: dict, activation: str, lower, upper, s0: float, s1: float, extrapolate) -> np.ndarray:
    """DeePMD-kit's table of one net on ``[lower, extrapolate*upper]``: (nspline, 6*ng), row r = interval r,
    column ``6k + m`` = coefficient ``c_m`` of neuron k (SPEC 5)."""
    dt = net["0"]["w"].dtype.type
    xx = np.arange(lower, upper, s0, dtype=dt)
    xx = np.append(xx, np.arange(upper, extrapolate * upper, s1, dtype=dt))
    xx = np.append(xx, np.array([extrapolate * upper], dtype=dt))
    nspline = ((upper - lower) / s0 + (extrapolate * upper - upper) / s1).astype(int)
    vv, dd, d2 = knot_data(net, xx, activation)
    ng = vv.shape[1]
    tt = np.full((nspline, ng), s1)
    tt[: int((upper - lower) / s0), :] = s0
    hh = vv[1 : nspline + 1] - vv[:nspline]
    d0, d1, a0, a1 = dd[:nspline], dd[1 : nspline + 1], d2[:nspline], d2[1 : nspline + 1]
    data = np.zeros([nspline, 6 * ng], dtype=dt)
    data[:, 0::6] = vv[:nspline]
    data[:, 1::6] = d0
    data[:, 2::6] = 0.5 * a0
    data[:, 3::6] = (1 / (2 * tt * tt * tt)) * (20 * hh - (8 * d1 + 12 * d0) * tt - (3 * a0 - a1) * tt * tt)
    data[:, 4::6] = (1 / (2 * tt * tt * tt * tt)) * (-30 * hh + (14 * d1 + 16 * d0) * tt + (3 * a0 - 2 * a1) * tt * tt)
    data[:, 5::6] = (1 / (2 * tt * tt * tt * tt * tt)) * (12 * hh - 6 * (d1 + d0) * tt + (a1 - a0) * tt * tt)
    return data


def from_deepmd_layout(data) -> np.ndarray:
    """DeePMD-kit's (nspline, 6 ng) table -> dpcore's coefficient-major (nspline, 6, ng)."""
    data = np.asarray(data)
    return np.ascontiguousarray(data.reshape(data.shape[0], -1, 6).transpose(0, 2, 1))


def to_deepmd_layout(table) -> np.ndarray:
    """dpcore's (nspline, 6, ng) table -> DeePMD-kit's (nspline, 6 ng)."""
    table = np.asarray(table)
    return np.ascontiguousarray(table.transpose(0, 2, 1).reshape(table.shape[0], -1))


def check_compressible(cfg: dict, params: dict) -> None:
    """Refusals before tabulating (SPEC 0.2, 10): resnet_dt, an already compressed descriptor, activations."""
    if cfg.get("compress"):
        raise ValueError("the model is already compressed (DeePMD-kit: 'Compression is already enabled.')")
    if cfg["resnet_dt"] or any("idt" in layer for net in params["embedding"].values() for layer in net.values()):
        raise ValueError("model/descriptor/resnet_dt is true: a compressed model would drop the timestep (idt) of "
                         "the embedding nets (DeePMD-kit's TensorFlow refuses it too, its dpmodel/PyTorch silently "
                         "give wrong tables); compression needs resnet_dt false")
    _act_derivatives(str(cfg["activation_function"]).lower(), np.zeros(1), np.zeros(1))


def compress_descriptor(cfg: dict, params: dict, min_nbor_dist: float, step: float = 0.01, extrapolate: int = 5,
                        check_frequency: int = -1) -> tuple[dict, dict]:
    """``(cfg, params)`` of the se_e2_a descriptor with every embedding net tabulated (new dicts; the inputs
    are not modified).  ``min_nbor_dist`` Å, ``step`` the first stride (the second is ``10 step``)."""
    check_compressible(cfg, params)
    if not (np.isfinite(min_nbor_dist) and min_nbor_dist > 0):
        raise ValueError(f"min_nbor_dist must be a positive distance (Å), got {min_nbor_dist}")
    if not step > 0 or not extrapolate > 1:
        raise ValueError(f"need step > 0 and extrapolate > 1, got step {step}, extrapolate {extrapolate}")
    ntypes = len(cfg["sel"])
    lower, upper = env_mat_range(cfg, np.asarray(params["davg"]), np.asarray(params["dstd"]), min_nbor_dist)
    s0, s1 = step, step * 10
    tables, info = {}, {}
    for key, net in sorted(params["embedding"].items(), key=lambda kv: int(kv[0])):
        e = int(key)
        if cfg["type_one_side"]:
            idx = [cfg["sel"][t] > 0 for t in range(ntypes)]  # as DeePMD-kit: centre types t with sel[t] > 0
            idx = idx if any(idx) else [True] * ntypes
            ll, uu = np.min(lower[idx]), np.max(upper[idx])
        else:
            ll, uu = lower[e % ntypes], upper[e % ntypes]
        data = spline_table(net, cfg["activation_function"], ll, uu, s0, s1, extrapolate)
        dt = data.dtype
        tables[key] = from_deepmd_layout(data)
        info[key] = [float(v) for v in np.asarray([ll, uu, uu * extrapolate, s0, s1, check_frequency], dtype=dt)]
    new_cfg = {**copy.deepcopy(cfg), "compress": {"info": info}}
    return new_cfg, {**params, "compress": {"table": tables}}


def compress_model(model, min_nbor_dist: float, step: float = 0.01, extrapolate: int = 5, check_frequency: int = -1):
    """Compress ``model`` (an EnergyModel, or a SpinEnergyModel: its 2n-type backbone) in place; returns it.

    Every output keeps its terms (energy bias included); only the embedding nets are replaced by tables.
    For a spin model, ``min_nbor_dist`` should cover the real-virtual distances ``virtual_scale * |s|`` too:
    closer pairs fall in the coarse second part of the table, or beyond it (linear extrapolation).
    """
    cfg = model.config
    d = cfg["descriptor"]
    if d["type"] != "se_e2_a":
        raise NotImplementedError(f"model compression of descriptor type {d['type']!r} is not supported (se_e2_a)")
    new_d, new_p = compress_descriptor(d, model.params["descriptor"], min_nbor_dist, step, extrapolate,
                                       check_frequency)
    cfg["descriptor"] = new_d
    model.set_params({**model.params, "descriptor": new_p})
    return model


def compress_to_dict(cfg: dict, params: dict, n_nets: int, dtype) -> dict:
    """DeePMD-kit's ``"compress"`` section (SPEC 9): one table and one info per net slot, empty where none."""
    tables, info = params["compress"]["table"], cfg["compress"]["info"]
    empty = np.asarray([], dtype=dtype)
    return {"@variables": {
        "compress_data": [to_deepmd_layout(tables[str(e)]) if str(e) in tables else empty for e in range(n_nets)],
        "compress_info": [np.asarray(info[str(e)], dtype=dtype) if str(e) in tables else empty
                          for e in range(n_nets)]}}


def compress_from_dict(comp: dict, n_nets: int, where: str = "model/descriptor/compress") -> tuple[dict, dict]:
    """``(cfg["compress"], params["compress"])`` of DeePMD-kit's ``"compress"`` section (empty slots dropped)."""
    v = comp.get("@variables", {}) if isinstance(comp, dict) else {}
    data, info = v.get("compress_data"), v.get("compress_info")
    if not isinstance(data, list) or not isinstance(info, list) or len(data) != n_nets or len(info) != n_nets:
        raise ValueError(f"{where}: expected @variables.compress_data and compress_info, {n_nets} entries each")
    tables, infos = {}, {}
    for e, (t, i) in enumerate(zip(data, info)):
        t, i = np.asarray(t), np.asarray(i)
        if t.size == 0:
            continue
        if t.ndim != 2 or t.shape[1] % 6 or i.shape != (6,):
            raise ValueError(f"{where}: table {e} has shape {t.shape} (expected (nspline, 6*ng)), info {i.shape}")
        tables[str(e)], infos[str(e)] = from_deepmd_layout(t), [float(x) for x in i]
    return {"info": infos}, {"table": tables}
