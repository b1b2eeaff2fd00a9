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
  ``quiet_stderr`` are dropped (every other line is passed on).

What conflicts and what is noise is data in :mod:`dpcore.backends.registry`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import tempfile
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
    if not _quiet(entry):
        return importlib.import_module(entry.framework)
    for key, value in entry.quiet_env.items():
        os.environ.setdefault(key, value)
    with warnings.catch_warnings(), _filtered_stderr(entry.quiet_stderr):
        for message in entry.quiet_warnings:
            warnings.filterwarnings("ignore", message=message)
        return importlib.import_module(entry.framework)


def _quiet(entry) -> bool:
    if os.environ.get("DPCORE_FRAMEWORK_LOGS", "0").lower() in ("1", "true", "yes"):
        return False
    return not any(key in os.environ for key in entry.quiet_env)


@contextlib.contextmanager
def _filtered_stderr(patterns):
    """Capture what is written to file descriptor 2 (C++ and Python) and pass on the lines that match none of
    ``patterns``, also when the body raises."""
    if not patterns:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines = tmp.read().decode("utf-8", errors="replace").splitlines()
            keep = [line for line in lines if not any(re.search(p, line) for p in patterns)]
            if keep:
                sys.stderr.write("\n".join(keep) + "\n")
                sys.stderr.flush()
