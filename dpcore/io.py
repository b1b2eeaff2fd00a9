"""DeePMD-kit serialized model files (``.dp`` HDF5 and ``.yaml``/``.yml``), envelope level.

A model file holds one *envelope* dict (SPEC 13.1)::

    {"software": "deepmd-kit", "version": ..., "time": ..., "backend": ...,
     "model": {...}, "model_def_script": {...}, "@variables": {...}}

Arrays live under keys named ``"@variables"`` at any depth. This module only
moves that dict to and from disk, exactly as DeePMD-kit's
``deepmd.dpmodel.utils.serialization.save_dp_model`` / ``load_dp_model`` do:

* ``.dp`` (HDF5): the root attribute ``"json"`` holds
  ``json.dumps(envelope, separators=(",", ":"))`` in which every non-null leaf
  under an ``"@variables"`` key (recursively, through dicts and lists) is
  replaced by the name ``"/variable_NNNN"`` of a root-level dataset holding
  it; the counter runs depth-first in dict insertion order.
* ``.yaml``/``.yml``: every ``numpy.ndarray`` under ``"@variables"`` becomes
  ``{"@class": "np.ndarray", "@is_variable": true, "@version": 1,
  "dtype": <dtype name>, "value": <nested lists>}``; the whole dict is
  written with ``yaml.safe_dump`` (keys sorted).

Reading reverses both, giving numpy arrays with the stored dtype (float32
stays float32). Python scalars under ``"@variables"`` (``min_nbor_dist``)
come back as 0-d numpy arrays from ``.dp`` (DeePMD-kit: numpy scalars) and as
Python floats from ``.yaml``. Zero-size arrays lose their shape in ``.yaml`` (DeePMD-kit's
format stores only nested lists).

``h5py`` (for ``.dp``) and ``pyyaml`` (for ``.yaml``) are optional
dependencies, imported only when needed (``pip install 'dpcore[io]'``).
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = [
    "DEEPMD_FORMAT_VERSION",
    "ModelFileError",
    "SUPPORTED_SUFFIXES",
    "read_model_file",
    "write_model_file",
]

#: DeePMD-kit version whose serialization format this module writes; used as the
#: envelope's ``"version"`` when the envelope does not carry one.
DEEPMD_FORMAT_VERSION = "3.2.0"

_HDF5_SUFFIXES = (".dp",)
_YAML_SUFFIXES = (".yaml", ".yml")
#: File name suffixes understood by :func:`read_model_file` / :func:`write_model_file`.
SUPPORTED_SUFFIXES = _HDF5_SUFFIXES + _YAML_SUFFIXES


class ModelFileError(ValueError):
    """A model file exists but is not a DeePMD-kit model envelope of the expected form."""


# --------------------------------------------------------------------------- helpers


def _import_h5py(path: Path):
    try:
        import h5py
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"reading or writing the HDF5 model file '{path}' needs the 'h5py' package: "
            "pip install h5py  (or pip install 'dpcore[io]')"
        ) from err
    return h5py


def _import_yaml(path: Path):
    try:
        import yaml
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"reading or writing the YAML model file '{path}' needs the 'pyyaml' package: "
            "pip install pyyaml  (or pip install 'dpcore[io]')"
        ) from err
    return yaml


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ModelFileError(
            f"unknown model file extension {path.suffix!r} for '{path}': supported are "
            + ", ".join(SUPPORTED_SUFFIXES)
            + " (DeePMD-kit HDF5 '.dp' or YAML '.yaml'/'.yml')"
        )
    return suffix


def _is_encoded_array(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj.get("@is_variable", False))


def _traverse(obj: Any, callback: Callable[[Any], Any], is_variable: bool = False) -> Any:
    """Copy of ``obj`` with ``callback`` applied to every variable leaf.

    Same walk as DeePMD-kit's ``traverse_model_dict``: a leaf is a variable if it
    lies under a key ``"@variables"`` (at any depth, through dicts and lists) and
    is not None, or if it is a dict carrying ``"@is_variable": true`` (an encoded
    YAML array). Dicts are visited in insertion order. Containers are copied, the
    input is never modified.
    """
    if isinstance(obj, dict):
        if _is_encoded_array(obj):
            return callback(obj)
        return {
            kk: _traverse(vv, callback, is_variable or kk == "@variables")
            for kk, vv in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [_traverse(vv, callback, is_variable) for vv in obj]
    if obj is None:
        return None
    if is_variable:
        return callback(obj)
    return obj


def _decode_yaml_array(obj: dict) -> np.ndarray:
    """``{"@class": "np.ndarray", "dtype": ..., "value": ...}`` -> numpy array."""
    if obj.get("@class") != "np.ndarray" or "dtype" not in obj or "value" not in obj:
        raise ModelFileError(f"malformed encoded array (expected @class np.ndarray, dtype, value): {obj!r:.200}")
    return np.asarray(obj["value"], dtype=np.dtype(obj["dtype"]))


def _plain_json(obj: Any) -> Any:
    """json.dumps ``default``: numpy values outside "@variables" become plain JSON."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


