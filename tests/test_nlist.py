"""Tests of the host-side neighbour list against a brute-force reference (explicit images, dense distances)."""
from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
import pytest

from dpcore.nlist import (
    NeighborList,
    SelOverflowWarning,
    build_neighbor_list,
    extend_coord,
    neighbor_stat,
    reset_sel_overflow_warnings,
)
from helpers.kernels import both_neighbor_rows  # noqa: F401 (autouse: every test with both row implementations)

DIST_TOL = 1e-12  # Å: slack when checking that distances inside a block ascend (ties)
FRAC_TOL = 1e-12  # wrapped local atoms have fractional coordinates in [-FRAC_TOL, 1 + FRAC_TOL)
GEOMETRY_ATOL = 1e-9  # Å: neighbour vectors agree after wrapping the input by lattice vectors
REFERENCE_EXTRA_SHELLS = 1  # the reference uses ceil(rcut / h) + this many image shells per direction
WATER = Path("/work/shared/data/water/data_0")


# --------------------------------------------------------------------------- reference


def reference_blocks(coord, atype, box, rcut, sel, pair_exclude_types=(), mixed_types=False):
    """Brute force, one frame: per centre a list of blocks, each a list of (owner, shift tuple, distance).

    coord (nloc, 3), atype (nloc,), box (3, 3) or None. Dense distances to every image of every atom over a generous
    integer range; nearest sum(sel) overall, then split by type (SPEC 1.3), then pair exclusion.
    """
    nloc = len(atype)
    if box is None:
        box, wrap, images = np.eye(3), np.zeros((nloc, 3)), np.zeros((1, 3))
    else:
        frac = coord @ np.linalg.inv(box)
        wrap = -np.floor(frac)
        volume = abs(np.linalg.det(box))
        faces = [volume / np.linalg.norm(np.cross(box[(d + 1) % 3], box[(d + 2) % 3])) for d in range(3)]
        shells = [int(np.ceil(rcut / h)) + REFERENCE_EXTRA_SHELLS for h in faces]
        images = np.array(list(itertools.product(*[range(-n, n + 1) for n in shells])), dtype=float)
    owner = np.repeat(np.arange(nloc), len(images))
    image = np.tile(images, (nloc, 1))
    shift = wrap[owner] + image
    pos = coord[owner] + shift @ box
    excluded = {tuple(p) for p in pair_exclude_types} | {tuple(p[::-1]) for p in pair_exclude_types}
    result = []
    for i in range(nloc):
        if atype[i] < 0:
            result.append([[] for _ in ([0] if mixed_types else sel)])
            continue
        dist = np.linalg.norm(pos - (coord[i] + wrap[i] @ box), axis=1)
        self_entry = (owner == i) & np.all(image == 0, axis=1)
        ok = (atype[owner] >= 0) & ~self_entry & (dist <= rcut)
        found = sorted(((dist[k], int(owner[k]), tuple(shift[k])) for k in np.flatnonzero(ok)))[: sum(sel)]
        if mixed_types:
            blocks = [found]
        else:
            blocks = [[e for e in found if atype[e[1]] == t][: sel[t]] for t in range(len(sel))]
        blocks = [[e for e in b if (atype[i], atype[e[1]]) not in excluded] for b in blocks]
        result.append([[(o, s, d) for d, o, s in b] for b in blocks])
    return result


def blocks_of(nl: NeighborList, coord, box, frame, sel, mixed_types=False):
    """The built list of one frame in the reference's form, distances from extend_coord."""
    ext = extend_coord(coord, box, nl)[frame]
    bounds = np.cumsum([0, sum(sel)] if mixed_types else [0, *sel])
    result = []
    for i, row in enumerate(nl.nlist[frame]):
        blocks = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            entries = row[lo:hi]
            real = entries[entries >= 0]
            assert np.all(entries[len(real):] == -1), "empty slots must be at the end of a block"
            dist = np.linalg.norm(ext[real] - ext[i], axis=1)
            blocks.append([(int(nl.mapping[frame, j]), tuple(nl.shift[frame, j]), d) for j, d in zip(real, dist)])
        result.append(blocks)
    return result


