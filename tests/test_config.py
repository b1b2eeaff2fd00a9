"""input.json schema: DeePMD-kit examples validate; defaults, aliases; every error names its location."""

from __future__ import annotations

import copy
import json

import pytest

pytest.importorskip("dargs")

from dpcore.config import ConfigError, load_config, normalize_config, suggest, write_normalized  # noqa: E402

# DeePMD-kit examples/water/se_e2_a/input.json, as published (comments included)
WATER = {
    "_comment": " model parameters",
    "model": {
        "type_map": ["O", "H"],
        "descriptor": {"type": "se_e2_a", "sel": [46, 92], "rcut_smth": 0.50, "rcut": 6.00,
                       "neuron": [25, 50, 100], "resnet_dt": False, "axis_neuron": 16, "seed": 1,
                       "_comment": " that's all"},
        "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True, "seed": 1,
                        "_comment": " that's all"},
        "_comment": " that's all",
    },
    "learning_rate": {"type": "exp", "decay_steps": 5000, "start_lr": 0.001, "stop_lr": 3.51e-8,
                      "_comment": "that's all"},
    "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000,
             "limit_pref_f": 1, "start_pref_v": 0, "limit_pref_v": 0, "_comment": " that's all"},
    "training": {
        "training_data": {"systems": ["../data/data_0/", "../data/data_1/", "../data/data_2/"],
                          "batch_size": "auto", "_comment": "that's all"},
        "validation_data": {"systems": ["../data/data_3"], "batch_size": 1, "numb_btch": 3,
                            "_comment": "that's all"},
        "numb_steps": 1000000, "seed": 10, "disp_file": "lcurve.out", "disp_freq": 100,
        "save_freq": 1000, "_comment": "that's all",
    },
    "_comment": "that's all",
}

# DeePMD-kit examples/spin/se_e2_a/input_torch.json
SPIN_TORCH = {
    "model": {
        "type_map": ["Ni", "O"],
        "descriptor": {"type": "se_e2_a", "sel": [60, 60], "rcut_smth": 5.4, "rcut": 5.6,
                       "neuron": [25, 50, 100], "resnet_dt": False, "axis_neuron": 16, "seed": 1,
                       "_comment": " that's all"},
        "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True, "seed": 1,
                        "_comment": " that's all"},
        "data_stat_nbatch": 10,
        "spin": {"use_spin": [True, False], "virtual_scale": [0.3140], "_comment": " that's all"},
        "_comment": " that's all",
    },
    "learning_rate": {"type": "exp", "decay_steps": 5000, "start_lr": 0.001, "stop_lr": 3.51e-8,
                      "_comment": "that's all"},
    "loss": {"type": "ener_spin", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_fr": 1000,
             "limit_pref_fr": 1, "start_pref_fm": 1000, "limit_pref_fm": 1,
             "_comment": " that's all"},
    "training": {
        "training_data": {"systems": ["../data_reformat/data_0", "../data_reformat/data_1"],
                          "batch_size": 3, "_comment": "that's all"},
        "validation_data": {"systems": ["../data_reformat/data_2"], "batch_size": 1,
                            "numb_btch": 3, "_comment": "that's all"},
        "numb_steps": 100000, "seed": 10, "disp_file": "lcurve.out", "disp_freq": 100,
        "save_freq": 10000, "_comment": "that's all",
    },
    "_comment": "that's all",
}

