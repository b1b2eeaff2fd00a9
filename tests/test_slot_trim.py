"""Trimmed neighbour sections (dpcore.slot_trim): the embedding net runs on the used slots of each
(centre block, neighbour section) only, and the trimmed empty slots' constant contribution is added once.
Same outputs as the full sections (NumPy here; the autodiff backends and parameter gradients in
tests/isolated/test_slot_trim_backends.py)."""

import numpy as np
import pytest

from helpers import make_model, random_system
from helpers.spin import make_spin_model, spin_system

from dpcore.backends import get_backend
from dpcore.slot_trim import COMPILED_QUANTUM, SlotTrim, used_widths

TRIM_TOL = 1e-12  # trimmed vs full sections, relative to the largest |value| of each output (float64)

CASES = {  # descriptor and model options; sel [24, 30] leaves every section a tail of empty slots
    "two_side": ({}, {}),
    "one_side": ({"type_one_side": True}, {}),
    "exclude": ({"exclude_types": [[0, 1]]}, {}),
    "pair_exclude": ({}, {"pair_exclude_types": [[0, 0]]}),  # O-O never listed: a section of width 0
    "compressed": ({}, {}),  # the tables (dpcore compress) trimmed like the nets
    "compressed_one_side": ({"type_one_side": True}, {}),
}


def trimmed_model(descriptor, model_kw):
    model = make_model(descriptor={"sel": [24, 30], "rcut": 3.6, **descriptor}, **model_kw)
    davg = model.params["descriptor"]["davg"]  # statistics that differ from slot to slot
    davg[..., 0] += np.linspace(0.0, 0.2, davg.shape[1])
    return model


def compressed_model(descriptor, model_kw):
    from dpcore.descriptor.tabulate import compress_model

    return compress_model(trimmed_model(descriptor, model_kw), 0.9)


def assert_same(got: dict, ref: dict):
    assert set(got) == set(ref)
    for key, want in ref.items():
        want, have = np.asarray(want, dtype=np.float64), np.asarray(got[key], dtype=np.float64)  # masks: bool
        scale = max(float(np.abs(want).max(initial=0.0)), 1e-300)
        assert float(np.abs(have - want).max(initial=0.0)) <= TRIM_TOL * scale, key


def run_both(model, inputs, blocks, compiled, forward):
    be = get_backend("numpy")
    trimmed = SlotTrim(model.config["descriptor"], compiled)(blocks, inputs["nlist_mask"])
    outs = [forward(be, model.config, model.params, inputs, b) for b in (blocks, trimmed)]
    return trimmed, [{k: np.asarray(v) for k, v in o.items()} for o in outs]


def test_used_widths_rounding_and_growth():
    mask = np.zeros((2, 4, 10), dtype=bool)  # sections [0, 4) and [4, 10); atoms 0-1 and 2-3 are the blocks
    mask[0, 0, :3] = True
    mask[1, 1, 4:5] = True
    mask[0, 3, 4:9] = True
    assert used_widths(mask, 0, 2, [0, 4, 10]) == [3, 1]
    assert used_widths(mask, 2, 4, [0, 4, 10]) == [0, 5]
    sec_cfg = {"type": "se_e2_a", "sel": [4, 6]}
    blocks = ((0, 0, 2), (1, 2, 4))
    assert SlotTrim(sec_cfg, False)(blocks, mask) == ((0, 0, 2, (3, 1)), (1, 2, 4, (0, 5)))
    big = {"type": "se_e2_a", "sel": [20, 30]}
    mask = np.zeros((1, 4, 50), dtype=bool)
    mask[0, 0, :3] = mask[0, 2, 20:31] = True
    trim = SlotTrim(big, True)
    first = trim(blocks, mask)
    assert first == ((0, 0, 2, (COMPILED_QUANTUM, 0)), (1, 2, 4, (0, 2 * COMPILED_QUANTUM)))
    fewer = np.zeros_like(mask)
    assert trim(blocks, fewer) == first  # a compiled backend's widths never shrink (no recompilation)
    mask[0, 1, :20] = True
    assert trim(((0, 0, 4),), mask)[0][3] == (20, 2 * COMPILED_QUANTUM)  # per centre type, any layout; capped
    assert trim(None, mask) is None


