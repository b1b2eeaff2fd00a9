"""Data-parallel training (docs/distributed.md): N workers with batch_size b train exactly as one process with
N x b frames.  Two torch processes under torchrun (gloo, localhost), two JAX processes under
``python -m dpcore.train.launch`` (jax.distributed, gloo, localhost) and two JAX host devices in one process
(XLA_FLAGS) against one process: lcurve.out byte-identical, parameters and Adam moments within the float64
tolerance; restarts from the middle checkpoint with 2 ranks and with 1 process, and of killed 2-process runs;
scale_by_worker; the launcher; the refusal of TensorFlow and Paddle under a launcher.  Frameworks run in
subprocesses only (this process imports none)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dpcore.train import checkpoint as ck
from helpers import TOL
from helpers.data import write_system
from helpers.train import make_case, max_rel_diff

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_JAX = importlib.util.find_spec("jax") is not None
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
for _k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "XLA_FLAGS", "JAX_NUM_PROCESSES",
           "JAX_PROCESS_ID", "JAX_COORDINATOR_ADDRESS", "SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
    ENV.pop(_k, None)
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "dpcore"]
DPCORE = [sys.executable, "-m", "dpcore"]
LAUNCH = [sys.executable, "-m", "dpcore.train.launch", "--nproc-per-node", "2"] + DPCORE


def _run(cmd, cwd, env=None, ok=True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


def _write_input(folder: Path, cfg: dict, batch_size: int, **lr) -> Path:
    cfg = json.loads(json.dumps(cfg))
    cfg["training"]["training_data"]["batch_size"] = batch_size
    cfg["training"]["validation_data"]["batch_size"] = batch_size
    cfg["learning_rate"].update(lr)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "input.json").write_text(json.dumps(cfg))
    return folder


def _same_run(a: Path, b: Path, step: int) -> None:
    """lcurve.out byte-identical; parameters and Adam moments of the step's checkpoint within float64 tolerance."""
    assert (a / "lcurve.out").read_text() == (b / "lcurve.out").read_text()
    x, y = ck.load_checkpoint(a / f"model.ckpt-{step}.npz"), ck.load_checkpoint(b / f"model.ckpt-{step}.npz")
    assert max_rel_diff(y["params"], x["params"]) <= TOL["float64"]
    for k in ("m", "v"):
        assert max_rel_diff(y["optimizer"][k], x["optimizer"][k]) <= TOL["float64"]
    assert y["sampler"]["train"]["pos"] == x["sampler"]["train"]["pos"]


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict:
    """The tiny training case with 5 frames per system, so that the last batch of a pass (1 frame) leaves one
    of two workers without frames; gradient clipping and disp_avg on; the single-process reference with
    batch_size 2 (torch), 8 steps, checkpoints at 4 and 8."""
    root = tmp_path_factory.mktemp("dp")
    cfg = make_case(root / "data", nframes=5, sel=[24, 24])
    cfg["training"].update(disp_avg=True, gradient_max_norm=5.0)
    ref = _write_input(root / "ref", cfg, 2, scale_by_worker="none")
    if HAS_TORCH:
        _run(DPCORE + ["train", "input.json", "--backend", "torch"], ref)
    return {"root": root, "cfg": cfg, "ref": ref}


# -- host side: the global batch and its slices ---------------------------------------------------------------
def test_shards_are_slices_of_the_global_batch(tmp_path):
    """Every worker draws the same global batch and loads its contiguous slice; find_* flags are the whole
    batch's (here frame 0 of a set with energies and frame 1 of a set without); the sampler state does not
    depend on the worker."""
    from dpcore.data import BatchSampler, load_systems
    from dpcore.data.sampling import shard_bounds

    assert [shard_bounds(5, r, 2) for r in range(2)] == [(0, 3), (3, 5)]
    assert [shard_bounds(1, r, 2) for r in range(2)] == [(0, 1), (1, 1)]
    assert [shard_bounds(7, r, 3) for r in range(3)] == [(0, 3), (3, 5), (5, 7)]
    write_system(tmp_path / "s", nframes=(1, 4), labels=("energy", "force"), seed=1)
    (tmp_path / "s" / "set.001" / "energy.npy").unlink()
    systems = load_systems([str(tmp_path / "s")], type_map=["H", "O"])
    one = BatchSampler(systems, batch_size=2, seed=5)
    workers = [BatchSampler(systems, batch_size=1, seed=5, batch_scale=2) for _ in range(2)]
    assert workers[0].batch_sizes == one.batch_sizes == [2]
    for _ in range(6):
        whole = one.next_batch()
        parts = [w.next_shard(r, 2) for r, w in enumerate(workers)]
        assert all(nf == whole["coord"].shape[0] for _, nf in parts)
        loaded = [b for b, _ in parts if b is not None]
        np.testing.assert_array_equal(np.concatenate([b["coord"] for b in loaded]), whole["coord"])
        for b in loaded:
            assert {k: v for k, v in b.items() if k.startswith("find_")} == \
                   {k: v for k, v in whole.items() if k.startswith("find_")}
    assert workers[0].get_state() == workers[1].get_state() == one.get_state()