# DeePMD-kit examples/spin/se_e2_a/input_tf.json
SPIN_TF = {
    "_comment1": " model parameters",
    "model": {
        "type_map": ["Ni", "O"],
        "descriptor": {"type": "se_e2_a", "sel": [60, 60], "rcut_smth": 5.4, "rcut": 5.6,
                       "neuron": [25, 50, 100], "resnet_dt": False, "axis_neuron": 16,
                       "type_one_side": True, "precision": "float64", "seed": 1,
                       "_comment2": " that's all"},
        "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True, "precision": "float64",
                        "seed": 1, "_comment3": " that's all"},
        "spin": {"use_spin": [True, False], "virtual_len": [0.4], "spin_norm": [1.2737],
                 "_comment4": " that's all"},
        "_comment5": " that's all",
    },
    "learning_rate": {"type": "exp", "decay_steps": 10000, "start_lr": 1.00e-3, "stop_lr": 5.92e-6,
                      "_comment6": " that's all"},
    "loss": {"type": "ener_spin", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_fr": 1000,
             "limit_pref_fr": 1.0, "start_pref_fm": 10000, "limit_pref_fm": 10.0,
             "start_pref_v": 0, "limit_pref_v": 0, "_comment7": " that's all"},
    "training": {
        "training_data": {"systems": ["../data/data_0/"], "batch_size": 1,
                          "_comment8": "that's all"},
        "validation_data": {"systems": ["../data/data_1/"], "batch_size": 1, "numb_btch": 10,
                            "_comment9": "that's all"},
        "numb_steps": 1000000, "seed": 1, "disp_file": "lcurve.out", "disp_freq": 5000,
        "save_freq": 10000, "_comment10": "that's all",
    },
    "_comment11": "that's all",
}


def _keys(d, prefix=""):
    for k, v in d.items():
        yield prefix + k
        if isinstance(v, dict):
            yield from _keys(v, prefix + k + "/")


def edited(base, fn):
    d = copy.deepcopy(base)
    fn(d)
    return d


# ----------------------------------------------------------------------------- valid
@pytest.mark.parametrize("example", [WATER, SPIN_TORCH, SPIN_TF], ids=["water", "spin_torch", "spin_tf"])
def test_examples_validate_and_are_idempotent(example):
    before = copy.deepcopy(example)
    n = normalize_config(example)
    assert example == before  # the input is not modified
    assert not any(k.rsplit("/", 1)[-1].startswith("_") for k in _keys(n))
    assert normalize_config(n) == n
    assert json.loads(json.dumps(n)) == n


def test_water_defaults():
    n = normalize_config(WATER)
    d, f, m = n["model"]["descriptor"], n["model"]["fitting_net"], n["model"]
    assert d == {"type": "se_e2_a", "sel": [46, 92], "rcut_smth": 0.5, "rcut": 6.0,
                 "neuron": [25, 50, 100], "resnet_dt": False, "axis_neuron": 16, "seed": 1,
                 "activation_function": "tanh", "type_one_side": False, "precision": "default",
                 "trainable": True, "exclude_types": [], "env_protection": 0.0,
                 "set_davg_zero": False}
    assert f["type"] == "ener" and f["numb_fparam"] == 0 and f["rcond"] is None
    assert f["atom_ener"] == [] and f["trainable"] is True and f["default_fparam"] is None
    assert (m["data_stat_nbatch"], m["data_stat_protect"], m["preset_out_bias"]) == (10, 0.01, None)
    assert m["atom_exclude_types"] == [] and m["pair_exclude_types"] == [] and "spin" not in m
    loss = n["loss"]
    assert (loss["start_pref_ae"], loss["use_huber"], loss["huber_delta"], loss["loss_func"]) == (
        0.0, False, 0.01, "mse")
    assert loss["intensive_ener_virial"] is False and "relative_f" not in loss
    lr = n["learning_rate"]
    assert (lr["stop_lr_ratio"], lr["warmup_steps"], lr["decay_rate"], lr["smooth"]) == (
        None, 0, None, False)
    assert n["optimizer"] == {"type": "Adam", "adam_beta1": 0.9, "adam_beta2": 0.999,
                              "weight_decay": 0.0}
    tr = n["training"]
    assert tr["training_data"]["auto_prob"] == "prob_sys_size"
    assert tr["validation_data"]["numb_btch"] == 3 and tr["save_ckpt"] == "model.ckpt"
    assert tr["disp_training"] is True and tr["max_ckpt_keep"] == 5 and tr["enable_ema"] is False


