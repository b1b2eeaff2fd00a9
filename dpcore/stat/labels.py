"""Statistics of labels and frame/atom parameters (SPEC 5.3, 5.4, 10.5). Host side, NumPy, float64.

* :func:`sample_stat_frames` — which frames of each system feed the statistics
  (``model.data_stat_nbatch`` batches of a fresh shuffle per system).
* :func:`param_stats` / :func:`fparam_aparam_stats` — mean and inverse std of
  ``fparam`` (per frame) and ``aparam`` (per atom), floored by ``data_stat_protect``.
* :func:`energy_bias` — the atomic-model ``out_bias``: least squares of frame
  energies on per-type atom counts, with ``atom_exclude_types`` and
  ``preset_out_bias``; per-type means of ``atom_ener`` where atomic labels exist.

Inputs ``samples`` are lists of batch dicts (one per system), e.g.
:meth:`dpcore.data.BatchSampler.stat_batches`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = [
    "sample_stat_frames",
    "param_stats",
    "fparam_aparam_stats",
    "energy_bias",
]


def sample_stat_frames(
    nframes: Sequence[int],
    batch_sizes: Sequence[int],
    data_stat_nbatch: int = 10,
    rng: np.random.Generator | int | None = None,
) -> list[np.ndarray]:
    """Frame indices used for statistics, one int64 array per system.

    System ``i`` contributes the first ``min(data_stat_nbatch, ceil(nframes_i / bs_i))``
    batches of a random permutation of its frames, i.e. at most
    ``data_stat_nbatch * bs_i`` frames (SPEC 10.5).  ``rng`` (Generator or seed) fixes
    the permutation; the systems are shuffled in order from the same generator.
    """
    if data_stat_nbatch < 1:
        raise ValueError(f"data_stat_nbatch: {data_stat_nbatch}; expected a positive integer")
    if len(nframes) != len(batch_sizes):
        raise ValueError(
            f"sample_stat_frames: {len(nframes)} systems but {len(batch_sizes)} batch sizes"
        )
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    out = []
    for n, bs in zip(nframes, batch_sizes):
        nb = min(int(data_stat_nbatch), math.ceil(n / bs))
        out.append(rng.permutation(n)[: min(nb * bs, n)].astype(np.int64))
    return out


def param_stats(values: np.ndarray, protection: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """Per-component ``(avg, inv_std)`` of ``values (n, k)``, float64 (SPEC 5.3).

    ``avg = Σx/n``, ``std = sqrt(max(Σx²/n - avg², 0))``, ``std < protection -> protection``.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"param_stats: expected a non-empty (n, k) array, got shape {x.shape}")
    n = x.shape[0]
    avg = x.sum(axis=0) / n
    std = np.sqrt(np.maximum((x * x).sum(axis=0) / n - avg * avg, 0.0))
    std = np.where(std < protection, protection, std)
    return avg, 1.0 / std


def fparam_aparam_stats(
    samples: Sequence[dict],
    numb_fparam: int = 0,
    numb_aparam: int = 0,
    protection: float = 1e-2,
    default_fparam: Sequence[float] | None = None,
) -> dict[str, np.ndarray]:
    """``fparam_avg``, ``fparam_inv_std`` (numb_fparam,) and ``aparam_avg``, ``aparam_inv_std``
    (numb_aparam,) over all sampled frames / atoms; only the parts with ``numb_* > 0``.

    A system whose ``find_fparam`` is 0 contributes ``default_fparam`` for each of its
    frames; without ``default_fparam`` that is an error.
    """
    out: dict[str, np.ndarray] = {}
    if numb_fparam > 0:
        rows = []
        for i, s in enumerate(samples):
            nf = s["coord"].shape[0]
            if s.get("find_fparam", 0.0) > 0:
                fp = np.asarray(s["fparam"], dtype=np.float64).reshape(nf, -1)
                if fp.shape[1] != numb_fparam:
                    raise ValueError(
                        f"fparam of statistics system {i} has {fp.shape[1]} values per frame; "
                        f"expected numb_fparam = {numb_fparam}"
                    )
            elif default_fparam is not None:
                fp = np.tile(np.asarray(default_fparam, dtype=np.float64), (nf, 1))
            else:
                raise ValueError(
                    f"statistics system {i} has no fparam.npy and "
                    "model/fitting_net/default_fparam is not set"
                )
            rows.append(fp)
        out["fparam_avg"], out["fparam_inv_std"] = param_stats(np.concatenate(rows), protection)
    if numb_aparam > 0:
        rows = []
        for i, s in enumerate(samples):
            if s.get("find_aparam", 0.0) <= 0:
                raise ValueError(f"statistics system {i} has no aparam.npy (numb_aparam > 0)")
            ap = np.asarray(s["aparam"], dtype=np.float64)
            if ap.shape[-1] != numb_aparam:
                raise ValueError(
                    f"aparam of statistics system {i} has shape {ap.shape}; expected "
                    f"(nf, nloc, numb_aparam = {numb_aparam})"
                )
            rows.append(ap.reshape(-1, numb_aparam))
        out["aparam_avg"], out["aparam_inv_std"] = param_stats(np.concatenate(rows), protection)
    return out


