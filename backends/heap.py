"""The process heap: large freed blocks stay in the process for the next call (glibc ``malloc``).

Why: a compiled training step or model forward allocates the same large buffers at every call, and glibc
hands out a block above its mmap threshold (128 kB, rising to at most 32 MB), and any block over 64 MB asked
for by a worker thread (whose arena cannot hold it), as a fresh ``mmap`` that it unmaps again at ``free``.
The next call then touches new pages, which the kernel zero-fills one 4 kB page at a time: a JAX water
training step (one 157 MB temporary block, allocated by XLA's worker thread) took 38,000 page faults and
0.13 s of system time per step, 30% of the step; TensorFlow's step 34,000 faults.  With one arena, blocks up to
1 GiB served from the heap and freed memory kept up to 1 GiB, the blocks are reused: no faults after the first
call (benchmarks/README.md, "The heap").

:func:`apply` sets this with ``mallopt`` (through ctypes) when dpcore creates its first backend, before the
framework is imported (a thread takes its arena at its first allocation), unless

* the C library is not glibc (macOS, musl): nothing to do;
* the user set glibc's own malloc settings (any of :data:`USER_VARIABLES`, or ``glibc.malloc`` tunables in
  ``GLIBC_TUNABLES``): theirs are kept;
* ``DPCORE_HEAP=system``: glibc's defaults are kept (``DPCORE_HEAP=dpcore`` or unset: the policy; any other
  value is an error naming the variable).

What it costs: memory the process no longer uses is returned to the system only beyond 1 GiB free at the top
of the heap (peak memory is unchanged; a process's resident size stays nearer its peak).
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # glibc's malloc.h
SETTINGS = (("M_ARENA_MAX", M_ARENA_MAX, 1), ("M_MMAP_THRESHOLD", M_MMAP_THRESHOLD, 1 << 30),
            ("M_TRIM_THRESHOLD", M_TRIM_THRESHOLD, 1 << 30))
USER_VARIABLES = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                  "MALLOC_MMAP_MAX_", "MALLOC_ARENA_TEST")
ENV = "DPCORE_HEAP"

_RESULT: dict | None = None


def glibc_version() -> str | None:
    """``"2.36"`` under glibc, None under another C library."""
    try:
        name = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return None
    return name.split()[-1] if name and name.startswith("glibc") else None


def decide(environ=None) -> str | None:
    """Why the policy is not applied (a sentence), or None when it is."""
    env = os.environ if environ is None else environ
    choice = env.get(ENV, "").strip().lower()
    if choice not in ("", "dpcore", "system"):
        raise ValueError(f"{ENV}={env[ENV]!r}: expected 'system' (glibc's defaults) or 'dpcore' (the default)")
    if choice == "system":
        return f"{ENV}=system"
    user = [k for k in USER_VARIABLES if k in env]
    if "glibc.malloc" in env.get("GLIBC_TUNABLES", ""):
        user.append("GLIBC_TUNABLES")
    if user:
        return f"the user's {', '.join(user)}"
    if glibc_version() is None:
        return "not glibc"
    return None


def apply() -> dict:
    """Apply the policy once per process; returns ``{"heap": description}`` for ``backend.settings``."""
    global _RESULT
    if _RESULT is None:
        why_not = decide()
        if why_not is not None:
            _RESULT = {"heap": f"system malloc ({why_not})"}
        else:
            mallopt = ctypes.CDLL(None).mallopt
            mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
            refused = [name for name, option, value in SETTINGS if mallopt(option, value) != 1]
            done = ", ".join(f"{name}={value}" for name, _, value in SETTINGS if name not in refused)
            _RESULT = {"heap": f"glibc mallopt {done}" + (f" (refused: {', '.join(refused)})" if refused else "")}
    return dict(_RESULT)