def test_not_trimmed_without_sections():
    mask = np.ones((1, 2, 8), dtype=bool)
    blocks = ((0, 0, 2),)
    assert SlotTrim({"type": "se_atten", "sel": 8}, False)(blocks, mask) == blocks  # mixed types: one section


@pytest.mark.parametrize("compiled", [False, True], ids=["exact", "compiled"])
@pytest.mark.parametrize("name", list(CASES))
def test_trimmed_sections_give_the_same_outputs(name, compiled):
    from dpcore.infer.inputs import prepare

    model = (compressed_model if name.startswith("compressed") else trimmed_model)(*CASES[name])
    assert bool(model.config["descriptor"].get("compress")) == name.startswith("compressed")
    coord, atype, box = random_system(natoms=16, nframes=2, box_len=6.0, seed=4)
    inputs, blocks, _ = prepare(model, coord, atype, box)
    trimmed, (full, got) = run_both(model, inputs, blocks, compiled,
                                    lambda be, *a: be.model_forward(*a, atomic_virial=True))
    sel = model.config["descriptor"]["sel"]
    widths = [w for b in trimmed for w in b[3]]
    assert all(w <= s for w, s in zip(widths, sel * len(trimmed))) and sum(widths) < len(trimmed) * sum(sel)
    if name == "pair_exclude":
        assert trimmed[0][3][0] == 0  # O centres list no O neighbour
    assert_same(got, full)


def test_spin_model_trimmed_sections_give_the_same_outputs():
    from dpcore.model import spin_model

    model = make_spin_model()
    coord, atype, spin, box = spin_system(model, "pbc_triclinic")
    inputs, blocks, _ = model.prepare(coord, atype, spin, box)
    trimmed, (full, got) = run_both(model, inputs, blocks, False,
                                    lambda be, *a: spin_model.model_forward(be, *a, atomic_virial=True))
    assert sum(w for b in trimmed for w in b[3]) < len(trimmed) * sum(model.config["descriptor"]["sel"])
    assert_same(got, full)


@pytest.mark.parametrize("chunk_size", [None, 5], ids=["one_pass", "chunks"])
def test_evaluate_runs_the_trimmed_sections(monkeypatch, chunk_size):
    """EnergyModel.evaluate hands the forward trimmed blocks, in one pass and in chunks of centres, with the
    numbers of the full sections in one pass."""
    from dpcore.descriptor import se_e2_a_embed

    model = trimmed_model({}, {})
    coord, atype, box = random_system(natoms=16, nframes=1, box_len=6.0, seed=5)
    seen = []  # (section slots, width the net ran on) of every embedding call
    embed = se_e2_a_embed.embed_contract
    monkeypatch.setattr(se_e2_a_embed, "embed_contract",
                        lambda emb, r, width, empty, share=None: seen.append((r.shape[2], width))
                        or embed(emb, r, width, empty, share))
    got = model.evaluate(coord, atype, box, backend="numpy", atomic=True, chunk_size=chunk_size)
    assert seen and all(w <= n for n, w in seen) and any(w < n for n, w in seen)
    class NoTrim:  # full sections, nothing shared
        def __call__(self, blocks, mask):
            return blocks

        def share(self, inputs, blocks, dparams):
            return inputs

    monkeypatch.setattr(get_backend("numpy"), "slot_trim", lambda cfg: NoTrim())
    seen.clear()
    full = model.evaluate(coord, atype, box, backend="numpy", atomic=True)
    assert seen and all(w == n for n, w in seen)
    assert_same(got, full)
