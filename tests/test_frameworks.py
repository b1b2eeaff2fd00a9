"""Frameworks in one process: refused where they would crash it, quiet where they only talk
(dpcore.backends.frameworks).  Each scenario runs in its own interpreter."""

import os
import subprocess
import sys
import textwrap

import pytest

MODEL = textwrap.dedent("""
    import numpy as np, dpcore
    model = dpcore.model_from_config({"type_map": ["O", "H"], "descriptor": {"type": "se_e2_a", "sel": [8, 8],
        "rcut": 4.0, "rcut_smth": 0.5, "neuron": [4, 8], "axis_neuron": 2}, "fitting_net": {"neuron": [8]}}, seed=1)
    rng = np.random.default_rng(0)
    coord = rng.uniform(0, 6.0, (1, 6, 3)); atype = np.array([0, 0, 1, 1, 1, 1]); box = 6.0 * np.eye(3).reshape(1, 9)
""")


def _run(code: str, **env):
    return subprocess.run([sys.executable, "-c", MODEL + textwrap.dedent(code)], capture_output=True, text=True,
                          env={**{k: v for k, v in os.environ.items() if k not in _SET_BY_DPCORE}, **env}, timeout=600)


# a fresh user process: none of what dpcore (or an earlier test) put into this process's environment
_SET_BY_DPCORE = ("TF_CPP_MIN_LOG_LEVEL", "DPCORE_FRAMEWORK_LOGS", "XLA_FLAGS", "TF_XLA_FLAGS",
                  "JAX_COMPILATION_CACHE_DIR", "JAX_COMPILATION_CACHE_MAX_SIZE", "DPCORE_COMPILE_CACHE_SET_JAX",
                  "DPCORE_COMPILE_CACHE_SET_TENSORFLOW")


def test_paddle_after_tensorflow_is_a_clear_error_not_a_crash():
    proc = _run("""
        model.evaluate(coord, atype, box, backend="tensorflow")
        from dpcore.backends import FrameworkConflictError
        try:
            model.evaluate(coord, atype, box, backend="paddle")
        except FrameworkConflictError as e:
            print("REFUSED:", e)
        import sys; print("paddle imported:", "paddle" in sys.modules)
    """)
    assert proc.returncode == 0, f"killed by signal {-proc.returncode}" if proc.returncode < 0 else proc.stderr
    assert "REFUSED: backend 'paddle': paddle cannot be imported in a process that has already imported tensorflow" \
        in proc.stdout
    assert "in another Python process" in proc.stdout and "paddle imported: False" in proc.stdout


def test_paddle_then_tensorflow_works_in_one_process():
    proc = _run("""
        a = model.evaluate(coord, atype, box, backend="paddle")
        b = model.evaluate(coord, atype, box, backend="tensorflow")
        ref = model.evaluate(coord, atype, box)
        from dpcore.conformance.tolerances import TOLERANCES
        for out in (a, b):
            for k in ("energy", "force", "virial"):
                err = np.abs(out[k] - ref[k]).max() / np.abs(ref[k]).max()
                assert err <= TOLERANCES["float64"], (k, err)
        print("BOTH OK")
    """)
    assert proc.returncode == 0 and "BOTH OK" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.parametrize("backend", ["tensorflow", "paddle"])
def test_framework_import_prints_no_noise(backend):
    proc = _run(f"""
        out = model.evaluate(coord, atype, box, backend="{backend}")
        print("ENERGY", float(out["energy"][0, 0]))
    """)
    assert proc.returncode == 0 and "ENERGY" in proc.stdout, proc.stderr[-3000:]
    assert proc.stderr == "", f"framework noise on stderr:\n{proc.stderr[:2000]}"


def test_a_users_log_setting_is_honoured():
    """With the user's own TF_CPP_MIN_LOG_LEVEL nothing is filtered or overridden."""
    proc = _run("""
        import os
        model.evaluate(coord, atype, box, backend="tensorflow")
        print("LEVEL", os.environ["TF_CPP_MIN_LOG_LEVEL"])
    """, TF_CPP_MIN_LOG_LEVEL="0")
    assert proc.returncode == 0 and "LEVEL 0" in proc.stdout, proc.stderr[-3000:]