def _preset_vector(preset_out_bias: dict | None, ntypes: int) -> np.ndarray | None:
    """``preset_out_bias["energy"]`` -> (ntypes,) float64 with NaN for "fit this type"."""
    if not preset_out_bias or preset_out_bias.get("energy") is None:
        return None
    vals = preset_out_bias["energy"]
    if len(vals) != ntypes:
        raise ValueError(
            f"preset_out_bias/energy: {len(vals)} entries; expected one per type "
            f"(ntypes = {ntypes}), null for types fitted from data"
        )
    out = np.full(ntypes, np.nan)
    for t, v in enumerate(vals):
        if v is not None:
            arr = np.asarray(v, dtype=np.float64).ravel()
            if arr.size != 1:
                raise ValueError(
                    f"preset_out_bias/energy[{t}]: {v!r}; expected a number or [number]"
                )
            out[t] = arr[0]
    return None if np.isnan(out).all() else out


def energy_bias(
    samples: Sequence[dict],
    ntypes: int,
    atom_exclude_types: Sequence[int] = (),
    preset_out_bias: dict | None = None,
    rcond: float | None = None,
) -> dict:
    """Energy ``out_bias`` of the atomic model from data (SPEC 5.4).

    Frame energies ``y (nf,)`` of systems with ``find_energy > 0`` are fitted on the
    per-type counts ``N (nf, ntypes)`` (``natoms[:, 2:]``, columns of
    ``atom_exclude_types`` zeroed): preset types are subtracted first
    (``y -= N[:, T] b_T``, ``N[:, T] = 0``), then ``bias = lstsq(N, y, rcond)`` (minimum
    norm; absent types get 0) and ``bias[T] = b_T``.  Where systems carry atomic
    labels (``find_atom_ener > 0``) the per-type mean of ``atom_ener`` is used instead,
    types without atomic labels taking the least-squares value.

    Returns a dict of float64 arrays: ``out_bias (1, ntypes, 1)`` eV, ``out_std (1, ntypes, 1)``
    (ones, as DeePMD-kit stores for energy), ``residual_std ()`` = std over frames of
    ``y - N bias`` (eV), ``rmse_per_atom ()`` eV/atom of the fit.
    """
    preset = _preset_vector(preset_out_bias, ntypes)
    excl = np.zeros(ntypes, dtype=bool)
    for t in atom_exclude_types:
        if not 0 <= int(t) < ntypes:
            raise ValueError(f"atom_exclude_types: type {t} is outside 0..{ntypes - 1}")
        excl[int(t)] = True

    glob = [s for s in samples if s.get("find_energy", 0.0) > 0 and "energy" in s]
    atomic = [s for s in samples if s.get("find_atom_ener", 0.0) > 0 and "atom_ener" in s]
    if not glob and not atomic:
        raise ValueError(
            "energy bias: no statistics system has energy labels (energy.npy or atom_ener.npy)"
        )
    bias_g = np.full(ntypes, np.nan)
    resid_std = np.float64(np.nan)
    rmse = np.float64(np.nan)
    if glob:
        counts = np.concatenate([np.asarray(s["natoms"])[:, 2:] for s in glob]).astype(np.float64)
        if counts.shape[1] != ntypes:
            raise ValueError(
                f"energy bias: natoms has {counts.shape[1]} type columns; expected ntypes = {ntypes}"
            )
        y = np.concatenate([np.asarray(s["energy"], dtype=np.float64).reshape(-1) for s in glob])
        n_all = counts.sum(axis=1)
        counts[:, excl] = 0.0
        if preset is not None:
            known = ~np.isnan(preset)
            y = y - counts[:, known] @ preset[known]
            counts[:, known] = 0.0
        bias_g, *_ = np.linalg.lstsq(counts, y, rcond=rcond)
        resid = y - counts @ bias_g
        if preset is not None:
            bias_g[known] = preset[known]
        resid_std = resid.std()
        rmse = np.sqrt(np.mean((resid / n_all) ** 2))
    bias = bias_g
    if atomic:
        atype = np.concatenate([np.asarray(s["atype"]).reshape(-1) for s in atomic])
        ae = np.concatenate([np.asarray(s["atom_ener"], dtype=np.float64).reshape(-1)
                             for s in atomic])
        cnt = np.bincount(atype, minlength=ntypes)[:ntypes]
        tot = np.bincount(atype, weights=ae, minlength=ntypes)[:ntypes]
        mean_a = np.divide(tot, cnt, out=np.full(ntypes, np.nan), where=cnt > 0)
        bias = np.nan_to_num(np.where(np.isnan(mean_a) & ~np.isnan(bias_g), bias_g, mean_a))
    return {
        "out_bias": bias.reshape(1, ntypes, 1).astype(np.float64),
        "out_std": np.ones((1, ntypes, 1), dtype=np.float64),
        "residual_std": np.float64(resid_std),
        "rmse_per_atom": np.float64(rmse),
    }
