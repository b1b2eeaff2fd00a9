"""Descriptor statistics (SPEC 2.4) against a hand computation; sel: auto."""

from pathlib import Path

import numpy as np
import pytest

from dpcore.stat.descriptor import descriptor_stats
from dpcore.stat.neighbor import auto_sel, data_neighbor_stat, parse_auto_sel
from helpers import make_config

RC, RS = 3.0, 0.5


def _sw(r):
    u = (min(max(r, RS), RC) - RS) / (RC - RS)
    return u ** 3 * (-6 * u ** 2 + 15 * u - 10) + 1


def _row(vec):
    r = np.linalg.norm(vec)
    return _sw(r) * np.array([1 / r, *(np.asarray(vec) / r ** 2)])


def _cfg(**descriptor):
    return make_config(descriptor={"rcut": RC, "rcut_smth": RS, "sel": [2, 3], **descriptor})


COORD = np.array([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.5, 0.0], [0.2, 0.3, 2.0]]])
ATYPE = np.array([[0, 1, 1, 1]])


def _hand_stats(exclude_oh=False):
    """Rows of every centre (padded to nnei = 5 with zeros), by centre type; then mean/std as in SPEC 2.4."""
    rows = {0: [], 1: []}
    for i in range(4):
        blocks = {0: [], 1: []}
        for j in range(4):
            if j != i and np.linalg.norm(COORD[0, j] - COORD[0, i]) <= RC:
                excluded = exclude_oh and {ATYPE[0, i], ATYPE[0, j]} == {0, 1}
                row = np.zeros(4) if excluded else _row(COORD[0, j] - COORD[0, i])
                blocks[ATYPE[0, j]].append(row)
        padded = blocks[0] + [np.zeros(4)] * (2 - len(blocks[0])) + blocks[1] + [np.zeros(4)] * (3 - len(blocks[1]))
        rows[ATYPE[0, i]].append(np.array(padded))
    out = {}
    for t, rs in rows.items():
        R = np.concatenate(rs)
        out[t] = (R[:, 0].mean(), R[:, 0].std(), R[:, 1:].std())  # pooled angular std, mean-subtracted
    return out


@pytest.mark.parametrize("exclude", [False, True])
def test_davg_dstd_match_hand_computation(exclude):
    cfg = _cfg(exclude_types=[[0, 1]] if exclude else [])
    davg, dstd = descriptor_stats(cfg, [{"coord": COORD, "atype": ATYPE, "box": None}])
    assert davg.dtype == np.float64 and dstd.shape == (2, 5, 4)
    for t, (avg_r, std_r, std_a) in _hand_stats(exclude).items():
        np.testing.assert_allclose(davg[t, :, 0], avg_r, rtol=1e-14)
        assert np.all(davg[t, :, 1:] == 0)
        np.testing.assert_allclose(dstd[t, :, 0], max(std_r, 1e-2), rtol=1e-14)
        np.testing.assert_allclose(dstd[t, :, 1:], max(std_a, 1e-2), rtol=1e-14)


def test_set_davg_zero_and_protections():
    cfg = make_config(descriptor={"rcut": RC, "rcut_smth": RS, "sel": [2, 3, 1], "set_davg_zero": True},
                      type_map=["O", "H", "C"])
    lonely = {"coord": np.array([[[0.0, 0, 0], [20.0, 0, 0]]]), "atype": np.array([[0, 1]]), "box": None}
    davg, dstd = descriptor_stats(cfg, [lonely])
    assert np.all(davg == 0)
    assert np.all(dstd[:2] == 1e-2)  # present types with empty environments: std floor
    assert np.all(dstd[2] == 0.1)  # absent type


def test_statistics_accumulate_over_batches():
    cfg = _cfg()
    b = {"coord": COORD, "atype": ATYPE, "box": None}
    one = descriptor_stats(cfg, [b])
    two = descriptor_stats(cfg, [b, b])
    np.testing.assert_allclose(two[0], one[0], rtol=1e-14)
    np.testing.assert_allclose(two[1], one[1], rtol=1e-14)


def test_auto_sel_rule():
    assert auto_sel([35, 67]) == [40, 76]
    assert auto_sel([35, 67], 1.0) == [36, 68]
    assert parse_auto_sel("auto") == 1.1 and parse_auto_sel("auto:1.5") == 1.5 and parse_auto_sel([1, 2]) is None
    with pytest.raises(ValueError, match=r"sel: expected a list of ints, 'auto' or 'auto:<factor>', got 'autox'"):
        parse_auto_sel("autox")


def test_water_neighbor_stat():
    water = Path(__file__).resolve().parents[2] / "shared" / "data" / "water"
    if not water.exists():
        pytest.skip(f"water data not found at {water}")
    from dpcore.data import load_systems

    systems = load_systems([str(water / "data_0")], type_map=["O", "H"])
    min_dist, max_nbor = data_neighbor_stat(systems, 6.0, 2)
    assert 0.8 < min_dist < 1.1  # O-H bond
    sel = auto_sel(max_nbor)
    assert sel[0] <= 46 and sel[1] <= 92  # DeePMD-kit's example sel [46, 92] holds every neighbour


@pytest.mark.parametrize("name", ["stats", "stats.h5"])
def test_stat_file_cache(tmp_path, name):
    cfg = _cfg()
    batch = {"coord": COORD, "atype": ATYPE, "box": None}
    ref = descriptor_stats(cfg, [batch])
    path = tmp_path / name
    first = descriptor_stats(cfg, [batch], stat_file=path)
    assert path.exists()
    cached = descriptor_stats(cfg, [], stat_file=path)  # no data: everything comes from the cache
    for a, b, c in zip(ref, first, cached):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    other = _cfg(rcut_smth=0.6)  # different settings: another group, recomputed
    assert descriptor_stats(other, [batch], stat_file=path)[1][0, 0, 0] != ref[1][0, 0, 0]


def test_stat_group_name_matches_deepmd_kit_hash_rule():
    import hashlib
    import json

    from dpcore.stat.descriptor import stat_group

    cfg = _cfg()
    key = {"type": "se_a", "ntypes": 2, "rcut": 3.0, "rcut_smth": 0.5, "nsel": 5, "sel": [2, 3], "mixed_types": False}
    assert stat_group(cfg) == "O H/" + hashlib.sha1(json.dumps(key).encode()).hexdigest()
    # EnvMatStatSe(DescrptSeA(rcut=3.0, rcut_smth=0.5, sel=[2, 3], ...)).get_hash() in deepmd-kit 3.2.0:
    assert stat_group(cfg) == "O H/4912125dee244179956a7574a2683897d70998a6"