def test_filtered_stderr_drops_only_the_noise(capfd):
    from dpcore.backends.frameworks import _filtered_stderr

    with _filtered_stderr((r"^I\d{4} ", r"^noise$")):
        os.write(2, b"I0000 00:00:1.5 123 port.cc:153] oneDNN custom operations are on\nkeep me\nnoise\n")
        print("python line", file=sys.stderr)
    # (pytest's sys.stderr does not write to descriptor 2, so only the set of lines is fixed)
    assert sorted(capfd.readouterr().err.splitlines()) == ["keep me", "python line"]


def test_filtered_stderr_passes_everything_on_when_the_import_fails(capfd):
    from dpcore.backends.frameworks import _filtered_stderr

    with pytest.raises(ImportError), _filtered_stderr((r"^I\d{4} ",)):
        os.write(2, b"I0000 noise\nreal problem\n")
        raise ImportError("broken")
    assert capfd.readouterr().err == "real problem\n"



def test_filtered_stderr_is_shared_by_threads_that_overlap(capfd):
    """A step compiling in the background (dpcore.train.tiers) and the loop's own calls overlap, and need not
    leave in the order they came: descriptor 2 is captured once and given back when the last one leaves (each
    restoring what it found would leave it pointing at the other's temporary file)."""
    import threading

    from dpcore.backends.frameworks import _filtered_stderr

    inside, leave = threading.Event(), threading.Event()

    def background():
        with _filtered_stderr((r"^noise",)):
            os.write(2, b"noise from the background\nkept from the background\n")
            inside.set()
            leave.wait(30)

    thread = threading.Thread(target=background)
    thread.start()
    assert inside.wait(30)
    with _filtered_stderr((r"^noise",)):
        os.write(2, b"noise from the loop\nkept from the loop\n")
        leave.set()
        thread.join(30)  # the background thread leaves first
    os.write(2, b"after both\n")
    assert capfd.readouterr().err.splitlines() == ["kept from the background", "kept from the loop", "after both"]


# ------------------------------------------------------------------ XLA compiler options (registry xla_flags)

