"""What dpcore knows about each backend without importing its framework: the one table of backend data.

Everything backend-specific that code outside the adapters needs is an entry here, read through
:func:`info` (``dpcore.backends.info("tensorflow").capabilities``): which package and pip extra provide
the framework, the capabilities table (documented restrictions such as ``use_default_pf`` on TensorFlow
and Paddle, generated into docs/backends.md), whether model forwards are compiled, and the options the
training loop passes to ``backend.jit``.  The adapter classes read their ``capabilities`` from here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BackendInfo:
    """Static facts of one backend.

    capabilities: ``autodiff`` (value_and_grad), ``jit`` (a real compiler behind ``backend.jit``),
        ``use_default_pf`` (the loss option is supported), ``float32``/``float64``, ``devices``,
        ``mixed_precision`` (device types with bfloat16 matrix products, for ``training.mixed_precision``);
    jit_forward: model forwards (energy and spin, :meth:`Backend.compiled`) are compiled with ``backend.jit``,
        once per model, type blocks and input shapes (jax: eager JAX was measured ~40x slower per call;
        TensorFlow: a graph runs the water frame 2x faster than eager and is traced in 1-2 s without AutoGraph;
        a shape-generic trace, ``reduce_retracing``, is not possible: the core reads sizes from ``x.shape``);
    forward_jit: extra ``backend.jit`` arguments of the model forwards (TensorFlow: XLA, ``jit_compile``: the
        water frame in 66 ms against 82 ms as a plain graph, compressed 54 against 85 ms, 1 thread; the first
        call takes as long, ~4.3 s, tracing included);
    kernel_forward_jit: the ``backend.jit`` arguments instead of ``forward_jit`` for the forward of a compressed model
        whose tables run the fused host kernel (:mod:`dpcore.backends.table_kernel`, registered where Numba is
        installed; TensorFlow: a plain graph, since XLA cannot call it, whose other operations XLA compiles in
        clusters, ``xla_around_host_calls``: water 25-26 ms, against 29-30 ms as a plain graph and 55 ms as one XLA
        function without the kernel);
    xla_forward: the compiled model forwards are XLA programs, which fuse the coefficient gathers and Horner terms
        of a compressed model's tables: only there do the tables share inputs (:mod:`dpcore.pair_share`; measured
        on the water frame: jax 1.33x faster, TensorFlow's graph forwards 0.91x, the eager backends 0.65-0.79x);
    step_jit: extra ``backend.jit`` arguments of the training and validation steps (TensorFlow with XLA,
        ``jit_compile``: 0.17 s/step against 0.29 s in graph mode on the water example, 2 cores);
    update_jit: extra arguments of the training step only (jax donates the replaced parameter and Adam
        buffers so XLA can reuse them);
    quick_compile / quick_steps: compiler options of a quick first compile of the training and validation steps,
        whose programs run the first ``quick_steps`` steps while the optimized ones compile beside them
        (:mod:`dpcore.train.tiers`; jax: XLA's optimization level 0 compiles the water step in ~1.5 s against
        ~7 s, and runs it ~1.6x slower; TensorFlow: ``eager``, the step's Python function run op by op, nothing
        traced or compiled: the water step's first call ~0.8 s against ~3 s as a graph and ~11 s with XLA, then
        ~0.6 s/step against 0.21 and 0.15: fewer quick steps);
    unsafe_after: ``(framework, reason)`` pairs: importing this framework after that one crashes the process
        (:func:`dpcore.backends.frameworks.load_framework` refuses with a clear error);
    quiet_env / quiet_warnings / quiet_stderr: environment defaults, warning messages and stderr lines (regex)
        of the framework's import that say nothing to a user (silenced unless the user set any quiet_env key
        or ``DPCORE_FRAMEWORK_LOGS=1``); ``runtime_stderr``: the same for lines printed while compiled functions
        run (:func:`dpcore.backends.frameworks.quiet_calls`);
    xla_flags: XLA compiler options (``--name=value``) added to ``XLA_FLAGS`` before the framework is imported,
        unless the user's ``XLA_FLAGS`` names the option or the framework's XLA does not know it
        (:func:`dpcore.backends.frameworks.load_framework`); ``xla_library``: that framework's shared libraries,
        relative to site-packages, which name every option it knows (XLA aborts the process on an
        unknown one).  ``--xla_cpu_use_fusion_emitters=false``: XLA's older CPU fusion code generator compiles
        the water training step 2-3x faster (jax 20 -> 7-9 s, TensorFlow 26 -> 17 s at load 3) with the same
        step time (benchmarks/README.md, "Compilation"); ``--xla_cpu_experimental_ynn_fusion_type=individual_dot``:
        YNNPACK (XLA's CPU kernel library) takes single dots only, not the elementwise and reduce fusions it is
        given by default, whose float32 kernels made the float32 water training step 1.25x slower on jax
        (0.087 -> 0.070 s/step, 2 threads; float64 steps and inference unchanged; benchmarks/README.md);
    compile_cache: environment settings of the framework's persistent cache of compiled programs, ``{dir}``
        standing for dpcore's cache directory of this backend (:func:`dpcore.backends.frameworks.compile_cache_dir`):
        a plain value is set when the variable is unset, a ``--name=value`` option is appended to the variable's
        option list when it does not name the option yet and ``xla_library`` names it.  A later run with the
        same program loads it instead of compiling (jax's water training step 15 -> 5 s, TensorFlow's
        31 -> 9 s at load 4);
    data_parallel: how ``dpcore train`` runs data-parallel on this backend (docs/distributed.md), by kind:
        ``"processes"`` (one process per worker under a launcher such as torchrun: ``collective`` the
        framework call that sums the gradients, ``transport`` the process-group backend per device type)
        and/or ``"devices"`` (several devices of one process, ``--local-devices N``: ``collective``);
        empty: the backend trains in one process on one device only.
    """

    name: str
    framework: str
    extra: str | None
    display_name: str
    capabilities: dict
    jit_forward: bool = False
    forward_jit: dict = field(default_factory=dict)
    kernel_forward_jit: dict | None = None
    xla_forward: bool = False
    step_jit: dict = field(default_factory=dict)
    update_jit: dict = field(default_factory=dict)
    quick_compile: dict = field(default_factory=dict)
    quick_steps: int = 0
    unsafe_after: tuple = ()
    quiet_env: dict = field(default_factory=dict)
    quiet_warnings: tuple = ()
    quiet_stderr: tuple = ()
    runtime_stderr: tuple = ()
    xla_flags: tuple = ()
    xla_library: tuple = ()
    compile_cache: dict = field(default_factory=dict)
    data_parallel: dict = field(default_factory=dict)

    @property
    def can_train(self) -> bool:
        return bool(self.capabilities["autodiff"])


def _caps(autodiff: bool, jit: bool, use_default_pf: bool, devices: list, mixed_precision: list | None = None) -> dict:
    return {"autodiff": autodiff, "jit": jit, "use_default_pf": use_default_pf, "devices": devices,
            "float32": True, "float64": True,
            "mixed_precision": list(devices if mixed_precision is None else mixed_precision) if autodiff else []}


_XLA_CPU = ("--xla_cpu_use_fusion_emitters=false", "--xla_cpu_experimental_ynn_fusion_type=individual_dot")

BACKENDS = {
    "numpy": BackendInfo("numpy", "numpy", None, "NumPy", _caps(False, False, True, ["cpu"])),
    "array_api_strict": BackendInfo("array_api_strict", "array_api_strict", "strict", "array-api-strict",
                                    _caps(False, False, True, ["CPU_DEVICE", "device1", "device2"])),
    "torch": BackendInfo("torch", "torch", "torch", "PyTorch", _caps(True, False, True, ["cpu", "cuda"]),
                         data_parallel={"processes": {"collective": "torch.distributed.all_reduce",
                                                      "transport": {"cpu": "gloo", "cuda": "nccl"}}}),
    "jax": BackendInfo("jax", "jax", "jax", "JAX", _caps(True, True, True, ["cpu", "gpu", "tpu"]),
                       jit_forward=True, xla_forward=True, update_jit={"donate_argnums": (0, 1)},
                       quick_compile={"xla_backend_optimization_level": 0}, quick_steps=20,
                       xla_flags=_XLA_CPU, xla_library=("jaxlib/libjax_common.so",),
                       compile_cache={"JAX_COMPILATION_CACHE_DIR": "{dir}",
                                      "JAX_COMPILATION_CACHE_MAX_SIZE": str(2 ** 31)},  # bytes, least recent evicted
                       data_parallel={"processes": {"collective": "jax.distributed, XLA all-reduce",
                                                    "transport": {"cpu": "gloo", "gpu": "nccl"}},
                                      "devices": {"collective": "jax.sharding, XLA all-reduce"}}),
    "tensorflow": BackendInfo(
        "tensorflow", "tensorflow", "tensorflow", "TensorFlow", _caps(True, True, False, ["cpu", "gpu"]),
        jit_forward=True, forward_jit={"jit_compile": True}, kernel_forward_jit={"xla_around_host_calls": True},
        xla_forward=True,
        step_jit={"jit_compile": True},
        quick_compile={"eager": True}, quick_steps=15,
        xla_flags=_XLA_CPU, xla_library=("tensorflow/libtensorflow_framework.so.2",
                                                 "tensorflow/libtensorflow_cc.so.2"),
        compile_cache={"TF_XLA_FLAGS": "--tf_xla_persistent_cache_directory={dir}"},
        quiet_env={"TF_CPP_MIN_LOG_LEVEL": "2"},  # C++ INFO and WARNING lines (XLA service, oneDNN notices)
        quiet_stderr=(r"^WARNING: All log messages before absl::InitializeLog\(\) is called",
                      r"^[IW]\d{4} [\d:. ]+\d+ [\w.]+\.cc:\d+\]",  # absl-format INFO/WARNING lines before init
                      r"^To enable the following instructions: .* rebuild TensorFlow"),
        # reading an entry of its compile cache, TensorFlow first tries it as a text proto and logs the failure
        # before reading it as the binary proto it is (every run that finds its step in the cache)
        runtime_stderr=(r"^WARNING: All log messages before absl::InitializeLog\(\) is called",
                        r"^E\d{4} [\d:. ]+\d+ text_format\.cc:\d+\] Error parsing text-format "
                        r"tensorflow\.XlaSerializedCacheEntry",
                        # loading an entry on a CPU with AMX/AVX-512 FP16 (Sapphire Rapids), XLA compares the LLVM
                        # tuning flags +prefer-no-scatter/-gather of its compile with the host's ISA features, which
                        # never list them; a real ISA mismatch names another feature and is still shown
                        r"^E\d{4} [\d:. ]+\d+ cpu_aot_loader\.cc:\d+\] Loading XLA:CPU AOT result\. Target machine "
                        r"feature \+prefer-no-(scatter|gather) is not +supported on the host machine")),
    "paddle": BackendInfo(
        "paddle", "paddle", "paddle", "Paddle", _caps(True, False, False, ["cpu", "gpu"], mixed_precision=["gpu"]),
        unsafe_after=(("tensorflow", "their bundled protobuf libraries clash: the interpreter is killed by a "
                                     "segmentation fault"),),
        quiet_warnings=("No ccache found",)),
}
DEFAULT_TRAIN_BACKEND = "torch"  # of `dpcore train` without --backend
ALIASES = {"np": "numpy", "strict": "array_api_strict", "pytorch": "torch", "pt": "torch", "tf": "tensorflow",
           "pd": "paddle"}


def canonical_name(name: str) -> str:
    """``"pt"`` -> ``"torch"``; ValueError naming the known backends for an unknown name."""
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {sorted(BACKENDS)}")
    return key


def info(name: str) -> BackendInfo:
    """The static facts of backend ``name`` (canonical name or alias); imports no framework."""
    return BACKENDS[canonical_name(name)]


def data_parallel_backends(kind: str | None = None) -> tuple[str, ...]:
    """Backends that train data-parallel (``kind``: ``"processes"`` or ``"devices"``; None: either)."""
    return tuple(name for name, b in BACKENDS.items() if (b.data_parallel if kind is None else kind in b.data_parallel))


def training_backends() -> tuple[str, ...]:
    """Backends with automatic differentiation, which ``dpcore train`` can use."""
    return tuple(name for name, b in BACKENDS.items() if b.can_train)
