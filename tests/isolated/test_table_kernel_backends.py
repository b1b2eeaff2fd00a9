"""The fused table kernel (backends/table_kernel.py) on the framework backends that register it (``BACKENDS``, one
per process): a compressed model's analytic forward runs it and gives the array version's outputs; autodiff forces
agree; TensorFlow runs that forward as a graph whose operations around the kernel are XLA clusters; jax calls it
from its XLA programs (FFI), with the array version's gradients; tensors that autograd records use the array
version on torch and Paddle.  NumPy: tests/test_table_kernel.py."""

import copy
from pathlib import Path

import numpy as np
import pytest

from helpers import make_model, random_system
from helpers.isolation import backend_under_test, import_framework

BACKENDS = ("torch", "tensorflow", "paddle", "jax")
BACKEND = backend_under_test(BACKENDS)
import_framework(BACKEND)
pytest.importorskip("numba")  # an optional extra (dpcore[fast]); CI installs it with [all]

OP = "tabulated_contraction"
OUTPUTS = ("energy", "atom_energy", "force", "virial", "atom_virial")


def _models():
    from dpcore.descriptor import tabulate as T

    model = make_model(descriptor={"sel": [20, 28], "rcut": 3.6, "rcut_smth": 0.4})
    return model, T.compress_model(copy.deepcopy(model), 0.8)


def _close(got, ref, tol=1e-12):
    for k in OUTPUTS:
        scale = max(np.abs(ref[k]).max(), 1e-300)
        assert np.abs(np.asarray(got[k]) - ref[k]).max() <= tol * scale, k


class _Spy:
    def __init__(self, fused):
        self.fused, self.calls = fused, []

    def contract(self, *a):
        A = self.fused.contract(*a)
        self.calls.append("contract" if A is not None else "declined")
        return A

    def contract_vjp(self, *a):
        self.calls.append("vjp")
        return self.fused.contract_vjp(*a)


def test_compressed_forward_runs_the_kernel_and_equals_the_array_version():
    from dpcore import xp as X
    from dpcore.backends import get_backend

    be = get_backend(BACKEND)
    assert be.settings["table_kernel"].startswith("numba ")
    plain, compressed = _models()
    assert be.table_kernel(compressed.config) and not be.table_kernel(plain.config)
    coord, atype, box = random_system(natoms=14, nframes=2, box_len=6.0, seed=5)
    numpy_kernel = X.kernel(get_backend("numpy").namespace(), OP)
    X.register_kernel("numpy", OP, None)
    try:
        ref = compressed.evaluate(coord, atype, box, atomic=True)  # NumPy, the array version
    finally:
        X.register_kernel("numpy", OP, numpy_kernel)
    name = X.namespace_name(be.namespace())
    spy = _Spy(X.kernel(be.namespace(), OP))
    X.register_kernel(name, OP, spy)
    try:
        out = compressed.evaluate(coord, atype, box, backend=BACKEND, atomic=True)
        assert spy.calls.count("contract") == 4 and spy.calls.count("vjp") == 4, spy.calls  # 2 x 2 type blocks
        _close(out, ref)
        spy.calls.clear()
        auto = compressed.evaluate(coord, atype, box, backend=BACKEND, atomic=True, force_mode="autodiff")
        _close(auto, ref)
        if BACKEND in ("torch", "paddle"):  # the energy pass runs it; under autograd the array version
            assert "declined" in spy.calls and "vjp" not in spy.calls, spy.calls
        else:  # TensorFlow, jax: the kernel, differentiated through the array version (custom gradients)
            assert "contract" in spy.calls, spy.calls
    finally:
        X.register_kernel(name, OP, spy.fused)


@pytest.mark.backends("tensorflow")
def test_tensorflow_compressed_forward_is_xla_around_the_kernel_and_the_plain_one_xla():
    import tensorflow as tf

    from dpcore.backends import get_backend

    be = get_backend(BACKEND)
    plain, compressed = _models()
    coord, atype, box = random_system(natoms=14, nframes=1, box_len=6.0, seed=6)
    jit = {}
    for label, model in (("plain", plain), ("compressed", compressed)):
        before = set(getattr(be, "_compiled_forwards", {}))
        model.evaluate(coord, atype, box, backend=BACKEND)
        new = [fn for key, fn in be._compiled_forwards.items() if key not in before and key[0] == "energy"]
        assert len(new) == 1
        fn = new[0]
        while not isinstance(fn, tf.types.experimental.GenericFunction):  # under the stderr filter, fast calls
            fn = fn.__wrapped__
        jit[label] = bool(fn._jit_compile)
    assert jit == {"plain": True, "compressed": False}
    # the compressed forward's operations are XLA clusters around the host calls (xla_around_host_calls)
    ops = fn._list_all_concrete_functions()[0].graph.get_operations()

    def marked(op):
        try:
            return bool(op.get_attr("_XlaCompile"))
        except ValueError:
            return False

    host = [op for op in ops if op.type in ("PyFunc", "PyFuncStateless", "EagerPyFunc")]
    assert len(host) >= 4 and not any(marked(op) for op in host)
    assert sum(marked(op) for op in ops) > 0.9 * (len(ops) - len(host))