def _xla_entry(**kw):
    import dataclasses

    from dpcore.backends.registry import info

    return dataclasses.replace(info("jax"), **kw)


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_xla_options_reach_the_framework_and_keep_the_numbers(backend):
    pytest.importorskip("jaxlib" if backend == "jax" else "tensorflow")
    proc = _run(f"""
        import os
        out = model.evaluate(coord, atype, box, backend="{backend}")
        ref = model.evaluate(coord, atype, box)
        print("XLA_FLAGS:", os.environ.get("XLA_FLAGS"))
        print("ERR:", max(float(np.abs(out[k] - ref[k]).max()) for k in ("energy", "force", "virial")))
    """, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    assert proc.returncode == 0, proc.stderr
    flags = proc.stdout.split("XLA_FLAGS:")[1].split("\n")[0].split()
    # the user's option kept first, dpcore's added once (the thread plan may add its own after them)
    assert flags[:3] == ["--xla_force_host_platform_device_count=1", "--xla_cpu_use_fusion_emitters=false",
                         "--xla_cpu_experimental_ynn_fusion_type=individual_dot"], flags
    assert sum(f.startswith("--xla_cpu_use_fusion_emitters") for f in flags) == 1, flags
    assert float(proc.stdout.split("ERR:")[1]) < 1e-10


def test_a_users_xla_option_is_kept(monkeypatch):
    from dpcore.backends import frameworks

    pytest.importorskip("jaxlib")
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_fusion_emitters=true")
    frameworks._set_xla_flags(_xla_entry())
    assert os.environ["XLA_FLAGS"] == ("--xla_cpu_use_fusion_emitters=true "
                                       "--xla_cpu_experimental_ynn_fusion_type=individual_dot")


def test_an_option_the_library_does_not_name_is_never_set(monkeypatch):
    """XLA aborts the process on an unknown option: dpcore adds only what the library names, and takes out an
    option it added for another framework when the next framework's XLA does not know it."""
    from dpcore.backends import frameworks

    pytest.importorskip("jaxlib")
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.setattr(frameworks, "_ADDED_XLA_FLAGS", set())
    frameworks._set_xla_flags(_xla_entry(xla_flags=("--xla_cpu_no_such_option_in_any_xla=1",)))
    assert "XLA_FLAGS" not in os.environ
    frameworks._set_xla_flags(_xla_entry())
    assert os.environ["XLA_FLAGS"] == ("--xla_cpu_use_fusion_emitters=false "
                                       "--xla_cpu_experimental_ynn_fusion_type=individual_dot")
    frameworks._set_xla_flags(_xla_entry(xla_flags=(), xla_library=("jaxlib/no_such_library.so",)))
    assert os.environ["XLA_FLAGS"] == ""


# ------------------------------------------------------------------ compiled-program cache (registry compile_cache)

@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_a_second_process_loads_the_compiled_programs(backend, tmp_path):
    """The first process writes its compiled forward into dpcore's cache, the second finds it and gives the
    same numbers, and prints nothing (TensorFlow logs a text-proto parse error on every entry it reads)."""
    pytest.importorskip("jaxlib" if backend == "jax" else "tensorflow")
    code = {"jax": """
        out = model.evaluate(coord, atype, box, backend="jax")  # the compiled model forward
        print("E:", repr(float(np.asarray(out["energy"]).ravel()[0])))
    """, "tensorflow": """
        from dpcore.backends import get_backend
        be = get_backend("tensorflow")  # the training steps are the XLA programs (jit_compile)
        import tensorflow as tf
        f = be.jit(lambda x: tf.reduce_sum(tf.tanh(x) * x), jit_compile=True)
        print("E:", repr(float(f(tf.constant(coord)))))
    """}[backend]
    env = dict(DPCORE_COMPILE_CACHE=str(tmp_path), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    first = _run(code, **env)
    assert first.returncode == 0, first.stderr
    files = sorted(p.name for p in (tmp_path / backend).iterdir())
    assert files, f"nothing cached under {tmp_path / backend}"
    second = _run(code, **env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.split("E:")[1] == first.stdout.split("E:")[1]
    assert not second.stderr.strip(), second.stderr
    assert sorted(p.name for p in (tmp_path / backend).iterdir()) == files  # found, not compiled again


def test_compile_cache_off_and_a_users_own_cache_are_respected(monkeypatch, tmp_path):
    from dpcore.backends import frameworks
    from dpcore.backends.registry import info

    for key in ("JAX_COMPILATION_CACHE_DIR", "JAX_COMPILATION_CACHE_MAX_SIZE", "TF_XLA_FLAGS",
                "DPCORE_COMPILE_CACHE_SET_JAX", "DPCORE_COMPILE_CACHE_SET_TENSORFLOW"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DPCORE_COMPILE_CACHE", "off")
    assert frameworks.compile_cache_dir("jax") is None
    frameworks._set_compile_cache(info("jax"))
    assert "JAX_COMPILATION_CACHE_DIR" not in os.environ

    monkeypatch.setenv("DPCORE_COMPILE_CACHE", str(tmp_path))
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/users/own/cache")
    frameworks._set_compile_cache(info("jax"))
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == "/users/own/cache"
    assert "JAX_COMPILATION_CACHE_MAX_SIZE" not in os.environ  # the user's cache, the user's size

    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    frameworks._set_compile_cache(info("jax"))
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "jax")
    assert os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] == str(2 ** 31)

    # a size of the user's own, without a directory: dpcore's directory, the user's size
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_MAX_SIZE", "1000000")
    frameworks._set_compile_cache(info("jax"))
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "jax")
    assert os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] == "1000000"
    if frameworks._knows(info("tensorflow").xla_library, "--tf_xla_persistent_cache_directory"):
        monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_persistent_cache_directory=/users/own")
        frameworks._set_compile_cache(info("tensorflow"))
        assert os.environ["TF_XLA_FLAGS"] == "--tf_xla_persistent_cache_directory=/users/own"
        monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_min_cluster_size=2")
        frameworks._set_compile_cache(info("tensorflow"))
        assert os.environ["TF_XLA_FLAGS"] == ("--tf_xla_min_cluster_size=2 --tf_xla_persistent_cache_directory="
                                              f"{tmp_path / 'tensorflow'}")


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_a_child_process_decides_its_compile_cache_again(monkeypatch, tmp_path, backend):
    """The cache settings a dpcore process exports are not taken for the user's in its child processes: the
    child's DPCORE_COMPILE_CACHE (off, or another directory) applies; the user's own settings stay."""
    from dpcore.backends import frameworks
    from dpcore.backends.registry import info

    entry = info(backend)
    if backend == "tensorflow" and not frameworks._knows(entry.xla_library, "--tf_xla_persistent_cache_directory"):
        pytest.skip("this TensorFlow's XLA has no persistent cache option")
    keys = list(entry.compile_cache) + [frameworks._compile_cache_mark(entry)]
    for key in keys:
        monkeypatch.delenv(key, raising=False)
    key = next(iter(entry.compile_cache))  # the variable naming the directory

    def cache_dir():
        return next((o.split("=", 1)[1] for o in os.environ.get(key, "").split() if "cache_dir" in o),
                    os.environ.get(key)) if backend == "tensorflow" else os.environ.get(key)

    monkeypatch.setenv("DPCORE_COMPILE_CACHE", str(tmp_path / "parent"))
    frameworks._set_compile_cache(entry)  # the parent process
    assert cache_dir() == str(tmp_path / "parent" / backend)
    monkeypatch.setenv("DPCORE_COMPILE_CACHE", "off")  # a child run with the cache off
    frameworks._set_compile_cache(entry)
    assert cache_dir() is None and not any(k in os.environ for k in keys)
    monkeypatch.setenv("DPCORE_COMPILE_CACHE", str(tmp_path / "parent"))
    frameworks._set_compile_cache(entry)
    monkeypatch.setenv("DPCORE_COMPILE_CACHE", str(tmp_path / "child"))  # a child with its own directory
    frameworks._set_compile_cache(entry)
    assert cache_dir() == str(tmp_path / "child" / backend)
    frameworks._set_compile_cache(entry)  # idempotent
    assert cache_dir() == str(tmp_path / "child" / backend)