def _plain_yaml(obj: Any) -> Any:
    """Numpy scalars/arrays outside "@variables" -> plain Python (``yaml.safe_dump`` needs it)."""
    if isinstance(obj, dict):
        return {kk: _plain_yaml(vv) for kk, vv in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain_yaml(vv) for vv in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _check_envelope(envelope: Any, path: Path) -> None:
    if not isinstance(envelope, dict) or "model" not in envelope:
        found = sorted(envelope)[:10] if isinstance(envelope, dict) else type(envelope).__name__
        raise ModelFileError(
            f"'{path}' does not hold a DeePMD-kit model envelope: expected a mapping with a "
            f"'model' key (plus 'software', 'version', 'model_def_script', ...), found {found}"
        )


# --------------------------------------------------------------------------- reading


def read_model_file(path: str | os.PathLike) -> dict:
    """Read a DeePMD-kit serialized model file.

    Parameters
    ----------
    path
        A ``.dp`` (HDF5) or ``.yaml``/``.yml`` file as written by DeePMD-kit's
        ``save_dp_model`` (``dp convert-backend model.pth model.dp``) or by
        :func:`write_model_file`.

    Returns
    -------
    dict
        The envelope (SPEC 13.1) with every value under ``"@variables"``
        resolved to a numpy array (or numpy/Python scalar; ``None`` stays None).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ModelFileError
        Unknown extension, not HDF5 / not YAML, no ``"json"`` attribute, no
        ``"model"`` key, or a variable path naming a missing dataset.
    """
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file '{path}' does not exist (or is not a file)")
    if suffix in _HDF5_SUFFIXES:
        return _read_hdf5(path)
    return _read_yaml(path)


def _read_hdf5(path: Path) -> dict:
    h5py = _import_h5py(path)
    try:
        is_hdf5 = h5py.is_hdf5(str(path))
    except Exception:  # noqa: BLE001 - any failure means "not readable as HDF5"
        is_hdf5 = False
    if not is_hdf5:
        raise ModelFileError(
            f"'{path}' is not an HDF5 file: a '.dp' model must be HDF5 with the model as a JSON "
            "root attribute 'json' (DeePMD-kit save_dp_model / dp convert-backend)"
        )
    try:
        with h5py.File(path, "r") as f:
            if "json" not in f.attrs:
                raise ModelFileError(
                    f"'{path}' is HDF5 but has no root attribute 'json': a DeePMD-kit '.dp' model "
                    "stores its envelope there (root attributes found: "
                    f"{sorted(f.attrs.keys())})"
                )
            raw = f.attrs["json"]
            if isinstance(raw, bytes):
                raw = raw.decode("utf-8")
            try:
                envelope = json.loads(str(raw))
            except json.JSONDecodeError as err:
                raise ModelFileError(
                    f"the root attribute 'json' of '{path}' is not valid JSON: {err}"
                ) from None
            _check_envelope(envelope, path)

            def load_dataset(ref: Any) -> Any:
                if _is_encoded_array(ref):  # tolerate YAML-style arrays inside JSON
                    return _decode_yaml_array(ref)
                if not isinstance(ref, str):
                    return ref  # a literal value (not what DeePMD-kit writes, but unambiguous)
                try:
                    node = f[ref]
                except KeyError:
                    raise ModelFileError(
                        f"'{path}' refers to variable {ref!r} but has no such dataset "
                        f"(datasets: {sorted(f.keys())[:10]}{'...' if len(f.keys()) > 10 else ''})"
                    ) from None
                if not isinstance(node, h5py.Dataset):
                    raise ModelFileError(f"'{path}': variable {ref!r} is a group, expected a dataset")
                return np.array(node[()])  # a copy; scalar datasets become 0-d arrays

            return _traverse(envelope, load_dataset)
    except ModelFileError:
        raise
    except OSError as err:
        raise ModelFileError(f"cannot read HDF5 model file '{path}': {err}") from None


def _read_yaml(path: Path) -> dict:
    yaml = _import_yaml(path)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with open(path, encoding="utf-8") as fh:
            envelope = yaml.load(fh, Loader=loader)  # noqa: S506 - a SafeLoader
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ModelFileError(
            f"'{path}' is not valid YAML (expected a DeePMD-kit model envelope written by "
            f"save_dp_model): {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from None
    _check_envelope(envelope, path)

    def decode(obj: Any) -> Any:
        if _is_encoded_array(obj):
            try:
                return _decode_yaml_array(obj)
            except (TypeError, ValueError) as err:
                raise ModelFileError(f"'{path}': bad encoded array: {err}") from None
        return obj

    return _traverse(envelope, decode)


# --------------------------------------------------------------------------- writing


def _metadata_defaults() -> dict:
    """Fields DeePMD-kit's ``save_dp_model`` puts first; the envelope's own values win."""
    return {
        "software": "deepmd-kit",
        "version": DEEPMD_FORMAT_VERSION,
        "time": str(datetime.datetime.now(tz=datetime.timezone.utc)),
    }


def check_output_path(path: Path, force: bool, example: str, flag: str = "-o") -> None:
    """The checks of a command's output model file (``dpcore freeze``, ``dpcore compress``): a known suffix, not
    a folder (``example``: the file name suggested inside it), never replaced without ``force``."""
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise ValueError(f"{flag} {path}: the model file must end in one of {', '.join(SUPPORTED_SUFFIXES)} "
                         "(DeePMD-kit HDF5 '.dp' or YAML '.yaml')")
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file name such as {path / example}")
    if path.exists() and not force:
        raise ValueError(f"{path} exists; use --force to replace it")


def write_model_file(path: str | os.PathLike, envelope: dict) -> None:
    """Write a model envelope as a DeePMD-kit ``.dp`` (HDF5) or ``.yaml``/``.yml`` file.

    Parameters
    ----------
    path
        Target file; the suffix selects the format.
    envelope
        Dict with at least ``"model"`` (SPEC 13.1); arrays under ``"@variables"``
        keys. It is not modified.

    Notes
    -----
    As DeePMD-kit's ``save_dp_model``, the written dict is
    ``{"software": "deepmd-kit", "version": ..., "time": <UTC now>, **envelope}``
    (values present in ``envelope`` are kept, so a read-write round trip keeps
    the original metadata). Two fields DeePMD-kit's converters need are added
    when absent: ``"backend": "dpcore"`` (DeePMD-kit never checks it) and
    ``"model_def_script": {}`` (``dp convert-backend`` to ``.pth`` reads it).
    The file is written to a temporary file in the same directory and moved
    into place with ``os.replace``, so a failed write leaves no partial file.
    """
    path = Path(path)
    suffix = _suffix(path)
    _check_envelope(envelope, path)
    full = {**_metadata_defaults(), **envelope}
    full.setdefault("backend", "dpcore")
    full.setdefault("model_def_script", {})
    if suffix in _HDF5_SUFFIXES:
        h5py = _import_h5py(path)
        _atomic_write(path, suffix, lambda tmp: _write_hdf5(h5py, tmp, full))
    else:
        yaml = _import_yaml(path)
        _atomic_write(path, suffix, lambda tmp: _write_yaml(yaml, tmp, full))


def _write_hdf5(h5py, tmp: str, envelope: dict) -> None:
    counter = iter(range(10**9))
    with h5py.File(tmp, "w") as f:

        def store(value: Any) -> str:
            if _is_encoded_array(value):
                value = _decode_yaml_array(value)
            return f.create_dataset(f"variable_{next(counter):04d}", data=value).name

        encoded = _traverse(envelope, store)
        f.attrs["json"] = json.dumps(encoded, separators=(",", ":"), default=_plain_json)


def _write_yaml(yaml, tmp: str, envelope: dict) -> None:
    def encode(value: Any) -> Any:
        if _is_encoded_array(value):
            return value
        if isinstance(value, np.ndarray):
            return {
                "@class": "np.ndarray",
                "@is_variable": True,
                "@version": 1,
                "dtype": value.dtype.name,
                "value": value.tolist(),
            }
        return value

    encoded = _plain_yaml(_traverse(envelope, encode))
    with open(tmp, "w", encoding="utf-8") as fh:
        yaml.dump(encoded, fh, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper))  # = safe_dump, libyaml speed


def _atomic_write(path: Path, suffix: str, writer: Callable[[str], None]) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=directory)
    os.close(fd)
    try:
        writer(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
