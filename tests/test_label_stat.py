"""fparam/aparam statistics, energy bias and the choice of statistics frames (SPEC 5.3, 5.4, 10.5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dpcore.stat.labels import energy_bias, fparam_aparam_stats, param_stats, sample_stat_frames
from helpers import TOL

DATA = Path("/work/shared/data")


def sample(counts, energies, find_energy=1.0, atom_ener=None):
    """A statistics batch of frames with per-type atom ``counts (nf, ntypes)``."""
    counts = np.asarray(counts)
    nf, nt = counts.shape
    nloc = int(counts[0].sum())
    atype = np.repeat(np.arange(nt), counts[0])
    s = {
        "coord": np.zeros((nf, nloc, 3)),
        "atype": np.tile(atype, (nf, 1)),
        "natoms": np.concatenate([np.full((nf, 2), nloc), counts], axis=1),
        "energy": np.asarray(energies, dtype=np.float64).reshape(nf, 1),
        "find_energy": find_energy,
    }
    if atom_ener is not None:
        s["atom_ener"] = np.asarray(atom_ener, dtype=np.float64)
        s["find_atom_ener"] = 1.0
    return s


# ----------------------------------------------------------------------- fparam / aparam
def test_param_stats_hand_computed():
    x = np.array([[1.0, 10.0], [3.0, 10.0], [5.0, 10.0]], dtype=np.float32)
    avg, inv_std = param_stats(x, protection=1e-2)
    assert avg.dtype == np.float64 and inv_std.dtype == np.float64
    np.testing.assert_allclose(avg, [3.0, 10.0], rtol=0, atol=1e-15)
    # std_0 = sqrt((1 + 9 + 25)/3 - 9) = sqrt(8/3); std_1 = 0 -> floored at 1e-2
    np.testing.assert_allclose(inv_std, [1 / np.sqrt(8 / 3), 100.0], rtol=1e-14)


def test_fparam_aparam_stats_with_default_fparam():
    s1 = sample([[1, 1]] * 2, [0, 0])
    s1.update(fparam=np.array([[1.0], [3.0]]), find_fparam=1.0,
              aparam=np.array([[[0.0], [2.0]], [[4.0], [6.0]]]), find_aparam=1.0)
    s2 = sample([[1, 1]], [0])
    s2.update(fparam=np.zeros((1, 1)), find_fparam=0.0, aparam=np.array([[[8.0], [10.0]]]),
              find_aparam=1.0)
    out = fparam_aparam_stats([s1, s2], numb_fparam=1, numb_aparam=1, protection=1e-2,
                              default_fparam=[5.0])
    # fparam frames 1, 3, default 5 -> mean 3, var (1+9+25)/3-9 = 8/3
    np.testing.assert_allclose(out["fparam_avg"], [3.0])
    np.testing.assert_allclose(out["fparam_inv_std"], [1 / np.sqrt(8 / 3)])
    # aparam atoms 0,2,...,10 -> mean 5, var = mean(x^2) - 25 = 220/6 - 25
    np.testing.assert_allclose(out["aparam_avg"], [5.0])
    np.testing.assert_allclose(out["aparam_inv_std"], [1 / np.sqrt(220 / 6 - 25)])
    assert all(v.dtype == np.float64 for v in out.values())
    with pytest.raises(ValueError, match=r"statistics system 1 has no fparam\.npy and "
                                         r"model/fitting_net/default_fparam is not set"):
        fparam_aparam_stats([s1, s2], numb_fparam=1)
    with pytest.raises(ValueError, match=r"fparam of statistics system 0 has 1 values per frame; "
                                         r"expected numb_fparam = 2"):
        fparam_aparam_stats([s1], numb_fparam=2)


# ---------------------------------------------------------------------------- energy bias
def test_energy_bias_exact_fit():
    true = np.array([-93.5, -187.25])
    n = np.array([[2, 1], [1, 3], [4, 0], [3, 3]])
    out = energy_bias([sample(n[:2], n[:2] @ true), sample(n[2:], n[2:] @ true)], ntypes=2)
    assert out["out_bias"].shape == (1, 2, 1) and out["out_bias"].dtype == np.float64
    np.testing.assert_allclose(out["out_bias"][0, :, 0], true, rtol=1e-13)
    np.testing.assert_array_equal(out["out_std"], np.ones((1, 2, 1)))
    assert out["residual_std"] < 1e-10


def test_energy_bias_least_squares_hand():
    n = np.array([[2.0, 1.0], [1.0, 3.0], [4.0, 1.0]])
    y = np.array([-5.0, -7.0, -9.5])
    # normal equations (N^T N) b = N^T y, solved by hand
    ntn = np.array([[21.0, 9.0], [9.0, 11.0]])
    nty = np.array([-55.0, -35.5])
    det = ntn[0, 0] * ntn[1, 1] - ntn[0, 1] * ntn[1, 0]
    b = np.array([ntn[1, 1] * nty[0] - ntn[0, 1] * nty[1],
                  -ntn[1, 0] * nty[0] + ntn[0, 0] * nty[1]]) / det
    out = energy_bias([sample(n.astype(int), y)], ntypes=2)
    np.testing.assert_allclose(out["out_bias"][0, :, 0], b, rtol=1e-13)
    r = y - n @ b
    np.testing.assert_allclose(out["residual_std"], np.sqrt(np.mean((r - r.mean()) ** 2)))
    np.testing.assert_allclose(out["rmse_per_atom"], np.sqrt(np.mean((r / n.sum(1)) ** 2)))


def test_energy_bias_min_norm_absent_type_and_skipped_systems():
    # identical composition ratios: minimum-norm solution splits ~ (1, 2); type 2 absent -> 0
    n = np.array([[2, 4, 0], [1, 2, 0]])
    out = energy_bias([sample(n, [10.0, 5.0]), sample([[1, 1, 1]], [1e6], find_energy=0.0)],
                      ntypes=3)
    np.testing.assert_allclose(out["out_bias"][0, :, 0], [1.0, 2.0, 0.0], atol=TOL["float64"])


def test_energy_bias_exclude_and_preset():
    n = np.array([[2, 1], [1, 3], [4, 1]])
    y = np.array([-5.0, -7.0, -9.5])
    # excluded type 1: its column is zeroed, only type 0 is fitted: b0 = sum(n0 y) / sum(n0^2)
    out = energy_bias([sample(n, y)], ntypes=2, atom_exclude_types=[1])
    b0 = (n[:, 0] @ y) / (n[:, 0] @ n[:, 0])
    np.testing.assert_allclose(out["out_bias"][0, :, 0], [b0, 0.0], rtol=1e-13)
    # preset type 1 = -0.5: y - n1*(-0.5) fitted on type 0, then bias[1] = -0.5
    out = energy_bias([sample(n, y)], ntypes=2, preset_out_bias={"energy": [None, [-0.5]]})
    y2 = y + 0.5 * n[:, 1]
    np.testing.assert_allclose(out["out_bias"][0, :, 0],
                               [(n[:, 0] @ y2) / (n[:, 0] @ n[:, 0]), -0.5], rtol=1e-13)
    with pytest.raises(ValueError, match=r"preset_out_bias/energy: 1 entries; expected one per "
                                         r"type \(ntypes = 2\)"):
        energy_bias([sample(n, y)], ntypes=2, preset_out_bias={"energy": [1.0]})
    with pytest.raises(ValueError, match=r"atom_exclude_types: type 2 is outside 0\.\.1"):
        energy_bias([sample(n, y)], ntypes=2, atom_exclude_types=[2])


def test_energy_bias_atomic_labels_fill_from_global():
    n = np.array([[2, 1], [1, 2]])
    glob = sample(n, n @ np.array([-3.0, -1.0]))
    # atomic labels only for type 0 atoms present in this system -> type 1 from lstsq
    at = sample([[2, 0]], [0.0], find_energy=0.0, atom_ener=[[-2.0, -6.0]])
    out = energy_bias([glob, at], ntypes=2)
    # type 0: mean of its atomic labels (-4, not the fitted -3); type 1: the fit
    np.testing.assert_allclose(out["out_bias"][0, :, 0], [-4.0, -1.0], rtol=1e-13)
    with pytest.raises(ValueError, match=r"energy bias: no statistics system has energy labels"):
        energy_bias([sample(n, [0, 0], find_energy=0.0)], ntypes=2)


# ------------------------------------------------------------------------- stat frames
def test_sample_stat_frames():
    frames = sample_stat_frames([80, 5, 7], [1, 2, 3], data_stat_nbatch=10, rng=4)
    assert [len(f) for f in frames] == [10, 5, 7]  # min(10 batches, nb) * bs, capped at nframes
    assert all(len(set(f.tolist())) == len(f) for f in frames)
    again = sample_stat_frames([80, 5, 7], [1, 2, 3], data_stat_nbatch=10, rng=4)
    assert all((a == b).all() for a, b in zip(frames, again))
    assert [len(f) for f in sample_stat_frames([80, 5], [4, 2], 2, rng=0)] == [8, 4]
    with pytest.raises(ValueError, match=r"data_stat_nbatch: 0; expected a positive integer"):
        sample_stat_frames([3], [1], 0)


@pytest.mark.skipif(not DATA.is_dir(), reason="reference data /work/shared/data is absent")
def test_water_energy_bias_on_fixed_frames():
    from dpcore.data import BatchSampler, load_systems

    systems = load_systems([str(DATA / "water" / f"data_{i}") for i in range(3)], type_map=["O", "H"])
    sampler = BatchSampler(systems, batch_size="auto", seed=10)
    stat = sampler.stat_batches(data_stat_nbatch=10)
    assert [b["coord"].shape[0] for b in stat] == [10, 10, 10]
    again = BatchSampler(systems, batch_size="auto", seed=10).stat_batches(10)
    assert all((a["energy"] == b["energy"]).all() for a, b in zip(stat, again))
    out = energy_bias(stat, ntypes=2)
    # every water frame has 64 O + 128 H: the minimum-norm split is E/N_f * (64, 128)/(64^2+128^2)
    y = np.concatenate([b["energy"][:, 0] for b in stat])
    n = np.array([64.0, 128.0])
    b_hand = (y.mean() / (n @ n)) * n
    np.testing.assert_allclose(out["out_bias"][0, :, 0], b_hand, rtol=TOL["float64"])
    assert out["out_bias"].dtype == np.float64