def test_an_unusable_compile_cache_directory_turns_the_cache_off(monkeypatch, tmp_path):
    from dpcore.backends import frameworks

    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("DPCORE_COMPILE_CACHE", str(tmp_path / "a_file"))  # no directory can be made under a file
    assert frameworks.compile_cache_dir("jax") is None
    monkeypatch.setenv("DPCORE_COMPILE_CACHE", str(tmp_path / "cache"))
    assert frameworks.compile_cache_dir("jax") == str(tmp_path / "cache" / "jax")
    assert (tmp_path / "cache" / "jax").is_dir()


def test_tensorflow_cache_loading_lines_dropped_and_a_real_isa_mismatch_kept():
    """The runtime lines TensorFlow prints when it loads a cached program (registry ``runtime_stderr``): the
    text-proto attempt and, on CPUs with AMX/AVX-512 FP16, XLA comparing its LLVM tuning flags with the host's
    ISA features are dropped; a mismatch of a real ISA feature (a cache moved between machines) is not."""
    import re

    from dpcore.backends import info

    patterns = [re.compile(p) for p in info("tensorflow").runtime_stderr]

    def dropped(line):
        return any(p.search(line) for p in patterns)

    head = "E0000 00:00:1796226312.939164   14077 cpu_aot_loader.cc:220] Loading XLA:CPU AOT result. Target machine "
    tail = (" is not  supported on the host machine. Machine type used for XLA:CPU compilation doesn't match the "
            "machine type for execution. Compile machine features: [+64bit,+avx512f] vs host machine features: [avx2]")
    assert dropped(head + "feature +prefer-no-scatter" + tail) and dropped(head + "feature +prefer-no-gather" + tail)
    assert not dropped(head + "feature +avx512f" + tail)
    assert dropped("E0000 00:00:1764590000.1 123 text_format.cc:399] Error parsing text-format "
                   "tensorflow.XlaSerializedCacheEntry: 1:1: Invalid control characters encountered in text.")