def assert_matches_reference(coord, atype, box, rcut, sel, pair_exclude_types=(), mixed_types=False):
    """Build the list and compare every block of every centre with the reference; also check the invariants."""
    coord = np.asarray(coord, dtype=float)
    nf, nloc = coord.shape[:2]
    atype = np.broadcast_to(atype, (nf, nloc))
    nl = build_neighbor_list(coord, atype, box, rcut, sel, pair_exclude_types, mixed_types=mixed_types)
    assert nl.nlist.shape == (nf, nloc, sum(sel)) and nl.nlist.dtype == np.int64
    assert_extended_layout(nl, coord, box)
    for f in range(nf):
        frame_box = None if box is None else np.asarray(box[f], dtype=float).reshape(3, 3)
        expected = reference_blocks(coord[f], atype[f], frame_box, rcut, sel, pair_exclude_types, mixed_types)
        got = blocks_of(nl, coord, box, f, sel, mixed_types)
        for i in range(nloc):
            for block_got, block_expected in zip(got[i], expected[i]):
                assert {(o, s) for o, s, _ in block_got} == {(o, s) for o, s, _ in block_expected}, (f, i)
                dist = np.array([d for _, _, d in block_got])
                assert np.all(np.diff(dist) >= -DIST_TOL), "distances must ascend inside a block"
                assert np.all(dist <= rcut)
    return nl


def assert_extended_layout(nl: NeighborList, coord, box):
    """Locals first and wrapped, only referenced ghosts, zero padding after each frame's own atoms."""
    nf, nloc = nl.nlist.shape[:2]
    assert nl.mapping.dtype == np.int64 and nl.shift.shape == (*nl.mapping.shape, 3)
    assert np.array_equal(nl.mapping[:, :nloc], np.broadcast_to(np.arange(nloc), (nf, nloc)))
    assert np.array_equal(nl.shift, np.round(nl.shift)), "shifts are integer-valued"
    ext = extend_coord(coord, box, nl)
    if box is not None:
        frac = ext[:, :nloc] @ np.linalg.inv(np.asarray(box, dtype=float).reshape(nf, 3, 3))
        assert np.all((frac >= -FRAC_TOL) & (frac < 1 + FRAC_TOL)), "local atoms are wrapped into the cell"
    for f in range(nf):
        used = np.unique(nl.nlist[f][nl.nlist[f] >= nloc])
        nall_f = nloc + len(used)
        assert np.array_equal(used, np.arange(nloc, nall_f)), "every ghost is referenced"
        assert np.all(nl.mapping[f, nall_f:] == 0) and np.all(nl.shift[f, nall_f:] == 0)


def random_system(rng, nloc, box, ntypes=2, spill=0.3):
    """Random fractional positions in [-spill, 1 + spill) of the cell (so wrapping matters) and random types."""
    box = np.asarray(box, dtype=float).reshape(3, 3)
    frac = rng.uniform(-spill, 1 + spill, size=(nloc, 3))
    return frac @ box, rng.integers(0, ntypes, size=nloc)


@pytest.fixture(autouse=True)
def fresh_overflow_registry():
    """Each test sees the once-per-process overflow warnings afresh."""
    reset_sel_overflow_warnings()
    yield
    reset_sel_overflow_warnings()


# --------------------------------------------------------------------------- geometry cases

CUBIC = np.diag([10.0, 10.0, 10.0])
TRICLINIC = np.array([[8.0, 0.0, 0.0], [6.5, 5.0, 0.0], [-5.5, 4.0, 5.5]])  # strongly sheared
SMALL_TRICLINIC = np.array([[2.6, 0.0, 0.0], [1.1, 2.4, 0.0], [0.7, -0.9, 2.2]])  # needs 3 shells at rcut 6


@pytest.mark.parametrize(
    ("box", "nloc", "rcut", "sel"),
    [(CUBIC, 40, 4.5, [30, 30]), (TRICLINIC, 30, 5.0, [60, 60]), (SMALL_TRICLINIC, 3, 6.0, [300, 300])],
    ids=["cubic", "triclinic", "cell-smaller-than-rcut"],
)
def test_periodic_matches_brute_force(box, nloc, rcut, sel):
    coord, atype = random_system(np.random.default_rng(1), nloc, box)
    assert_matches_reference(coord[None], atype, box.reshape(1, 9), rcut, sel)


def test_cell_smaller_than_rcut_needs_several_shells():
    faces = np.abs(np.linalg.det(SMALL_TRICLINIC)) / np.linalg.norm(
        np.cross(SMALL_TRICLINIC[[1, 2, 0]], SMALL_TRICLINIC[[2, 0, 1]]), axis=1
    )
    assert np.all(np.ceil(6.0 / faces) >= 3)
    coord, atype = random_system(np.random.default_rng(2), 3, SMALL_TRICLINIC)
    nl = build_neighbor_list(coord[None], atype, SMALL_TRICLINIC.reshape(1, 9), 6.0, [300, 300])
    assert np.abs(nl.shift).max() >= 3