def test_scale_by_worker_and_the_plan():
    """learning_rate.scale_by_worker (DeePMD-kit's rule on the learning rate given to Adam), the launcher
    variables, and which backends may run data-parallel (the registry's data, no framework imported)."""
    from dpcore.train.distributed import launcher_env, lr_scale, plan_data_parallel

    assert lr_scale("linear", 4) == 4.0 and lr_scale("sqrt", 4) == 2.0 and lr_scale("none", 4) == 1.0
    assert lr_scale("linear", 1) == 1.0 and lr_scale("cubic", 1) == 1.0
    with pytest.raises(ValueError, match="scale_by_worker"):
        lr_scale("cubic", 2)
    assert launcher_env({}) is None and launcher_env({"WORLD_SIZE": "1", "RANK": "0"}) is None
    assert launcher_env({"WORLD_SIZE": "4", "RANK": "3"})[1:] == (3, 4)
    assert launcher_env({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1"})[1:] == (1, 2)
    assert launcher_env({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"})[1:] == (1, 2)
    assert launcher_env({"SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "5", "SLURM_NTASKS": "8"})[1:] == (5, 8)
    assert launcher_env({"SLURM_NTASKS": "8", "SLURM_JOB_ID": "1"}) is None  # a batch script, not an srun task
    assert plan_data_parallel("jax", None, {"JAX_NUM_PROCESSES": "2"})["kind"] == "processes"
    assert plan_data_parallel("torch", None, {}) is None and plan_data_parallel("jax", 1, {}) is None
    assert plan_data_parallel("pt", None, {"WORLD_SIZE": "2"})["kind"] == "processes"
    assert plan_data_parallel("jax", 2, {}) == {"kind": "devices", "n": 2}
    with pytest.raises(NotImplementedError, match="PyTorch backend cannot train data-parallel over the devices"):
        plan_data_parallel("torch", 2, {})
    with pytest.raises(ValueError, match="cannot be combined"):
        plan_data_parallel("torch", 2, {"WORLD_SIZE": "2"})


@pytest.mark.parametrize("backend, display", [("tensorflow", "TensorFlow"), ("paddle", "Paddle")])
def test_tensorflow_and_paddle_refuse_under_a_launcher(tmp_path, backend, display):
    """Under torchrun's environment (WORLD_SIZE=2) TensorFlow and Paddle stop before importing their framework
    with an error naming the backends that can run data-parallel."""
    _write_input(tmp_path, make_case(tmp_path / "data", nframes=2, sel=[24, 24]), 1)
    env = {**ENV, "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}
    proc = _run(DPCORE + ["train", "input.json", "--backend", backend], tmp_path, env=env, ok=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    msg = proc.stderr
    assert f"the {display} backend cannot train data-parallel across processes" in msg
    assert "WORLD_SIZE=2" in msg and "torch (torch.distributed.all_reduce)" in msg and "jax (" in msg
    assert not (tmp_path / "lcurve.out").exists()


# -- torch: two processes under torchrun ----------------------------------------------------------------------
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_torchrun_two_ranks_equal_one_process_and_restart(case):
    """2 ranks x batch_size 1 == 1 process x batch_size 2 (lcurve.out byte-identical, parameters to 1e-12);
    then the run is continued from its middle checkpoint (in copies of the folder, as after a kill) with 2
    ranks and with 1 process of batch_size 2: the same lcurve.out and final parameters."""
    root, ref = case["root"], case["ref"]
    dp = _write_input(root / "dp", case["cfg"], 1, scale_by_worker="none")
    proc = _run(TORCHRUN + ["train", "input.json", "--backend", "torch"], dp)
    assert "[rank 1] INFO" not in proc.stderr and "[rank 0] INFO data-parallel over 2 processes" in proc.stderr
    _same_run(ref, dp, 8)
    state = ck.load_checkpoint(dp)
    assert state["data_parallel"] == {"kind": "processes", "workers": 2, "batch_sizes": [2, 2]}
    assert sorted(p.name for p in dp.iterdir()) == sorted(["checkpoint", "input.json", "lcurve.out", "out.json",
                                                          "model.ckpt-4.npz", "model.ckpt-8.npz"])

    again = root / "dp_restart"
    shutil.copytree(dp, again)
    _run(TORCHRUN + ["train", "input.json", "--backend", "torch", "--restart", "model.ckpt-4.npz"], again)
    _same_run(ref, again, 8)

    single = root / "dp_restart_single"
    shutil.copytree(dp, single)
    _write_input(single, case["cfg"], 2, scale_by_worker="none")
    proc = _run(DPCORE + ["train", "input.json", "--backend", "torch", "--restart", "model.ckpt-4.npz"], single)
    assert "global batches" not in proc.stderr  # 2 x 1 frames before, 1 x 2 now: the same batches
    _same_run(ref, single, 8)


@pytest.fixture(scope="module")
def kill_case(case) -> dict:
    """60 steps, a checkpoint every 10 (2 kept): the input and the uninterrupted torch run with batch_size 2."""
    cfg = dict(case["cfg"], training=dict(case["cfg"]["training"], numb_steps=60, save_freq=10, disp_freq=10,
                                          max_ckpt_keep=2))
    ref = _write_input(case["root"] / "kill_ref", cfg, 2, scale_by_worker="none")
    _run(DPCORE + ["train", "input.json", "--backend", "torch"], ref)
    return {"cfg": cfg, "ref": ref, "root": case["root"]}


def _kill_after_first_checkpoint(cmd, run: Path, env=None) -> int:
    """Start ``cmd`` (a launcher) in ``run``, SIGKILL it and its processes once a checkpoint exists; its step."""
    import signal
    import time

    proc = subprocess.Popen(cmd, cwd=run, env=env or ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (run / "checkpoint").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = ck.load_checkpoint(run)["step"]
    assert killed_at < 60 and not (run / "model.ckpt-60.npz").exists(), "the run ended before it was killed"
    return killed_at


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_torchrun_killed_run_restarts_exactly(kill_case):
    """A 2-rank run killed (SIGKILL to torchrun and its workers) after its first checkpoint restarts from the
    folder (the ``checkpoint`` pointer) and ends as one uninterrupted process with batch_size 2."""
    run = _write_input(kill_case["root"] / "kill_dp", kill_case["cfg"], 1, scale_by_worker="none")
    _kill_after_first_checkpoint(TORCHRUN + ["train", "input.json", "--backend", "torch"], run)
    _run(TORCHRUN + ["train", "input.json", "--backend", "torch", "--restart", "."], run)
    _same_run(kill_case["ref"], run, 60)


# -- jax: two processes under python -m dpcore.train.launch ---------------------------------------------------
@pytest.mark.skipif(not (HAS_JAX and HAS_TORCH), reason="needs jax (and torch for the reference run)")
def test_jax_two_processes_equal_one_process_and_restart_after_a_kill(kill_case):
    """2 JAX processes with batch_size 1 (``python -m dpcore.train.launch``: jax.distributed, gloo on localhost)
    killed (SIGKILL to the launcher and its processes) after their first checkpoint and restarted from the
    folder by the launcher end as one uninterrupted process with batch_size 2 (the torch reference: every
    backend gives the same numbers): lcurve.out byte-identical, its lines before the kill included; parameters
    and Adam moments within the float64 tolerance.  The restart reuses the first run's compilations (JAX's
    persistent cache) to keep the test short."""
    run = _write_input(kill_case["root"] / "kill_jax", kill_case["cfg"], 1, scale_by_worker="none")
    env = {**ENV, "JAX_COMPILATION_CACHE_DIR": str(kill_case["root"] / "jax_cache")}
    _kill_after_first_checkpoint(LAUNCH + ["train", "input.json", "--backend", "jax"], run, env)
    proc = _run(LAUNCH + ["train", "input.json", "--backend", "jax", "--restart", "."], run, env=env)
    assert "[rank 0] INFO data-parallel over 2 processes (python -m dpcore.train.launch" in proc.stderr
    assert "[rank 1] INFO" not in proc.stderr
    _same_run(kill_case["ref"], run, 60)
    assert ck.load_checkpoint(run)["data_parallel"] == {"kind": "processes", "workers": 2, "batch_sizes": [2, 2]}


@pytest.mark.skipif(not HAS_JAX, reason="jax is not installed")
def test_jax_process_without_a_coordinator_is_a_clear_error(tmp_path):
    """Under a launcher that gives a rank and a size but no JAX_COORDINATOR_ADDRESS (torchrun's WORLD_SIZE),
    the JAX backend stops with an error naming the launcher and the missing variable, before writing files."""
    _write_input(tmp_path, make_case(tmp_path / "data", nframes=2, sel=[24, 24]), 1)
    env = {**ENV, "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}
    proc = _run(DPCORE + ["train", "input.json", "--backend", "jax"], tmp_path, env=env, ok=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "started by torchrun / torch.distributed (WORLD_SIZE=2), but the JAX backend could not join" in proc.stderr
    assert "WORLD_SIZE=2 but JAX_COORDINATOR_ADDRESS is not set" in proc.stderr
    assert not (tmp_path / "lcurve.out").exists()


COLLECTIVES = """
import json, sys
import numpy as np
from dpcore.backends import get_backend
from dpcore.train.distributed import launcher_env

be = get_backend("jax")
rank, size, created = be.init_process_group()
tree = {"w": be.asarray(np.array([[1.0, 2.0], [3.0, 4.0]]) * (rank + 1) / 3), "n": be.asarray(np.arange(3) + 10 * rank),
        "f": [be.asarray(np.float32(0.1 * (rank + 1)))]}
total, root1 = be.tree_to_numpy(be.all_reduce_sum(tree)), be.tree_to_numpy(be.broadcast(tree, 1))
out = {"launcher": launcher_env()[0], "rank": rank, "size": size, "created": created, "process": be.settings["process"],
       "sum": [total["w"].tolist(), total["n"].tolist(), float(total["f"][0]), str(total["f"][0].dtype)],
       "root1": [root1["w"].tolist(), root1["n"].tolist(), float(root1["f"][0])]}
be.close_process_group()
json.dump(out, open(f"rank{rank}.json", "w"))
"""


@pytest.mark.skipif(not HAS_JAX, reason="jax is not installed")
def test_jax_collectives_under_srun_variables(tmp_path):
    """Two processes with the variables srun gives its tasks (no launcher of ours): dpcore recognises SLURM,
    jax.distributed finds the coordinator itself; ``all_reduce_sum`` of a tree of float64, int64 and float32
    arrays is the sum to the last bit on both processes, ``broadcast(tree, 1)`` process 1's arrays."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "collectives.py").write_text(COLLECTIVES)
    procs = [subprocess.Popen([sys.executable, "collectives.py"], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                              env={**ENV, "SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "localhost", "SLURM_NTASKS": "2",
                                   "SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r),
                                   "JAX_COORDINATOR_PORT": str(port)}) for r in range(2)]
    errors = [proc.communicate(timeout=300)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errors
    out = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    w = [np.array([[1.0, 2.0], [3.0, 4.0]]) * (r + 1) / 3 for r in range(2)]
    for r, o in enumerate(out):
        assert (o["rank"], o["size"], o["created"], o["process"]) == (r, 2, True, f"{r} of 2")
        assert o["launcher"] == "SLURM (srun) (SLURM_STEP_NUM_TASKS=2)"
        assert o["sum"] == [(w[0] + w[1]).tolist(), [10, 12, 14], float(np.float32(0.1) + np.float32(0.2)), "float32"]
        assert o["root1"] == [w[1].tolist(), [10, 11, 12], float(np.float32(0.2))]


WORKER = """
import os, sys
rank = int(os.environ["JAX_PROCESS_ID"])
with open(f"env{rank}.txt", "w") as f:
    f.write(" ".join(os.environ[k] for k in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "LOCAL_RANK",
                                              "JAX_LOCAL_DEVICE_IDS", "JAX_COORDINATOR_ADDRESS")))
if sys.argv[1] == "fail" and rank == 1:
    sys.exit(3)
if sys.argv[1] == "fail":
    import time
    time.sleep(120)  # stopped by the launcher when its peer fails
"""


def test_launcher_environment_and_failure(tmp_path, capsys):
    """``python -m dpcore.train.launch``: process node_rank x nproc + i gets its id, the size and one coordinator
    address; a failing process stops the others and its status is the launcher's; bad options are errors."""
    from dpcore.train.launch import main, worker_env

    env = worker_env({"A": "1"}, "node0:1234", 2, 1, 4, 3)
    assert env["A"] == "1" and env["JAX_COORDINATOR_ADDRESS"] == "node0:1234"
    assert (env["JAX_NUM_PROCESSES"], env["JAX_PROCESS_ID"], env["LOCAL_RANK"]) == ("8", "7", "3")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    launch = [sys.executable, "-m", "dpcore.train.launch", "--nproc-per-node", "2", "--grace", "5"]
    _run(launch + [sys.executable, script, "ok"], tmp_path)
    seen = [(tmp_path / f"env{r}.txt").read_text().split() for r in range(2)]
    assert [v[:4] for v in seen] == [["2", "0", "0", "0"], ["2", "1", "1", "1"]]
    assert seen[0][4] == seen[1][4] and seen[0][4].startswith("127.0.0.1:")
    proc = _run(launch + ["--", sys.executable, script, "fail"], tmp_path, ok=False)
    assert proc.returncode == 3 and "a process exited with status 3; stopping the others" in proc.stderr
    for argv, msg in ((["--nnodes", "2", "true"], "--coordinator HOST:PORT is required"),
                      (["--nnodes", "2", "--node-rank", "2", "--coordinator", "a:1", "true"], "--node-rank must be"),
                      (["--coordinator", "a", "true"], "must be HOST:PORT"), ([], "no command given")):
        with pytest.raises(SystemExit):
            main(argv)
        assert msg in capsys.readouterr().err


# -- jax: two host devices in one process ---------------------------------------------------------------------
JAX_SCRIPT = """
import json, os, sys
from dpcore.cli import main
from dpcore.train import train
os.chdir(sys.argv[1])  # the CLI run with --local-devices 2
assert main(["train", "input.json", "--backend", "jax", "--local-devices", "2"]) == 0
for folder, devices in ((sys.argv[2], 2), (sys.argv[3], 1)):  # scale_by_worker linear vs doubled learning rate
    train(json.load(open(os.path.join(folder, "input.json"))), "jax", workdir=folder, local_devices=devices)
"""


@pytest.mark.skipif(not (HAS_JAX and HAS_TORCH), reason="needs jax (and torch for the reference run)")
def test_jax_two_devices_equal_one_process(case):
    """``--local-devices 2`` with XLA's two host devices and batch_size 1 == one process with batch_size 2
    (the torch reference: every backend gives the same numbers); with scale_by_worker "linear" the Adam
    learning rate doubles, which is one device with start_lr and stop_lr doubled (prefactors unchanged).
    One Python process for the three runs (jax's start-up and compilations dominate the time)."""
    root = case["root"]
    dev = _write_input(root / "jax2", case["cfg"], 1, scale_by_worker="none")
    cfg = dict(case["cfg"], training=dict(case["cfg"]["training"], numb_steps=2, save_freq=2, max_ckpt_keep=1))
    lin = _write_input(root / "jax2_linear", cfg, 1, scale_by_worker="linear")
    lr = cfg["learning_rate"]
    one = _write_input(root / "jax1_double_lr", cfg, 2, scale_by_worker="linear", start_lr=2 * lr["start_lr"],
                       stop_lr=2 * lr["stop_lr"])
    script = root / "jax_runs.py"
    script.write_text(JAX_SCRIPT)
    proc = _run([sys.executable, script, dev, lin, one], root,
                env={**ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert "data-parallel over 2 local devices" in proc.stderr
    _same_run(case["ref"], dev, 8)
    assert ck.load_checkpoint(dev)["data_parallel"]["kind"] == "devices"
    assert np.loadtxt(lin / "lcurve.out")[0, -1] == pytest.approx(2 * lr["start_lr"])
    _same_run(one, lin, 2)
