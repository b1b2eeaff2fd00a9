"""DeePMD-kit model-file envelopes for tests/test_io_*.py: a synthetic envelope with every awkward variable
shape, bit-exact recursive comparison, and the variables of an envelope."""

from __future__ import annotations

import numpy as np


def synthetic_envelope() -> dict:
    """Envelope with every awkward variable shape: nested dicts, lists, None, dtypes, specials."""
    rng = np.random.default_rng(7)
    special = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 5e-324, 1e308, 1 / 3])
    return {
        "backend": "dpcore",
        "model": {
            "@class": "Model",
            "type": "standard",
            "type_map": ["O", "H"],
            "preset_out_bias": {"energy": [None, 1.5]},
            "@variables": {
                "out_bias": rng.normal(size=(1, 2, 1)),
                "f32": rng.normal(size=(3, 4)).astype(np.float32),
                "i32": np.arange(6, dtype=np.int32).reshape(2, 3),
                "i64": np.array([-(2**62), 2**62], dtype=np.int64),
                "flags": np.array([True, False]),
                "special": special,
                "scalar0d": np.array(2.5),
                "nothing": None,
                "nested": {"deeper": {"w": rng.normal(size=(2, 2)), "b": None}},
                "listed": [rng.normal(size=3), None, [np.float32(1.25) * np.ones(2, np.float32), None]],
            },
            "layers": [
                {"@class": "Layer", "@variables": {"w": rng.normal(size=(2, 3)), "b": None, "idt": None}},
                {"@class": "Layer", "@variables": {"w": rng.normal(size=(3, 1)), "b": rng.normal(size=1)}},
            ],
        },
        "model_def_script": {"type_map": ["O", "H"], "descriptor": {"sel": [2, 3]}},
        "@variables": {},
    }


def assert_same(a, b, path="envelope"):
    """Recursive equality; arrays bit-for-bit with identical dtype and shape."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), path
        assert a.dtype == b.dtype, f"{path}: {a.dtype} != {b.dtype}"
        assert a.shape == b.shape, f"{path}: {a.shape} != {b.shape}"
        if a.dtype.kind == "f":  # YAML spells every NaN ".nan": NaN sign/payload bits are not kept
            a, b = np.where(np.isnan(a), np.nan, a), np.where(np.isnan(b), np.nan, b)
        assert a.tobytes() == b.tobytes(), f"{path}: values differ"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert type(a) is type(b) and a == b, f"{path}: {a!r} != {b!r}"


def variables(obj, path=""):
    """All (path, value) pairs under "@variables" keys."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "@variables":
                out += _leaves(v, f"{path}.{k}")
            else:
                out += variables(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += variables(v, f"{path}[{i}]")
    return out


def _leaves(obj, path):
    if isinstance(obj, dict):
        return [x for k, v in obj.items() for x in _leaves(v, f"{path}.{k}")]
    if isinstance(obj, list):
        return [x for i, v in enumerate(obj) for x in _leaves(v, f"{path}[{i}]")]
    return [(path, obj)]
