"""Importing a framework for dpcore: refused where it would crash the process, quiet where it only talks.

* **Conflicts**: importing Paddle in a process that has imported TensorFlow kills the interpreter with a
  segmentation fault (both bundle protobuf; TensorFlow loads its libraries with ``RTLD_GLOBAL`` and Paddle's
  operator registration then runs on TensorFlow's protobuf symbols).  :func:`load_framework` raises
  :class:`FrameworkConflictError` instead, naming the way around it.  The other order works.
* **Noise**: frameworks print C++ log lines and warnings that say nothing to a user (TensorFlow's
  ``I0000 ... oneDNN custom operations are on``, absl's pre-init notice, CPU-feature notices; Paddle's
  "No ccache found").  Unless the user made a setting of their own (any of the backend's ``quiet_env``
  variables, e.g. ``TF_CPP_MIN_LOG_LEVEL``, is already set) or asked for everything with
  ``DPCORE_FRAMEWORK_LOGS=1``, the backend's ``quiet_env`` defaults are applied, warnings matching
  ``quiet_warnings`` are ignored during the import, and stderr lines of the import matching
  ``quiet_stderr`` are dropped (every other line is passed on); :func:`quiet_calls` does the same for the
  ``runtime_stderr`` lines of a compiled function's calls.

* **Compiler options**: the backend's ``xla_flags`` are added to ``XLA_FLAGS`` before the import, unless the
  user's ``XLA_FLAGS`` already names the option, and only when the framework's XLA library names it (an
  unknown option in ``XLA_FLAGS`` aborts the process).  An option dpcore added for one framework is taken
  out again before importing a framework whose XLA does not know it.
* **Compiled-program cache**: jax and TensorFlow keep the programs they compile in a cache directory
  (:func:`compile_cache_dir`: ``$DPCORE_COMPILE_CACHE/<backend>``, by default
  ``$XDG_CACHE_HOME/dpcore/<backend>`` or ``~/.cache/dpcore/<backend>``; ``DPCORE_COMPILE_CACHE=off`` turns it
  off), so a later run compiles its training step and model forward in seconds instead of tens of seconds.
  A cache the user configured for the framework (``JAX_COMPILATION_CACHE_DIR``, TensorFlow's
  ``--tf_xla_persistent_cache_directory``) is left as it is.

What conflicts, what is noise and which compiler options are used is data in :mod:`dpcore.backends.registry`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import re
import sys
import tempfile
import threading
import warnings

from .registry import info


class FrameworkConflictError(RuntimeError):
    """The framework cannot be imported in this process without crashing it."""


def load_framework(name: str):
    """Import and return the framework module of backend ``name`` (see the module docstring)."""
    entry = info(name)
    module = sys.modules.get(entry.framework)
    if module is not None:
        return module
    for other, reason in entry.unsafe_after:
        if other in sys.modules:
            raise FrameworkConflictError(
                f"backend {entry.name!r}: {entry.framework} cannot be imported in a process that has already "
                f"imported {other} ({reason}). Use {entry.name} in another Python process (e.g. a separate "
                f"script, or a multiprocessing worker started with the 'spawn' method), or import "
                f"{entry.framework} before {other}")
    _set_xla_flags(entry)
    _set_compile_cache(entry)
    if not _quiet(entry):
        return importlib.import_module(entry.framework)
    _QUIETED.add(entry.name)
    for key, value in entry.quiet_env.items():
        os.environ.setdefault(key, value)
    with warnings.catch_warnings(), _filtered_stderr(entry.quiet_stderr):
        for message in entry.quiet_warnings:
            warnings.filterwarnings("ignore", message=message)
        return importlib.import_module(entry.framework)


_ADDED_XLA_FLAGS: set = set()  # options dpcore put into XLA_FLAGS in this process


def _set_xla_flags(entry) -> None:
    if not entry.xla_library:
        return
    flags = os.environ.get("XLA_FLAGS", "").split()
    for option in [f for f in flags if f in _ADDED_XLA_FLAGS and not _knows(entry.xla_library, f)]:
        flags.remove(option)  # another framework's XLA knew it, this one would abort on it
    for option in entry.xla_flags:
        if not _names(flags, option) and _knows(entry.xla_library, option):
            flags.append(option)
            _ADDED_XLA_FLAGS.add(option)
    if flags or "XLA_FLAGS" in os.environ:
        os.environ["XLA_FLAGS"] = " ".join(flags)


def compile_cache_dir(backend: str) -> str | None:
    """dpcore's directory of compiled programs for ``backend`` (created), or None when turned off
    (``DPCORE_COMPILE_CACHE`` = ``off``/``0``/``false``/``no``/empty) or not writable."""
    root = os.environ.get("DPCORE_COMPILE_CACHE")
    if root is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "dpcore")
    elif root.strip().lower() in ("", "0", "off", "false", "no"):
        return None
    path = os.path.join(os.path.expanduser(root), backend)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    return path if os.access(path, os.W_OK) else None


def _compile_cache_mark(entry) -> str:
    """The variable holding the directory dpcore put into ``entry``'s cache settings of this environment (a
    child process inherits them: they are dpcore's, not the user's)."""
    return f"DPCORE_COMPILE_CACHE_SET_{entry.name.upper()}"


def _unset_compile_cache(entry, path: str) -> None:
    """Remove the cache settings dpcore made with directory ``path`` (values changed since are the user's)."""
    for key, template in entry.compile_cache.items():
        value = template.replace("{dir}", path)
        if not value.startswith("--"):
            if os.environ.get(key) == value:
                del os.environ[key]
        elif key in os.environ:
            kept = [o for o in os.environ[key].split() if o != value]
            if kept:
                os.environ[key] = " ".join(kept)
            else:
                del os.environ[key]


def _set_compile_cache(entry) -> None:
    if not entry.compile_cache:
        return
    inherited = os.environ.pop(_compile_cache_mark(entry), None)
    if inherited is not None:  # set by dpcore in a parent process (or earlier here): decided again below
        _unset_compile_cache(entry, inherited)
    # the user's own cache directory wins; their other cache settings (e.g. a size) are kept beside dpcore's
    user_set = [k for k, v in entry.compile_cache.items() if "{dir}" in v
                and ((k in os.environ and not v.startswith("--")) or _names(os.environ.get(k, "").split(), v))]
    path = None if user_set else compile_cache_dir(entry.name)
    if path is None:
        return
    for key, template in entry.compile_cache.items():
        value = template.replace("{dir}", path)
        if not value.startswith("--"):
            os.environ.setdefault(key, value)
        elif _knows(entry.xla_library, value):
            os.environ[key] = " ".join(os.environ.get(key, "").split() + [value])
    os.environ[_compile_cache_mark(entry)] = path


def _names(options: list, option: str) -> bool:
    """Whether ``options`` (``--name=value`` strings) set the option of ``option``."""
    name = option.split("=", 1)[0]
    return any(o.split("=", 1)[0] == name for o in options)


def _knows(libraries: tuple, option: str) -> bool:
    """Whether one of the shared ``libraries`` (relative to site-packages) contains the option's name, so that
    the framework parses it."""
    return _library_names(tuple(libraries), option.lstrip("-").split("=", 1)[0].encode())


@functools.lru_cache(maxsize=None)
def _library_names(libraries: tuple, name: bytes) -> bool:
    """A memory-mapped search (20-100 ms), once per (libraries, name) and process."""
    import importlib.util
    import mmap

    for library in libraries:
        top, rel = library.split("/", 1)
        spec = importlib.util.find_spec(top)
        if spec is None or not spec.submodule_search_locations:
            continue
        try:
            with open(os.path.join(list(spec.submodule_search_locations)[0], rel), "rb") as f, \
                    mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                if m.find(name) >= 0:
                    return True
        except (OSError, ValueError):
            continue
    return False


_QUIETED: set = set()  # backends whose framework was imported quiet


def quiet_calls(name: str, fn):
    """``fn`` whose calls drop the stderr lines of backend ``name``'s ``runtime_stderr`` (messages its framework
    prints while running, e.g. TensorFlow reading its compile cache), when its import was made quiet."""
    patterns = info(name).runtime_stderr
    if not patterns or name not in _QUIETED:
        return fn

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with _filtered_stderr(patterns):
            return fn(*args, **kwargs)

    return call


def _quiet(entry) -> bool:
    if os.environ.get("DPCORE_FRAMEWORK_LOGS", "0").lower() in ("1", "true", "yes"):
        return False
    return not any(key in os.environ for key in entry.quiet_env)


_capture_lock = threading.Lock()
_capture: dict | None = None  # the active capture of file descriptor 2: saved fd, temporary file, depth, patterns


@contextlib.contextmanager
def _filtered_stderr(patterns):
    """Capture what is written to file descriptor 2 (C++ and Python) and pass on the lines that match none of
    ``patterns``, also when the body raises.  Threads share one capture (the descriptor is the process's; a
    training step compiling in the background overlaps the loop's own calls): its lines are passed on when the
    last of them leaves, filtered by the patterns of all of them."""
    if not patterns:
        yield
        return
    _capture_enter(tuple(patterns))
    try:
        yield
    finally:
        _capture_leave()


def _capture_enter(patterns) -> None:
    global _capture
    with _capture_lock:
        if _capture is None:
            sys.stderr.flush()
            saved, tmp = os.dup(2), tempfile.TemporaryFile()
            os.dup2(tmp.fileno(), 2)
            _capture = {"saved": saved, "tmp": tmp, "depth": 0, "patterns": set()}
        _capture["depth"] += 1
        _capture["patterns"].update(patterns)


def _capture_leave() -> None:
    global _capture
    with _capture_lock:
        _capture["depth"] -= 1
        if _capture["depth"] > 0:
            return
        state, _capture = _capture, None
        sys.stderr.flush()
        os.dup2(state["saved"], 2)
        os.close(state["saved"])
        with state["tmp"] as tmp:
            tmp.seek(0)
            lines = tmp.read().decode("utf-8", errors="replace").splitlines()
        keep = [line for line in lines if not any(re.search(p, line) for p in state["patterns"])]
        if keep:
            sys.stderr.write("\n".join(keep) + "\n")
            sys.stderr.flush()