def test_spin_examples():
    t = normalize_config(SPIN_TORCH)
    assert t["model"]["spin"] == {"use_spin": [True, False], "virtual_scale": [0.3140],
                                  "scheme": "deepspin", "allow_missing_label": False}
    assert t["loss"]["start_pref_fm"] == 1000 and t["loss"]["start_pref_v"] == 0.0
    tf = normalize_config(SPIN_TF)
    # the TensorFlow form gains virtual_scale = virtual_len / spin_norm = 0.4 / 1.2737
    assert tf["model"]["spin"]["virtual_scale"] == pytest.approx([0.4 / 1.2737], rel=1e-15)
    assert tf["model"]["spin"]["virtual_scale"][0] == pytest.approx(0.3140, abs=1e-4)
    assert tf["loss"]["limit_pref_fm"] == 10.0 and "start_pref_f" not in tf["loss"]


def test_aliases_resolve_to_canonical_names():
    d = edited(WATER, lambda d: (
        d["model"]["descriptor"].update(type="se_a", n_axis_neuron=8),
        d["model"]["descriptor"].pop("axis_neuron"),
        d["model"]["fitting_net"].update(n_neuron=[32, 32]),
        d["model"]["fitting_net"].pop("neuron"),
        d["loss"].update(type="ener_hess"),
        d["training"].update(stop_batch=10),
        d["training"].pop("numb_steps"),
        d["training"]["training_data"].update(auto_prob_style="prob_uniform", sys_weights=[0.5, 0.3, 0.2]),
        d["training"]["validation_data"].update(numb_batch=2),
        d["training"]["validation_data"].pop("numb_btch"),
    ))
    n = normalize_config(d)
    assert n["model"]["descriptor"]["type"] == "se_e2_a"
    assert n["model"]["descriptor"]["axis_neuron"] == 8
    assert n["model"]["fitting_net"]["neuron"] == [32, 32]
    assert n["loss"]["type"] == "ener" and n["training"]["numb_steps"] == 10
    td = n["training"]["training_data"]
    assert td["auto_prob"] == "prob_uniform" and td["sys_probs"] == [0.5, 0.3, 0.2]
    assert n["training"]["validation_data"]["numb_btch"] == 2
    assert "stop_batch" not in n["training"] and "n_neuron" not in n["model"]["fitting_net"]


def test_lr_variants_and_epochs():
    n = normalize_config(edited(WATER, lambda d: (
        d.update(learning_rate={"type": "wsd", "start_lr": 1e-3, "stop_lr_ratio": 1e-3,
                                "warmup_ratio": 0.05}),
        d["training"].pop("numb_steps"), d["training"].update(numb_epoch=3))))
    assert n["learning_rate"]["decay_phase_ratio"] == 0.1
    assert n["learning_rate"]["decay_type"] == "inverse_linear" and n["training"]["numb_epoch"] == 3
    n = normalize_config(edited(WATER, lambda d: d.update(
        learning_rate={"type": "cosine", "start_lr": 1e-3, "stop_lr": 1e-6, "warmup_steps": 10})))
    assert "decay_steps" not in n["learning_rate"] and n["learning_rate"]["warmup_start_factor"] == 0.0


