"""``python -m dpcore.train.launch``: start the worker processes of a data-parallel run on one node, for the
backends that join their processes with ``JAX_COORDINATOR_ADDRESS`` (docs/distributed.md); torch has torchrun.

    python -m dpcore.train.launch --nproc-per-node 2 dpcore train input.json --backend jax
    # several nodes: the same line on each, with its --node-rank; the coordinator runs in process 0 (node 0)
    python -m dpcore.train.launch --nnodes 2 --node-rank K --nproc-per-node 4 --coordinator node001:12321 \\
        dpcore train input.json --backend jax

Process ``node_rank * nproc_per_node + i`` of ``nnodes * nproc_per_node`` gets, on top of the launcher's
environment: ``JAX_COORDINATOR_ADDRESS`` (``--coordinator``; on one node a free port of 127.0.0.1),
``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``, ``LOCAL_RANK`` = i and ``JAX_LOCAL_DEVICE_IDS`` = i (one GPU per
process; no effect on CPU).  The launcher waits for its processes.  When one fails, the others are stopped
(SIGTERM, then SIGKILL after ``--grace`` seconds: they would otherwise wait in a collective); SIGINT and SIGTERM
sent to the launcher are passed on.  Exit status: that of the first process to fail, else 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

__all__ = ["main", "worker_env"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the coordinator binds it a moment later)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def worker_env(environ, coordinator: str, nnodes: int, node_rank: int, nproc: int, local_rank: int) -> dict:
    """The environment of local process ``local_rank`` of node ``node_rank``."""
    return {**environ, "JAX_COORDINATOR_ADDRESS": coordinator, "JAX_NUM_PROCESSES": str(nnodes * nproc),
            "JAX_PROCESS_ID": str(node_rank * nproc + local_rank), "LOCAL_RANK": str(local_rank),
            "LOCAL_WORLD_SIZE": str(nproc), "JAX_LOCAL_DEVICE_IDS": str(local_rank)}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dpcore.train.launch", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nproc-per-node", "--nproc_per_node", type=int, default=1, metavar="N",
                   help="processes (workers) on this node (default 1)")
    p.add_argument("--nnodes", type=int, default=1, metavar="M", help="nodes taking part (default 1)")
    p.add_argument("--node-rank", "--node_rank", type=int, default=0, metavar="K",
                   help="this node's index, 0 .. M-1 (default 0; node 0 runs the coordinator)")
    p.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="address of the coordinator (process 0), reachable from every node; required with "
                        "--nnodes > 1 (default on one node: 127.0.0.1 and a free port)")
    p.add_argument("--grace", type=float, default=10.0, metavar="S",
                   help="seconds between SIGTERM and SIGKILL when stopping the processes (default 10)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the program and its arguments, e.g. dpcore train ...")
    return p


def _check(p, args) -> list:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("no command given (e.g. dpcore train input.json --backend jax)")
    if args.nproc_per_node < 1 or args.nnodes < 1:
        p.error("--nproc-per-node and --nnodes must be >= 1")
    if not 0 <= args.node_rank < args.nnodes:
        p.error(f"--node-rank must be in 0 .. {args.nnodes - 1}, got {args.node_rank}")
    if args.nnodes > 1 and not args.coordinator:
        p.error("--coordinator HOST:PORT is required with --nnodes > 1 (a port of node 0 the others can reach)")
    if args.coordinator and not args.coordinator.rpartition(":")[2].isdigit():
        p.error(f"--coordinator must be HOST:PORT, got {args.coordinator!r}")
    return command


def _stop(procs, grace: float) -> None:
    """SIGTERM to the running processes, SIGKILL to those still running ``grace`` seconds later."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv=None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    command = _check(p, args)
    coordinator = args.coordinator or f"127.0.0.1:{free_port()}"
    procs = []
    try:
        for i in range(args.nproc_per_node):
            env = worker_env(os.environ, coordinator, args.nnodes, args.node_rank, args.nproc_per_node, i)
            procs.append(subprocess.Popen(command, env=env))
    except OSError as e:
        _stop(procs, args.grace)
        print(f"dpcore.train.launch: error: cannot start {command[0]!r}: {e}", file=sys.stderr)
        return 2

    def forward(signum, _frame):
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            codes = [proc.poll() for proc in procs]
            failed = [c for c in codes if c not in (None, 0)]
            if failed:
                print(f"dpcore.train.launch: a process exited with status {failed[0]}; stopping the others",
                      file=sys.stderr)
                _stop(procs, args.grace)
                return failed[0] if failed[0] > 0 else 128 - failed[0]
            if all(c == 0 for c in codes):
                return 0
            time.sleep(0.1)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


if __name__ == "__main__":
    sys.exit(main())