def test_one_atom_cell_sees_its_own_images():
    box, rcut = np.diag([3.0, 3.0, 3.0]), 6.5
    nl = assert_matches_reference(np.array([[[0.4, 0.2, 2.9]]]), [0], box.reshape(1, 9), rcut, [40])
    lattice = np.array(list(itertools.product(range(-3, 4), repeat=3)))
    expected = int(np.sum(np.linalg.norm(lattice * 3.0, axis=1) <= rcut)) - 1  # every image except the atom itself
    assert np.sum(nl.nlist >= 0) == expected
    assert np.all(nl.mapping[0] == 0)


def test_non_periodic_cluster():
    coord, atype = random_system(np.random.default_rng(3), 25, np.diag([7.0, 7.0, 7.0]), spill=0.0)
    nl = assert_matches_reference(coord[None], atype, None, 4.0, [20, 20])
    assert nl.mapping.shape == (1, 25) and np.all(nl.shift == 0)


def test_non_periodic_sparse_cluster_uses_the_same_cell_list():
    rng = np.random.default_rng(4)
    near = rng.uniform(0, 5, size=(10, 3))
    far = rng.uniform(0, 5, size=(10, 3)) + [3000.0, -2000.0, 500.0]  # millions of empty bins in between
    coord = np.concatenate([near, far])[None]
    assert_matches_reference(coord, rng.integers(0, 2, size=20), None, 3.0, [20, 20])


def test_distance_exactly_rcut_is_kept():
    coord = np.array([[[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 3.0 + 1e-9, 0.0]]])
    nl = build_neighbor_list(coord, [0, 0, 0], None, 3.0, [5])
    assert list(nl.nlist[0, 0]) == [1, -1, -1, -1, -1]


def test_padding_atoms_have_no_neighbours_and_are_never_neighbours():
    rng = np.random.default_rng(5)
    coord, atype = random_system(rng, 20, CUBIC)
    coord[3] = coord[4]  # a padding atom sitting on a real one must stay invisible
    atype[[3, 11]] = -1
    nl = assert_matches_reference(coord[None], atype, CUBIC.reshape(1, 9), 5.0, [40, 40])
    assert np.all(nl.nlist[0, [3, 11]] == -1)
    referenced = nl.mapping[0][nl.nlist[0][nl.nlist[0] >= 0]]
    assert not np.isin(referenced, [3, 11]).any()


def test_several_frames_with_different_boxes():
    rng = np.random.default_rng(6)
    boxes = [CUBIC, TRICLINIC, SMALL_TRICLINIC * 2.0]
    systems = [random_system(rng, 12, b) for b in boxes]
    coord = np.stack([c for c, _ in systems])
    atype = np.stack([t for _, t in systems])
    box = np.stack([b.reshape(9) for b in boxes])
    nl = assert_matches_reference(coord, atype, box, 5.0, [60, 60])
    assert nl.mapping.shape[1] == max(12 + len(np.unique(r[r >= 12])) for r in nl.nlist)


def test_pair_exclude_types_blanks_entries_in_place():
    coord, atype = random_system(np.random.default_rng(7), 30, CUBIC, ntypes=3)
    args = (coord[None], atype, CUBIC.reshape(1, 9), 5.0, [15, 15, 15])
    assert_matches_reference(*args, pair_exclude_types=[[0, 2], [1, 1]])
    full = build_neighbor_list(*args)
    excluded = build_neighbor_list(*args, pair_exclude_types=[[2, 0], [1, 1]])
    pairs_excluded = {(0, 2), (2, 0), (1, 1)}

    def keys(nl):  # (owner, shift) per slot, None when empty
        return [[None if j < 0 else (nl.mapping[0, j], tuple(nl.shift[0, j])) for j in row] for row in nl.nlist[0]]

    for i, (row_full, row_excl) in enumerate(zip(keys(full), keys(excluded))):
        for k, (a, b) in enumerate(zip(row_full, row_excl)):
            gone = a is not None and (atype[i], atype[a[0]]) in pairs_excluded
            assert b == (None if gone else a), (i, k)  # same slot, no compaction