@pytest.mark.backends("jax")
def test_jax_program_calls_the_kernel_quietly_and_differentiates_the_array_version(capfd):
    import jax
    import jax.numpy as jnp

    from dpcore.backends import get_backend, table_kernel_jax
    from dpcore.tabulated import table_geometry, tabulated_contraction, tabulated_contraction_vjp

    get_backend(BACKEND)
    rng = np.random.default_rng(3)
    info = [-1.0, 2.0, 5.0, 0.1, 0.5, -1.0]
    geometry = table_geometry(info, 36)
    fused = table_kernel_jax.JaxTableKernel
    for dtype, tol in (("float64", 1e-13), ("float32", 2e-5)):
        table = rng.normal(size=(36, 6, 7)).astype(dtype)
        r = rng.normal(size=(2, 3, 9, 4))
        r[..., 0] = rng.uniform(-2.0, 7.0, size=(2, 3, 9))
        r[..., 0] += 0.013  # off the knots, where a random table jumps (see tests/test_table_kernel.py)
        r = r.astype(dtype)
        gA = rng.normal(size=(2, 3, 4, 7)).astype(dtype)
        contract = jax.jit(lambda t, x: fused.contract(t, geometry, x))
        assert "dpcore_table_contract" in contract.lower(table, r).as_text()  # an FFI call inside the program
        A_ref, cache = tabulated_contraction(table, info, r)
        np.testing.assert_allclose(contract(table, r), A_ref, rtol=tol, atol=tol)
        vjp = jax.jit(lambda t, x, g: fused.contract_vjp(t, geometry, x, g))
        np.testing.assert_allclose(vjp(table, r, gA), tabulated_contraction_vjp(gA, cache), rtol=tol, atol=tol)

        def arrays(t, x):
            return tabulated_contraction(t, info, x)[0]

        # gradients of both calls are the array version's: first and second derivatives
        loss = lambda f: lambda t, x: jnp.sum(f(t, x) * gA)  # noqa: E731
        got = jax.grad(loss(lambda t, x: fused.contract(t, geometry, x)), argnums=(0, 1))(table, r)
        ref = jax.grad(loss(arrays), argnums=(0, 1))(jnp.asarray(table), jnp.asarray(r))
        for g, e in zip(got, ref):
            np.testing.assert_allclose(g, e, rtol=tol, atol=tol)
        second = jax.grad(lambda x: jnp.sum(fused.contract_vjp(table, geometry, x, gA) ** 2))(r)
        second_ref = jax.grad(lambda x: jnp.sum(jax.vjp(lambda y: arrays(table, y), x)[1](gA)[0] ** 2))(r)
        np.testing.assert_allclose(second, second_ref, rtol=50 * tol, atol=50 * tol)
    assert capfd.readouterr().err == ""  # no log line per call (XLA's legacy custom calls print one)


@pytest.mark.backends("jax")
def test_jax_handlers_run_only_on_the_ffi_layout_they_read(tmp_path, monkeypatch):
    import jax
    import jax.numpy as jnp

    from dpcore import xp as X
    from dpcore.backends import table_kernel, table_kernel_jax, xla_ffi_abi

    def register():  # as the jax backend does when it is created
        return table_kernel.register(X.namespace_name(jnp), table_kernel_jax.JaxTableKernel,
                                     xla_ffi_abi.abi_mismatch())

    header = Path(jax.ffi.include_dir()) / "xla" / "ffi" / "api" / "c_api.h"
    assert xla_ffi_abi.abi_mismatch() is None
    text = header.read_text()
    (tmp_path / "xla" / "ffi" / "api").mkdir(parents=True)
    fake = tmp_path / "xla" / "ffi" / "api" / "c_api.h"
    monkeypatch.setattr(jax.ffi, "include_dir", lambda: str(tmp_path))
    for old, new, name in [("void* data;\n  int64_t rank;", "int64_t rank;\n  void* data;", "XLA_FFI_Buffer"),
                           ("XLA_FFI_DataType_F64 = 12", "XLA_FFI_DataType_F64 = 13", "XLA_FFI_DataType_F64"),
                           ("#define XLA_FFI_API_MAJOR 0", "#define XLA_FFI_API_MAJOR 1", "XLA_FFI_API_MAJOR")]:
        assert old in text, old
        fake.write_text(text.replace(old, new))
        assert name in xla_ffi_abi.abi_mismatch()
        said = register()  # the array version, and why
        assert said.startswith("arrays (") and name in said and X.kernel(jnp, OP) is None
    fake.unlink()
    assert "no " in xla_ffi_abi.abi_mismatch()
    monkeypatch.undo()
    assert register().startswith("numba ") and X.kernel(jnp, OP) is table_kernel_jax.JaxTableKernel
