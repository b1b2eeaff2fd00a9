"""Spin data (SPEC 7.2, 7.4): DeePMD-kit's TensorFlow packed layout is refused by a deepspin model with a
message that says how to convert it, and the conversion it describes gives data the model reads."""

from pathlib import Path

import numpy as np
import pytest

from dpcore.data import DataError, DeepmdSystem, label_specs
from helpers import TOL

SPIN = label_specs(spin=True)
TYPE_MAP = ["Ni", "O"]
SPIN_NORM, VIRTUAL_LEN = 1.2737, 0.4  # DeePMD-kit examples/spin/se_e2_a/input_tf.json


def real_system(rng, nframes=2):
    """A 2 Ni + 2 O system in the deepspin layout: types, coord, box, spin, force, force_mag, energy."""
    atype = np.array([0, 1, 0, 1])
    coord = rng.uniform(0, 4, (nframes, 4, 3))
    spin = rng.normal(size=(nframes, 4, 3))
    spin *= SPIN_NORM / np.linalg.norm(spin, axis=-1, keepdims=True)
    spin[:, atype == 1] = 0.0
    force_mag = rng.normal(size=(nframes, 4, 3)) * (atype == 0)[None, :, None]
    return dict(atype=atype, coord=coord, box=np.tile(4 * np.eye(3).reshape(9), (nframes, 1)), spin=spin,
                force=rng.normal(size=(nframes, 4, 3)), force_mag=force_mag, energy=rng.normal(size=nframes))


def pack(d):
    """The TensorFlow layout of ``real_system``: one virtual atom (type 2) per Ni appended after the real atoms,
    at r + s * virtual_len / spin_norm; force rows = [real forces | magnetic forces of the Ni atoms]."""
    mag = d["atype"] == 0
    vcoord = d["coord"][:, mag] + d["spin"][:, mag] * VIRTUAL_LEN / SPIN_NORM
    return dict(atype=np.concatenate([d["atype"], np.full(mag.sum(), 2)]),
                coord=np.concatenate([d["coord"], vcoord], axis=1), box=d["box"], energy=d["energy"],
                force=np.concatenate([d["force"], d["force_mag"][:, mag]], axis=1))


def unpack(d, n_real):
    """The conversion the error message describes."""
    mag = d["atype"][:n_real] == 0
    coord = d["coord"][:, :n_real]
    spin = np.zeros_like(coord)
    spin[:, mag] = (d["coord"][:, n_real:] - coord[:, mag]) * SPIN_NORM / VIRTUAL_LEN
    force_mag = np.zeros_like(coord)
    force_mag[:, mag] = d["force"][:, n_real:]
    return dict(atype=d["atype"][:n_real], coord=coord, box=d["box"], energy=d["energy"], spin=spin,
                force=d["force"][:, :n_real], force_mag=force_mag)


def write(path: Path, d, type_map_raw=None) -> Path:
    (path / "set.000").mkdir(parents=True)
    (path / "type.raw").write_text(" ".join(map(str, d["atype"])) + "\n")
    if type_map_raw is not None:
        (path / "type_map.raw").write_text("\n".join(type_map_raw) + "\n")
    for k, v in d.items():
        if k != "atype":
            np.save(path / "set.000" / f"{k}.npy", v.reshape(v.shape[0], -1))
    return path


@pytest.mark.parametrize("type_map_raw", [None, ["Ni", "O"], ["Ni", "O", "Ni_spin"]],
                         ids=["no_type_map_raw", "two_names", "virtual_named"])
@pytest.mark.parametrize("with_spin", [False, True], ids=["no_spin_npy", "spin_npy_of_real_atoms"])
def test_packed_layout_is_refused_with_the_conversion(tmp_path, type_map_raw, with_spin):
    real = real_system(np.random.default_rng(1))
    packed = pack(real)
    if with_spin:  # spin.npy for the real atoms only: inconsistent with coord.npy
        packed["spin"] = real["spin"]
    path = write(tmp_path / "packed", packed, type_map_raw)
    with pytest.raises(DataError, match="TensorFlow spin layout") as err:
        DeepmdSystem(path, type_map=TYPE_MAP, labels=SPIN)
    msg = str(err.value)
    for part in ("4 real atoms followed by 2 virtual atoms", "spin_i = (r_v - r_i) * spin_norm / virtual_len",
                 "force_mag.npy", "virtual_scale = virtual_len / spin_norm", "type.raw"):
        assert part in msg, part


def test_the_described_conversion_gives_readable_deepspin_data(tmp_path):
    real = real_system(np.random.default_rng(2))
    converted = unpack(pack(real), n_real=4)
    s = DeepmdSystem(write(tmp_path / "converted", converted, TYPE_MAP), type_map=TYPE_MAP, labels=SPIN)
    direct = DeepmdSystem(write(tmp_path / "direct", real, TYPE_MAP), type_map=TYPE_MAP, labels=SPIN)
    for k in ("spin", "force_mag", "force"):
        np.testing.assert_allclose(s.data[k], direct.data[k], atol=TOL["float64"], err_msg=k)
        assert s.find[k].tolist() == [1.0, 1.0]


def test_only_spin_models_check_and_other_errors_are_unchanged(tmp_path):
    packed = pack(real_system(np.random.default_rng(3)))
    path = write(tmp_path / "packed", packed)
    # a standard model keeps the usual type error
    with pytest.raises(DataError, match="outside the model type_map") as err:
        DeepmdSystem(path, type_map=TYPE_MAP)
    assert "TensorFlow" not in str(err.value)
    # unknown types that are not a tail of virtual atoms: the usual error, also for a spin model
    bad = dict(packed, atype=np.array([2, 0, 1, 0, 1, 0]))
    with pytest.raises(DataError, match="outside the model type_map") as err:
        DeepmdSystem(write(tmp_path / "bad", bad), type_map=TYPE_MAP, labels=SPIN)
    assert "TensorFlow" not in str(err.value)
    # an element missing from the model type_map (not one virtual atom per magnetic atom): the usual error
    extra = dict(packed, atype=np.array([0, 1, 0, 1, 2]), coord=packed["coord"][:, :5], force=packed["force"][:, :5])
    with pytest.raises(DataError, match="not in the model type_map") as err:
        DeepmdSystem(write(tmp_path / "extra", extra, ["Ni", "O", "Fe"]), type_map=TYPE_MAP, labels=SPIN)
    assert "TensorFlow" not in str(err.value)
    # a real-atom system without spin.npy: the missing-file error
    real = real_system(np.random.default_rng(4))
    del real["spin"]
    with pytest.raises(DataError, match="spin.npy: missing"):
        DeepmdSystem(write(tmp_path / "nospin", real, TYPE_MAP), type_map=TYPE_MAP, labels=SPIN)
