"""Shape buckets (dpcore/train/buckets.py, padding.py): bucket choice, padded model inputs that leave every
output and loss unchanged (energy and spin models, padding atoms and frames), the ``training.shape_buckets``
key, and a 10-composition dataset trained with at most 4 compiled step shapes and the same learning curve."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from dpcore.config import ConfigError, normalize_config
from dpcore.train.buckets import Buckets, choose_buckets, parse_setting
from helpers import make_model, random_system
from helpers.train import make_case, make_spin_case, max_rel_diff

COMPOSITIONS = [(1, 4), (2, 4), (2, 5), (3, 5), (3, 6), (2, 7), (4, 6), (3, 8), (4, 8), (5, 9)]  # (O, H)


def test_choose_buckets_merges_the_cheapest_pair_and_covers_every_shape():
    shapes = {(1, 3, 6): 1.0, (1, 3, 7): 1.0, (1, 10, 20): 1.0}
    assert choose_buckets(shapes, 3) == sorted(shapes, key=lambda s: (s[0] * sum(s[1:]), s))  # no padding needed
    assert choose_buckets(shapes, 2) == [(1, 3, 7), (1, 10, 20)]
    assert choose_buckets(shapes, 1) == [(1, 10, 20)]
    # a rarely drawn large shape goes with a frequent small one only if that is the cheaper merge
    many = {(nf, o, 2 * o): float(o) for nf in (1, 2) for o in range(5, 40, 3)}
    chosen = choose_buckets(many, 4)
    assert len(chosen) == 4 and chosen == choose_buckets(dict(reversed(list(many.items()))), 4)
    b = Buckets(chosen)
    for s in many:
        fit = b.bucket(s)
        assert fit in chosen and all(x <= y for x, y in zip(s, fit))
    assert b.bucket((3, 5, 10)) is None  # more frames than any bucket: not padded


def test_setting_and_config_key(tmp_path):
    assert parse_setting(None, True) == 4 and parse_setting("auto", True) == 4
    assert parse_setting("auto", False) is None and parse_setting("off", True) is None
    assert parse_setting(7, False) == 7
    cfg = make_case(tmp_path)
    assert "shape_buckets" not in normalize_config(cfg)["training"]  # absent unless given (DeePMD-kit's inputs)
    for ok in ("auto", "off", 3):
        cfg["training"]["shape_buckets"] = ok
        assert normalize_config(cfg)["training"]["shape_buckets"] == ok
    for bad in (0, -2, "four", 1.5, True):
        cfg["training"]["shape_buckets"] = bad
        with pytest.raises(ConfigError, match="training/shape_buckets"):
            normalize_config(cfg)


def _compare(out_a, out_b, index):
    """Outputs of the unpadded model (a) and padded model (b): real atoms equal, padding atoms zero."""
    nf = out_a["energy"].shape[0]
    np.testing.assert_allclose(out_b["energy"][:nf], out_a["energy"], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(out_b["energy"][nf:], 0.0)
    for k in ("force", "force_mag"):
        if k in out_a:
            np.testing.assert_allclose(out_b[k][:nf, index], out_a[k], rtol=1e-11, atol=1e-12)
            pad = np.ones(out_b[k].shape[:2], bool)
            pad[:nf, index] = False
            np.testing.assert_array_equal(out_b[k][pad], 0.0)
    np.testing.assert_allclose(out_b["virial"][:nf], out_a["virial"], rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("spin", [False, True])
def test_padded_batch_gives_the_same_outputs_and_losses(tmp_path, spin):
    """Padding atoms (between the type blocks) and frames change no output of the real atoms and no loss or
    metric (NumPy, blocks path); the labels of the padding are never read."""
    from dpcore.data import samplers_from_config
    from dpcore.loss import make_loss
    from dpcore.train.batch import BatchShaper
    from dpcore.train.setup import build_model_and_stats, nlist_maker, resolve_sel

    cfg = normalize_config((make_spin_case if spin else make_case)(tmp_path, nframes=3, natoms=7))
    train_s, _ = samplers_from_config(cfg)
    cfg = resolve_sel(cfg, train_s.systems)
    model = build_model_and_stats(cfg, train_s)
    if not spin:
        from dpcore.data import NeighborListCache

        train_s.nlist_cache = NeighborListCache(nlist_maker(model.config))
    from dpcore.model import energy, spin as spin_fwd

    forward = spin_fwd.forward if spin else energy.forward
    batch = train_s.make_batch(0, [0, 2])
    counts = np.bincount(batch["atype"][0], minlength=2)
    bucket = (4, int(counts[0]) + 2, int(counts[1]) + 3)
    plain = BatchShaper(model, spin)
    padded = BatchShaper(model, spin, Buckets([bucket, (9, 9, 9)]))
    ia, la, ba, fa, nfa = plain(batch)
    ib, lb, bb, fb, nfb = padded(batch)
    assert nfa == 2 and nfb == 4 and fa == fb
    assert lb["frame_mask"].tolist() == [1.0, 1.0, 0.0, 0.0]
    nloc = bucket[1] + bucket[2]
    assert ib["coord"].shape == (4, nloc, 3)
    half = ((0, 0, bucket[1]), (1, bucket[1], nloc))
    assert tuple(b[:3] for b in bb) == (half + tuple((t + 2, a + nloc, b + nloc) for t, a, b in half) if spin
                                        else half)
    assert [b[3] for b in bb] == [b[3] for b in ba]  # padding atoms have no neighbours: same used widths
    index = np.concatenate([np.arange(counts[0]), bucket[1] + np.arange(counts[1])])
    params = model.params
    out_a, out_b = forward(model.config, params, ia, ba), forward(model.config, params, ib, bb)
    _compare(out_a, out_b, index)
    loss = make_loss(cfg["loss"], backend="numpy", start_lr=1e-2)
    garbage = {k: (v + 7.0 if k not in ("natoms", "frame_mask") else v) for k, v in lb.items()}
    for k, v in garbage.items():  # padding labels are arbitrary: only real atoms and frames are read
        if k in la and v.ndim >= 2 and v.shape[1] == nloc:
            v[:2, index] = la[k]
        elif k in la:
            v[:2] = la[k]
    (va, ma), (vb, mb) = loss(out_a, {**la, **dict(fa)}, 5e-3), loss(out_b, {**garbage, **dict(fb)}, 5e-3)
    assert float(vb) == pytest.approx(float(va), rel=1e-12)
    assert ma.keys() == mb.keys()
    for k in ma:
        assert float(mb[k]) == pytest.approx(float(ma[k]), rel=1e-11, abs=1e-15), k


def write_compositions(root: Path) -> list[str]:
    """Ten training systems of different (O, H) counts and a validation system, 3 frames each, labelled by a
    fixed random model (deepmd/npy)."""
    teacher = make_model(seed=7, descriptor={"sel": [24, 24], "rcut": 3.5, "neuron": [4, 8]},
                         fitting={"neuron": [8, 8]})
    paths = []
    for k, (n_o, n_h) in enumerate(COMPOSITIONS + [(3, 7)]):
        coord, _, box = random_system(natoms=n_o + n_h, nframes=3, box_len=4.0, seed=100 + k)
        atype = np.array([0] * n_o + [1] * n_h)
        np.random.default_rng(k).shuffle(atype)
        out = teacher.evaluate(coord, atype, box)
        s = root / f"sys{k}"
        (s / "set.000").mkdir(parents=True)
        np.savetxt(s / "type.raw", atype, fmt="%d")
        (s / "type_map.raw").write_text("O\nH\n")
        for name, v in (("coord", coord), ("box", box), ("force", out["force"])):
            np.save(s / "set.000" / f"{name}.npy", np.asarray(v).reshape(3, -1))
        np.save(s / "set.000" / "energy.npy", np.asarray(out["energy"]).reshape(3))
        paths.append(str(s))
    return paths


def ten_composition_case(root: Path, numb_steps: int) -> dict:
    """The tiny training case of helpers.train on ten compositions (batch 2 of 3 frames: 20 batch shapes)."""
    paths = write_compositions(root / "data")
    cfg = make_case(root / "unused", nsys=1, numb_steps=numb_steps)
    cfg["training"]["training_data"].update(systems=paths[:-1])
    cfg["training"]["validation_data"].update(systems=paths[-1:])
    cfg["training"]["disp_freq"] = 3
    return cfg


def test_ten_compositions_train_with_four_step_shapes_and_the_same_lcurve(tmp_path):
    """torch (eager: buckets only when asked): shape_buckets 4 uses at most 4 step shapes where "off" uses
    one per (composition, frames); lcurve.out and the final parameters are the same (round-off)."""
    pytest.importorskip("torch")
    from dpcore.train import lcurve
    from dpcore.train.loop import Trainer

    cfg = ten_composition_case(tmp_path, numb_steps=9)
    runs = {}
    for setting in ("off", 4):
        c = copy.deepcopy(cfg)
        c["training"]["shape_buckets"] = setting
        work = tmp_path / f"run_{setting}"
        trainer = Trainer(c, "torch", workdir=work)
        result = trainer.run()
        runs[setting] = (trainer, result, lcurve.read_lcurve(work / "lcurve.out"))
    off, on = runs["off"][0], runs[4][0]
    assert off.shaper.buckets is None and len(on.shaper.buckets) == 4
    # eager steps take each batch's exact used neighbour widths (dpcore.slot_trim): count the step shapes
    def shapes(used):
        return {(tuple(b[:3] for b in blocks),) + tuple(rest) for blocks, *rest in used}

    assert len(shapes(on.steps.used)) <= 4 < len(shapes(off.steps.used))
    assert len(shapes(on.evals.used)) <= 4
    (names_a, a), (names_b, b) = runs["off"][2], runs[4][2]
    assert names_a == names_b and a.shape == b.shape
    np.testing.assert_allclose(b, a, rtol=1e-10)
    assert max_rel_diff(runs[4][1]["model"].params, runs["off"][1]["model"].params) < 1e-12
    for k, v in runs["off"][1]["valid"].items():
        assert runs[4][1]["valid"][k] == pytest.approx(v, rel=1e-12)


def test_auto_pads_only_compiled_steps(tmp_path):
    """shape_buckets "auto" (absent): no padding on an eager backend (torch), 4 buckets when compiled."""
    pytest.importorskip("torch")
    from dpcore.train.buckets import buckets_for_run
    from dpcore.data import samplers_from_config

    cfg = normalize_config(ten_composition_case(tmp_path, numb_steps=2))
    train_s, valid_s = samplers_from_config(cfg)
    assert buckets_for_run(None, False, 2, train_s, valid_s) is None
    buckets = buckets_for_run(None, True, 2, train_s, valid_s, disp_freq=3)
    assert len(buckets) == 4
    assert buckets_for_run(2, False, 2, train_s, valid_s).shapes != buckets.shapes