# ------------------------------------------------------------------------------ errors
BAD = [
    # unknown keys: the suggestion comes from the section (and loss variant) the key is in
    (lambda d: d["model"]["descriptor"].update(sell=[46, 92]),
     r"^model/descriptor: unknown key 'sell'; did you mean 'sel'\?$"),
    (lambda d: d["loss"].update(start_pref_fr=1.0),
     r"^loss: unknown key 'start_pref_fr'; did you mean 'start_pref_f'\?$"),
    (lambda d: d.update(modle={}), r"^\(top level\): unknown key 'modle'; did you mean 'model'\?$"),
    (lambda d: d["training"].update(batch_size=1), r"^training: unknown key 'batch_size'$"),
    # wrong types, located at the key
    (lambda d: d["model"]["descriptor"].update(sel=46),
     r"^model/descriptor/sel: expected <list\[int\]\|str>, got int 46$"),
    (lambda d: d["model"]["descriptor"].update(rcut="6"),
     r"^model/descriptor/rcut: expected <float>, got str \"6\"$"),
    (lambda d: d["model"]["descriptor"].update(neuron=[25, 50.5]),
     r"^model/descriptor/neuron: expected <list\[int\]>, got list \[25, 50\.5\]$"),
    (lambda d: d["model"]["fitting_net"].update(resnet_dt="yes"),
     r"^model/fitting_net/resnet_dt: expected <bool>, got str \"yes\"$"),
    (lambda d: d["training"].update(numb_steps=True),
     r"^training/numb_steps: expected <int>, got bool true$"),
    (lambda d: d["model"].update(descriptor="se_e2_a"),
     r"^model/descriptor: expected <dict>, got str \"se_e2_a\"$"),
    # required keys
    (lambda d: d["model"].pop("type_map"), r"^model/type_map: required key missing"),
    (lambda d: d["learning_rate"].pop("start_lr"), r"^learning_rate/start_lr: required key missing"),
    (lambda d: d["model"]["descriptor"].pop("type"),
     r"^model/descriptor/type: required key missing \(expected one of \['se_e2_a', 'dpa1', 'se_atten_v2', 'se_a', 'se_atten'\]\)$"),
    # variants
    (lambda d: d["model"]["descriptor"].update(type="se_e2_r"),
     r"^model/descriptor/type: 'se_e2_r' is a DeePMD-kit option that dpcore does not implement; "
     r"supported: \['se_e2_a', 'dpa1', 'se_atten_v2', 'se_a', 'se_atten'\]$"),
    (lambda d: d["loss"].update(type="enr"),
     r"^loss/type: unknown type 'enr'; expected one of \['ener', 'ener_spin', 'ener_hess'\]; "
     r"did you mean 'ener'\?$"),
    (lambda d: d.update(optimizer={"type": "AdamW"}),
     r"^optimizer/type: 'AdamW' is a DeePMD-kit option that dpcore does not implement"),
    # mutually exclusive / aliases given twice
    (lambda d: d["learning_rate"].update(stop_lr_ratio=1e-4),
     r"^learning_rate: 'stop_lr' and 'stop_lr_ratio' are mutually exclusive"),
    (lambda d: d["learning_rate"].pop("stop_lr"),
     r"^learning_rate: give one of 'stop_lr' or 'stop_lr_ratio'$"),
    (lambda d: d["learning_rate"].update(warmup_steps=10, warmup_ratio=0.1),
     r"^learning_rate: 'warmup_steps' and 'warmup_ratio' are mutually exclusive"),
    (lambda d: d["training"].update(numb_epoch=2),
     r"^training: 'numb_steps' and 'numb_epoch' are mutually exclusive; give only one$"),
    (lambda d: d["training"].pop("numb_steps"),
     r"^training: give one of 'numb_steps' or 'numb_epoch'$"),
    (lambda d: d["training"].update(stop_batch=5),
     r"^training/numb_steps: given more than once as \['numb_steps', 'stop_batch'\]"),
    # values
    (lambda d: d["model"]["descriptor"].update(sel=[46, 92, 1]),
     r"^model/descriptor/sel: expected 2 non-negative ints \(one per type in type_map \['O', 'H'\]\), "
     r"got \[46, 92, 1\]$"),
    (lambda d: d["model"]["descriptor"].update(sel="auto:x"),
     r"^model/descriptor/sel: expected a list of 2 ints .* or 'auto' / 'auto:factor', got 'auto:x'$"),
    (lambda d: d["model"]["descriptor"].update(rcut_smth=6.5),
     r"^model/descriptor/rcut_smth: must satisfy 0 <= rcut_smth < rcut = 6\.0, got 6\.5$"),
    (lambda d: d["model"]["descriptor"].update(axis_neuron=200),
     r"^model/descriptor/axis_neuron: must be in 1\.\.neuron\[-1\] = 100, got 200$"),
    (lambda d: d["model"]["descriptor"].update(activation_function="tanhh"),
     r"^model/descriptor/activation_function: unknown activation 'tanhh'.*did you mean 'tanh'\?$"),
    (lambda d: d["model"]["fitting_net"].update(precision="float128"),
     r"^model/fitting_net/precision: unknown precision 'float128'"),
    (lambda d: d["model"]["fitting_net"].update(trainable=[True, False]),
     r"^model/fitting_net/trainable: a list needs len\(neuron\)\+1 = 4 entries, got 2$"),
    (lambda d: d["model"]["fitting_net"].update(numb_fparam=2, default_fparam=[1.0]),
     r"^model/fitting_net/default_fparam: has 1 values; expected numb_fparam = 2$"),
    (lambda d: d["model"]["fitting_net"].update(layer_name=["a", "b"]),
     r"^model/fitting_net/layer_name: shared fitting layers are a TensorFlow-only"),
    (lambda d: d["model"].update(atom_exclude_types=[2]),
     r"^model/atom_exclude_types: entry 2 is not a type in 0\.\.1$"),
    (lambda d: d["model"].update(preset_out_bias={"energy": [1.0]}),
     r"^model/preset_out_bias/energy: expected a list of 2 entries"),
    (lambda d: d["model"].update(use_srtab="table.txt"),
     r"^model/use_srtab: a DeePMD-kit option that dpcore does not implement$"),
    (lambda d: d["model"].update(type_map=["O", "O"]),
     r"^model/type_map: expected a non-empty list of distinct element names"),
    (lambda d: d["learning_rate"].update(start_lr=0.0),
     r"^learning_rate/start_lr: must be a finite number > 0, got 0\.0$"),
    (lambda d: d["learning_rate"].update(warmup_steps=2000000),
     r"^learning_rate/warmup_steps: must be < training/numb_steps = 1000000$"),
    (lambda d: d["loss"].update(loss_func="l1"), r"^loss/loss_func: expected 'mse' or 'mae', got 'l1'$"),
    (lambda d: d["loss"].update(huber_delta=[0.1, 0.2]), r"^loss/huber_delta: a list needs 3 values"),
    (lambda d: d["loss"].update(start_pref_e=-1), r"^loss/start_pref_e: must be a finite number >= 0"),
    (lambda d: d["training"]["training_data"].update(batch_size="mixed:4"),
     r"^training/training_data/batch_size: expected a positive int, a list of them, 'auto', "
     r"'auto:N', 'max:N' or 'filter:N'; got 'mixed:4'$"),
    (lambda d: d["training"]["training_data"].update(auto_prob="prob_sys"),
     r"^training/training_data/auto_prob: expected 'prob_uniform', 'prob_sys_size'"),
    (lambda d: d["training"]["validation_data"].update(numb_btch=0),
     r"^training/validation_data/numb_btch: must be >= 1$"),
    (lambda d: d.update(loss={"type": "ener_spin", "start_pref_fr": 1.0}),
     r"^loss/type: 'ener_spin' needs a model/spin section$"),
]


