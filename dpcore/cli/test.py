"""``dpcore test``: errors of a model on labelled deepmd/npy systems, like DeePMD-kit's ``dp test``.

For every system (folders searched recursively for ``type.raw``) the model is evaluated on the first
``N`` frames (file order: ``set.000`` first) and the MAE/RMSE of the energy (total and per atom),
force, virial (total and per atom), stress (``-virial / volume``) and, for a spin model, magnetic
force are printed; then the weighted average over all systems
(:func:`dpcore.infer.metrics.merge_errors`).  A quantity whose label file is absent prints ``nan`` and
does not enter the average.

``-d PREFIX`` writes DeePMD-kit detail files, one block per system, each block headed
``# <system>: <columns>``, atoms in the order of the data files (not the type-sorted order used
internally).  As in DeePMD-kit the name is ``Path(PREFIX).with_suffix(".e.out")``, so a suffix of
PREFIX is replaced (``-d out/detail.txt`` writes ``out/detail.e.out``):

=====================  ===================================================================
PREFIX.e.out           data_e pred_e                           (one row per frame, eV)
PREFIX.e_peratom.out   data_e pred_e divided by natoms
PREFIX.f.out           data_fx data_fy data_fz pred_fx pred_fy pred_fz   (one row per atom)
PREFIX.v.out           data_vxx ... data_vzz pred_vxx ... pred_vzz     (one row per frame)
PREFIX.v_peratom.out   the same divided by natoms
PREFIX.s.out           data_sxx ... data_szz pred_sxx ... pred_szz     (stress = -virial / volume,
                       eV/Å³; periodic systems only, as DeePMD-kit 3.2)
PREFIX.fm.out          data_fmx data_fmy data_fmz pred_fmx pred_fmy pred_fmz (spin models,
                       magnetic atoms only)
=====================  ===================================================================

Data columns of frames without that label hold ``nan``.  No detail file may be the model file or a
file of a tested system.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np

from ..infer.metrics import QUANTITIES, ErrorStat, energy_errors, merge_errors

_RULE = "# -----------------------------------------------"
_LABELS = {  # quantity -> (MAE line label, RMSE line label), DeePMD-kit's wording
    "energy": ("Energy MAE         ", "Energy RMSE        "),
    "energy_per_atom": ("Energy MAE/Natoms  ", "Energy RMSE/Natoms "),
    "force": ("Force  MAE         ", "Force  RMSE        "),
    "virial": ("Virial MAE         ", "Virial RMSE        "),
    "virial_per_atom": ("Virial MAE/Natoms  ", "Virial RMSE/Natoms "),
    "stress": ("Stress MAE         ", "Stress RMSE        "),
    "force_mag": ("Force spin MAE     ", "Force spin RMSE    "),
}
_VIRIAL_COLS = [f"v{a}{b}" for a in "xyz" for b in "xyz"]
_STRESS_COLS = [f"s{a}{b}" for a in "xyz" for b in "xyz"]
_DETAIL_HEADERS = {
    ".e.out": "data_e pred_e",
    ".e_peratom.out": "data_e pred_e",
    ".f.out": "data_fx data_fy data_fz pred_fx pred_fy pred_fz",
    ".v.out": " ".join([f"data_{c}" for c in _VIRIAL_COLS] + [f"pred_{c}" for c in _VIRIAL_COLS]),
    ".v_peratom.out": " ".join([f"data_{c}" for c in _VIRIAL_COLS] + [f"pred_{c}" for c in _VIRIAL_COLS]),
    ".s.out": " ".join([f"data_{c}" for c in _STRESS_COLS] + [f"pred_{c}" for c in _STRESS_COLS]),
    ".fm.out": "data_fmx data_fmy data_fmz pred_fmx pred_fmy pred_fmz",
}
def add_arguments(p) -> None:
    p.add_argument("-m", "--model", required=True, help="model file (.dp or .yaml)")
    p.add_argument("-s", "--system", required=True, nargs="+", help="system folders (searched recursively) or .h5 files")
    p.add_argument("-n", "--numb-test", type=int, default=0, help="test the first N frames of each system (default 0 = all)")
    p.add_argument("-d", "--detail-file", default=None, metavar="PREFIX",
                   help="write PREFIX.e.out, .e_peratom.out, .f.out, .v.out, .v_peratom.out, .s.out (and .fm.out for spin)")
    p.add_argument("--backend", default="numpy", help="backend used for evaluation (default numpy)")
    mem = p.add_mutually_exclusive_group()
    mem.add_argument("--max-memory", default=None, metavar="SIZE",
                     help="working memory of one model call, bytes or e.g. 512MB, 2GiB (default 256MiB); frames and "
                          "large systems are evaluated in chunks that fit, with the same results")
    mem.add_argument("--chunk-size", type=int, default=None, metavar="N",
                     help="centre atoms per model call instead of --max-memory")


# ----------------------------------------------------------------------------------------------- model
def is_spin_model(model) -> bool:
    """True if ``model.evaluate`` takes a ``spin`` argument (a spin energy model)."""
    try:
        return "spin" in inspect.signature(model.evaluate).parameters
    except (AttributeError, TypeError, ValueError):
        return False


def _fitting_config(model) -> dict:
    """The ``fitting_net`` section of the model (for a spin model, of its backbone if it has no own)."""
    for obj in (model, getattr(model, "backbone", None)):
        fit = (getattr(obj, "config", None) or {}).get("fitting_net")
        if fit is not None:
            return fit
    return {}


def label_specs_for(model):
    """What ``dpcore test`` reads from each system: the standard labels, fparam/aparam sized for the model."""
    from ..data import label_specs

    fit = _fitting_config(model)
    return label_specs(numb_fparam=fit.get("numb_fparam", 0), numb_aparam=fit.get("numb_aparam", 0),
                       default_fparam=fit.get("default_fparam"), spin=is_spin_model(model))


def predict(model, system, nframes: int, backend: str = "numpy", chunk_size=None, max_memory=None) -> dict:
    """Model outputs on the first ``nframes`` frames of ``system`` (type-sorted atom order, NumPy arrays);
    ``model.evaluate`` splits them into model calls of bounded memory (``chunk_size`` / ``max_memory``)."""
    fit = _fitting_config(model)
    f = slice(0, nframes)
    kw = dict(box=None if system.box is None else system.box[f], backend=backend, chunk_size=chunk_size,
              max_memory=max_memory, fparam=system.data["fparam"][f] if fit.get("numb_fparam", 0) else None,
              aparam=system.data["aparam"][f] if fit.get("numb_aparam", 0) else None)
    if is_spin_model(model):
        out = model.evaluate(system.coord[f], system.atype, spin=system.data["spin"][f], **kw)
    else:
        out = model.evaluate(system.coord[f], system.atype, **kw)
    return {k: np.asarray(out[k]) for k in ("energy", "force", "virial", "force_mag", "mask_mag") if k in out}


def system_errors(pred: dict, system, nframes: int) -> dict[str, ErrorStat]:
    """Errors of ``pred`` (from :func:`predict`) against the labels of the first ``nframes`` frames."""
    label = {k: system.data[k][:nframes] for k in ("energy", "force", "virial", "force_mag") if k in system.data}
    find = {k: system.find[k][:nframes] for k in label}
    return energy_errors(pred, label, find, natoms=system.natoms, virial=system.pbc,
                         box=None if system.box is None else system.box[:nframes])


# ----------------------------------------------------------------------------------------------- report
def format_errors(errors: dict[str, ErrorStat], spin: bool = False) -> list[str]:
    """DeePMD-kit style report lines; quantities without labels print ``nan``."""
    lines = []
    for q, unit in QUANTITIES.items():
        if q == "force_mag" and not spin:
            continue
        st = errors.get(q, ErrorStat.empty())
        lines.append(f"{_LABELS[q][0]}: {st.mae:e} {unit}")
        lines.append(f"{_LABELS[q][1]}: {st.rmse:e} {unit}")
    return lines


def _missing_notes(system, errors, spin) -> list[str]:
    notes = []
    for name, qs in (("energy", "energy"), ("force", "force"), ("virial", "virial"), ("force_mag", "force_mag")):
        if name == "force_mag" and not spin:
            continue
        if qs not in errors:
            why = ("not reported for a non-periodic system" if name == "virial" and not system.pbc
                   else f"no labels (set.*/{name}.npy absent)")
            notes.append(f"# {name}: {why}; its errors print nan")
    return notes


# ----------------------------------------------------------------------------------------------- details
def detail_paths(prefix, spin: bool) -> dict[str, Path]:
    """Detail file of each suffix (``Path(prefix).with_suffix(suffix)``, as DeePMD-kit names them)."""
    base = Path(prefix)
    return {s: base.with_suffix(s) for s in _DETAIL_HEADERS if s != ".fm.out" or spin}


def _input_files(model_path, systems) -> set[Path]:
    files = {Path(model_path).resolve()}
    for s in systems:
        root = getattr(s.store, "root", None)
        if root is not None:
            files |= {p.resolve() for p in Path(root).rglob("*") if p.is_file()}
        else:  # HDF5 store
            files.add(Path(s.store.filename).resolve())
    return files


def _check_outputs(paths: dict[str, Path], model_path, systems) -> None:
    inputs = _input_files(model_path, systems)
    for p in paths.values():
        if p.resolve() in inputs:
            raise ValueError(f"detail file {p} would overwrite an input file (the model or a system file); "
                             "choose another -d PREFIX")


def _unsort(arr: np.ndarray, idx_map: np.ndarray) -> np.ndarray:
    """Per-atom array (nf, natoms, ...) from type-sorted order back to the order of the data files."""
    out = np.empty_like(arr)
    out[:, idx_map] = arr
    return out


def _with_nan(data: np.ndarray, find) -> np.ndarray:
    data = np.array(data, dtype=np.float64)
    data[np.asarray(find) <= 0] = np.nan
    return data


def write_details(files: dict, system, pred: dict, nframes: int) -> None:
    """Append one system's block to each open detail file (atoms in the data files' order)."""
    nf, n = nframes, system.natoms
    head = lambda s: f"{system.path}: {_DETAIL_HEADERS[s]}"  # noqa: E731
    e = np.column_stack([_with_nan(system.data["energy"][:nf].reshape(nf), system.find["energy"][:nf]),
                         pred["energy"].reshape(nf)])
    np.savetxt(files[".e.out"], e, header=head(".e.out"))
    np.savetxt(files[".e_peratom.out"], e / n, header=head(".e_peratom.out"))
    df = _unsort(_with_nan(system.data["force"][:nf], system.find["force"][:nf]), system.idx_map)
    pf = _unsort(pred["force"].reshape(nf, n, 3), system.idx_map)
    np.savetxt(files[".f.out"], np.concatenate([df, pf], axis=-1).reshape(-1, 6), header=head(".f.out"))
    v = np.concatenate([_with_nan(system.data["virial"][:nf], system.find["virial"][:nf]),
                        pred["virial"].reshape(nf, 9)], axis=1)
    np.savetxt(files[".v.out"], v, header=head(".v.out"))
    np.savetxt(files[".v_peratom.out"], v / n, header=head(".v_peratom.out"))
    if system.box is not None:
        volume = np.abs(np.linalg.det(system.box[:nf].reshape(nf, 3, 3)))[:, None]
        np.savetxt(files[".s.out"], -v / volume, header=f"{system.path} (eV/Å³): {_DETAIL_HEADERS['.s.out']}")
    if ".fm.out" in files:
        dm = _unsort(_with_nan(system.data["force_mag"][:nf], system.find["force_mag"][:nf]), system.idx_map)
        pm = _unsort(pred["force_mag"].reshape(nf, n, 3), system.idx_map)
        mag = _unsort(pred["mask_mag"].reshape(nf, n, 1), system.idx_map)[..., 0] != 0
        np.savetxt(files[".fm.out"], np.concatenate([dm, pm], axis=-1)[mag].reshape(-1, 6), header=head(".fm.out"))


# ----------------------------------------------------------------------------------------------- command
def main(args) -> int:
    from .. import load
    from ..data import load_systems
    from ..infer.chunked import centres_per_call

    if args.numb_test < 0:
        raise ValueError(f"-n/--numb-test must be >= 0 (0 = all frames), got {args.numb_test}")
    if not Path(args.model).is_file():
        raise FileNotFoundError(f"model file {args.model!r} not found (give a .dp or .yaml model file with -m)")
    model = load(args.model)
    spin = is_spin_model(model)
    centres_per_call(model.config, args.chunk_size, args.max_memory)  # a bad value fails before any system is read
    systems = load_systems(args.system, type_map=model.type_map, labels=label_specs_for(model))

    paths = detail_paths(args.detail_file, spin) if args.detail_file else {}
    if paths:
        _check_outputs(paths, args.model, systems)
        next(iter(paths.values())).parent.mkdir(parents=True, exist_ok=True)
    files = {s: open(p, "w", encoding="utf-8") for s, p in paths.items()}
    all_errors = []
    try:
        for system in systems:
            nf = system.nframes if args.numb_test == 0 else min(args.numb_test, system.nframes)
            pred = predict(model, system, nf, args.backend, args.chunk_size, args.max_memory)
            errors = system_errors(pred, system, nf)
            all_errors.append(errors)
            print("# ---------------output of dpcore test--------------- ")
            print(f"# testing system : {system.path}")
            print(f"# number of test data : {nf:d} ")
            print("\n".join(format_errors(errors, spin) + _missing_notes(system, errors, spin)))
            print(_RULE)
            if files:
                write_details(files, system, pred, nf)
    finally:
        for fh in files.values():
            fh.close()
    print("# ----------weighted average of errors----------- ")
    print(f"# number of systems : {len(systems)}")
    print("\n".join(format_errors(merge_errors(all_errors), spin)))
    print(_RULE)
    if paths:
        print("# detail files: " + ", ".join(str(p) for p in paths.values()))
    return 0
