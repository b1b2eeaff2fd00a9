"""The process heap policy (backends/heap.py): when it applies, and that freed large blocks are reused."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dpcore.backends import heap

CLEAN = {k: v for k, v in os.environ.items()
         if k not in heap.USER_VARIABLES + (heap.ENV, "GLIBC_TUNABLES")}
glibc_only = pytest.mark.skipif(heap.glibc_version() is None, reason="the policy is glibc's malloc settings")

# A worker thread mallocs, touches and frees a 200 MB block three times, as XLA's worker does with a step's
# temporary buffer; prints the minor page faults of the last two rounds and the backend's heap setting.
REUSE = r"""
import ctypes, json, resource, threading
from dpcore.backends import get_backend
setting = get_backend("numpy").settings["heap"]
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
SIZE = 200 << 20
faults = []
def work():
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        p = libc.malloc(SIZE)
        ctypes.memset(p, 1, SIZE)
        libc.free(p)
        faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
t = threading.Thread(target=work); t.start(); t.join()
print(json.dumps({"heap": setting, "faults": faults[1:]}))
"""


def _run(code: str, **env) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**CLEAN, **env})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_decide_keeps_the_users_settings():
    assert heap.decide({heap.ENV: "system"}) == f"{heap.ENV}=system"
    assert heap.decide({"MALLOC_ARENA_MAX": "4"}) == "the user's MALLOC_ARENA_MAX"
    assert heap.decide({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}) == "the user's GLIBC_TUNABLES"
    assert heap.decide({"GLIBC_TUNABLES": "glibc.rtld.nns=2"}) in (None, "not glibc")  # not a malloc tunable


def test_an_unknown_choice_is_an_error_naming_the_variable():
    with pytest.raises(ValueError, match=r"DPCORE_HEAP='off': expected 'system'"):
        heap.decide({heap.ENV: "off"})
    assert heap.decide({heap.ENV: "dpcore"}) in (None, "not glibc")


def test_decide_other_c_library(monkeypatch):
    monkeypatch.setattr(heap, "glibc_version", lambda: None)
    assert heap.decide({}) == "not glibc"


@glibc_only
def test_freed_blocks_are_reused_without_page_faults():
    out = _run(REUSE)
    assert out["heap"].startswith("glibc mallopt M_ARENA_MAX=1"), out
    pages = (200 << 20) // 4096
    assert max(out["faults"]) < pages // 100, out  # glibc's default maps and unmaps the block: ~51,000 faults


@glibc_only
def test_opt_out_and_user_settings_are_recorded():
    assert _run(REUSE, **{heap.ENV: "system"})["heap"] == f"system malloc ({heap.ENV}=system)"
    out = _run(REUSE, MALLOC_ARENA_MAX="2")
    assert out["heap"] == "system malloc (the user's MALLOC_ARENA_MAX)"