@pytest.mark.parametrize("edit,match", BAD, ids=[m[1:40] for _, m in BAD])
def test_bad_input_water(edit, match):
    with pytest.raises(ConfigError, match=match):
        normalize_config(edited(WATER, edit))


SPIN_BAD = [
    # the ener_spin section suggests its own keys: start_pref_f -> start_pref_fr (not _pf)
    (lambda d: d["loss"].update(start_pref_f=1000),
     r"^loss: unknown key 'start_pref_f'; did you mean 'start_pref_fr'\?$"),
    (lambda d: d["loss"].update(limit_pref_f=1),
     r"^loss: unknown key 'limit_pref_f'; did you mean 'limit_pref_fr'\?$"),
    (lambda d: d["model"]["spin"].update(use_spin=[True]),
     r"^model/spin/use_spin: expected 2 booleans \(one per type in \['Ni', 'O'\]\), got \[True\]$"),
    (lambda d: d["model"]["spin"].pop("virtual_scale"),
     r"^model/spin/virtual_scale: required for the deepspin model"),
    (lambda d: d["model"]["spin"].update(virtual_scale=[0.3, 0.2, 0.1]),
     r"^model/spin/virtual_scale: expected 2 \(one per type\) or 1 \(one per magnetic type\) numbers"),
    (lambda d: d["model"]["spin"].update(virtual_len=[0.4], spin_norm=[2.0]),
     r"^model/spin/virtual_scale: \[0\.314\] contradicts virtual_len / spin_norm = \[0\.2\]"),
    (lambda d: d["model"]["spin"].update(spin_norm=[2.0]),
     r"^model/spin: the TensorFlow form needs both 'spin_norm' and 'virtual_len'$"),
    (lambda d: d["model"]["spin"].update(scheme="native"),
     r"^model/spin/scheme: only 'deepspin' is supported"),
    (lambda d: d["model"]["spin"].update(use_spin=["Fe"]),
     r"^model/spin/use_spin: element names must be in type_map \['Ni', 'O'\], got \['Fe'\]$"),
]