def test_nearest_sum_sel_overall_then_split_by_type():
    # Centre 0 (type 0) has type-0 neighbours at 1.0, 1.1, 1.2 and type-1 neighbours at 1.5, 2.05; sel = [2, 2].
    # Nearest 4 overall are 1.0, 1.1, 1.2, 1.5: the type-1 block keeps only 1.5, although a per-type rule keeps 2.05.
    directions = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, 0, 0], [0, -1, 0]], dtype=float)
    radii = np.array([1.0, 1.1, 1.2, 1.5, 2.05])
    coord = np.concatenate([[[0.0, 0.0, 0.0]], directions * radii[:, None]])[None]
    atype = np.array([0, 0, 0, 0, 1, 1])
    with pytest.warns(SelOverflowWarning):
        nl = assert_matches_reference(coord, atype, None, 2.45, [2, 2])
    assert list(nl.nlist[0, 0]) == [1, 2, 4, -1]


def test_overflow_warning_once_with_counts():
    coord = np.array([[[0.0, 0.0, 0.0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [-1.5, 0, 0]]])
    atype = [0, 0, 0, 0, 1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_neighbor_list(coord, atype, None, 2.0, [2, 3])
        build_neighbor_list(coord, atype, None, 2.0, [2, 3])
    overflow = [w for w in caught if issubclass(w.category, SelOverflowWarning)]
    assert len(overflow) == 1
    message = str(overflow[0].message)
    assert "type 0" in message and "up to 3 neighbours" in message and "sel[0] = 2" in message
    with pytest.warns(SelOverflowWarning, match=r"sel\[0\] = 1"):  # another capacity is reported again
        build_neighbor_list(coord, atype, None, 2.0, [1, 3])


def test_no_warning_without_overflow():
    coord = np.array([[[0.0, 0.0, 0.0], [1.0, 0, 0], [0, 1.0, 0]]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", SelOverflowWarning)
        build_neighbor_list(coord, [0, 0, 1], None, 2.0, [2, 1])


def test_mixed_types_one_sorted_block():
    coord, atype = random_system(np.random.default_rng(8), 30, TRICLINIC)
    args = (coord[None], atype, TRICLINIC.reshape(1, 9), 4.0)
    nl = assert_matches_reference(*args, [30, 30], mixed_types=True)
    assert nl.nlist.shape[-1] == 60
    with pytest.warns(SelOverflowWarning, match=r"sum\(sel\) = 6"):
        assert_matches_reference(*args, [3, 3], mixed_types=True)


def test_neighbour_geometry_invariant_under_wrapping():
    rng = np.random.default_rng(9)
    coord, atype = random_system(rng, 25, TRICLINIC, spill=0.0)
    moved = coord + rng.integers(-3, 4, size=(25, 3)) @ TRICLINIC  # every atom by its own lattice vector
    box = TRICLINIC.reshape(1, 9)

    def geometry(c):  # per centre: (slot, neighbour owner, neighbour vector) of every filled slot
        nl = build_neighbor_list(c[None], atype, box, 5.0, [60, 60])
        ext = extend_coord(c[None], box, nl)[0]
        slots = [np.flatnonzero(row >= 0) for row in nl.nlist[0]]
        return [np.column_stack([k, nl.mapping[0, row[k]], ext[row[k]] - ext[i]])
                for i, (row, k) in enumerate(zip(nl.nlist[0], slots))]

    for a, b in zip(geometry(coord), geometry(moved)):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=GEOMETRY_ATOL, rtol=0)


def test_neighbor_stat_matches_brute_force():
    rng = np.random.default_rng(10)
    systems = [random_system(rng, 15, b) for b in (CUBIC, TRICLINIC)]
    coord = np.stack([c for c, _ in systems])
    atype = np.stack([t for _, t in systems])
    box = np.stack([CUBIC.reshape(9), TRICLINIC.reshape(9)])
    rcut = 4.5
    min_dist, most = neighbor_stat(coord, atype, box, rcut, ntypes=3)
    expected_min, expected_most = np.inf, np.zeros(3, dtype=int)
    for f in range(2):
        blocks = reference_blocks(coord[f], atype[f], box[f].reshape(3, 3), rcut, [10**6, 10**6, 10**6])
        for centre in blocks:
            expected_most = np.maximum(expected_most, [len(b) for b in centre])
            expected_min = min([expected_min] + [d for b in centre for _, _, d in b])
    assert most.dtype.kind == "i" and most.shape == (3,) and most[2] == 0
    np.testing.assert_array_equal(most, expected_most)
    assert min_dist == pytest.approx(expected_min, rel=DIST_TOL)


def test_water_data_matches_brute_force():
    if not WATER.is_dir():
        pytest.skip(f"water data not found at {WATER}")
    coord = np.load(WATER / "set.000" / "coord.npy")[:2]
    box = np.load(WATER / "set.000" / "box.npy")[:2]
    atype = np.loadtxt(WATER / "type.raw", dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SelOverflowWarning)
        nl = assert_matches_reference(coord.reshape(2, -1, 3), atype, box, 6.0, [46, 92])
    assert nl.nlist.shape == (2, 192, 138)
    min_dist, most = neighbor_stat(coord, atype, box, 6.0, ntypes=2)
    assert 0.5 < min_dist < 1.5 and np.all(most <= [46, 92])


def test_extend_coord_accepts_flat_inputs():
    coord, atype = random_system(np.random.default_rng(11), 10, TRICLINIC)
    nl = build_neighbor_list(coord.reshape(1, 30), atype, TRICLINIC.reshape(9), 4.0, [20, 20])
    a = extend_coord(coord.reshape(1, 30), TRICLINIC.reshape(9), nl)
    b = extend_coord(coord[None], TRICLINIC[None], nl)
    expected = coord[nl.mapping[0]] + nl.shift[0] @ TRICLINIC
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a[0], expected, rtol=0, atol=GEOMETRY_ATOL)


# --------------------------------------------------------------------------- bad input

GOOD = dict(coord=np.zeros((2, 3, 3)) + np.arange(3)[:, None], atype=np.array([0, 1, 0]),
            box=np.tile(CUBIC.reshape(9), (2, 1)), rcut=3.0, sel=[4, 4])


@pytest.mark.parametrize(
    ("change", "argument"),
    [
        (dict(coord=np.zeros((2, 3, 2))), "coord"),
        (dict(coord=np.zeros((2, 7))), "coord"),
        (dict(coord=np.full((2, 3, 3), np.nan)), "coord"),
        (dict(atype=np.zeros((2, 4), dtype=int)), "atype"),
        (dict(atype=np.zeros(3)), "atype"),
        (dict(box=np.zeros((2, 8))), "box"),
        (dict(box=np.zeros((3, 9)) + CUBIC.reshape(9)), "box"),
        (dict(box=np.tile([1.0, 0, 0, 0, 1, 0, 1, 1, 0], (2, 1))), "box"),
        (dict(box=np.tile(np.full(9, np.inf), (2, 1))), "box"),
        (dict(rcut=0.0), "rcut"),
        (dict(rcut=-1.0), "rcut"),
        (dict(sel=[4]), "sel"),
        (dict(sel=[4, -1]), "sel"),
    ],
)
def test_bad_input_names_the_argument(change, argument):
    kwargs = {**GOOD, **change}
    with pytest.raises(ValueError, match=argument):
        build_neighbor_list(**kwargs)


def test_bad_pair_exclude_types_and_ntypes():
    with pytest.raises(ValueError, match="pair_exclude_types"):
        build_neighbor_list(**GOOD, pair_exclude_types=[[0, 5]])
    with pytest.raises(ValueError, match="ntypes"):
        neighbor_stat(GOOD["coord"], GOOD["atype"], GOOD["box"], 3.0, ntypes=1)


def test_accepted_input_forms_agree():
    reference = build_neighbor_list(**GOOD)
    for change in (dict(box=CUBIC.reshape(9)), dict(box=np.tile(CUBIC, (2, 1, 1))), dict(coord=GOOD["coord"].reshape(2, 9)),
                   dict(atype=np.tile(GOOD["atype"], (2, 1)))):
        other = build_neighbor_list(**{**GOOD, **change})
        np.testing.assert_array_equal(other.nlist, reference.nlist)
        np.testing.assert_array_equal(other.shift, reference.shift)


def test_stable_argsort_equals_numpys_stable_sort_with_and_without_ties():
    """The neighbour order's distance sort (a fast unstable sort, ties put back in index order) is exactly NumPy's
    stable argsort: random distances, rounded ones with many ties, all equal, empty, -0.0 and 0.0."""
    from dpcore.nlist import _stable_argsort

    rng = np.random.default_rng(7)
    cases = [rng.random(n) * 6.0 for n in (0, 1, 2, 17, 4000)]
    cases += [np.round(rng.random(3000) * k) / 7.0 for k in (1, 5, 60)]
    cases += [np.full(50, 2.5), np.array([0.0, -0.0, 1.0, 0.0, -0.0])]
    for x in cases:
        assert np.array_equal(_stable_argsort(x), np.argsort(x, kind="stable")), x[:8]