@pytest.mark.parametrize("edit,match", SPIN_BAD, ids=[m[1:40] for _, m in SPIN_BAD])
def test_bad_input_spin(edit, match):
    with pytest.raises(ConfigError, match=match):
        normalize_config(edited(SPIN_TORCH, edit))


def test_not_a_dict_and_config_error_is_value_error():
    with pytest.raises(ConfigError, match=r"^\(top level\): expected a dict \(JSON object\), got list"):
        normalize_config([1])
    assert issubclass(ConfigError, ValueError)


def test_suggest_ranking():
    keys = ["start_pref_e", "start_pref_fr", "start_pref_fm", "start_pref_pf"]
    assert suggest("start_pref_f", keys) == "; did you mean 'start_pref_fr'?"
    assert suggest("zzz", keys) == ""


# ------------------------------------------------------------------ reading and writing
def test_load_and_write_normalized(tmp_path):
    src = tmp_path / "input.json"
    src.write_text(json.dumps(SPIN_TF))
    cfg = load_config(src)
    assert cfg.source_path == str(src.resolve())
    out = tmp_path / "out.json"
    write_normalized(cfg, out)
    back = json.loads(out.read_text())
    assert back == cfg and back["model"]["spin"]["virtual_scale"] == pytest.approx([0.4 / 1.2737])
    with pytest.raises(ConfigError, match=r"input\.json: refusing to overwrite the input file the "
                                          r"configuration was read from"):
        write_normalized(cfg, src)
    with pytest.raises(ConfigError, match=r"refusing to overwrite"):
        write_normalized(SPIN_TF, tmp_path / "sub/../input.json", source=src)
    assert json.loads(src.read_text()) == SPIN_TF  # untouched
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigError, match=r"bad\.json: not valid JSON"):
        load_config(bad)


def test_label_specs_from_config():
    from dpcore.data import label_specs_from_config

    spin = {s.name: s for s in label_specs_from_config(normalize_config(SPIN_TORCH))}
    assert spin["spin"].must and not spin["force_mag"].must and spin["fparam"].ndof is None
    d = edited(WATER, lambda d: d["model"]["fitting_net"].update(numb_fparam=2, numb_aparam=1))
    specs = {s.name: s for s in label_specs_from_config(normalize_config(d))}
    assert (specs["fparam"].ndof, specs["fparam"].must) == (2, True)
    assert (specs["aparam"].ndof, specs["aparam"].must) == (1, True) and not specs["spin"].must


@pytest.mark.skipif(not __import__("os").path.isdir("/work/shared/data"),
                    reason="reference data /work/shared/data is absent")
def test_samplers_from_spin_example():
    from dpcore.data import samplers_from_config

    # the example's "../data_reformat/data_i" is "nio_spin/data_i" in the shared data
    cfg = normalize_config(edited(SPIN_TORCH, lambda d: (
        d["training"]["training_data"].update(systems=["../data_0", "../data_1"]),
        d["training"]["validation_data"].update(systems=["../data_2"]))))
    train, valid = samplers_from_config(cfg, root="/work/shared/data/nio_spin/se_e2_a")
    assert [s.nframes for s in train.systems] == [60, 60] and train.batch_sizes == [3, 3]
    assert valid.numb_btch == 3 and [s.nframes for s in valid.systems] == [31]
    batches = valid.take(valid.numb_btch)
    assert all(b["find_spin"] == 1.0 and b["spin"].shape == (1, 32, 3) for b in batches)
