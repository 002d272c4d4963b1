"""Multi-process training (2 processes x 2 CPU devices, gloo) and SIGKILL during a save."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np

from jaxformers.testing import tiny_train_config
from jaxformers.train import train_and_evaluate
from jaxformers.train.checkpoint import checkpoint_dir, latest_step
from jaxformers.train.metrics import read_metrics

WORKER = os.path.join(os.path.dirname(__file__), "worker.py")


def _env():
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    return env


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_match_the_single_process_run(tmp_path):
    port = str(_free_port())
    procs = [
        subprocess.Popen([sys.executable, WORKER, "multiprocess", str(i), port, str(tmp_path / "mp")],
                         env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=400)[0].decode() for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    cfg = tiny_train_config(num_steps=6, checkpoint_every=0, eval_every=0)
    train_and_evaluate(cfg, tmp_path / "single", devices=jax.devices()[:4])
    multi = [r["total_loss"] for r in read_metrics(str(tmp_path / "mp"), "train")]
    single = [r["total_loss"] for r in read_metrics(str(tmp_path / "single"), "train")]
    assert len(multi) == 6
    np.testing.assert_allclose(multi, single, atol=1e-5)


def test_sigkill_during_a_save_resumes_from_the_previous_complete_checkpoint(tmp_path):
    proc = subprocess.run([sys.executable, WORKER, "kill_during_save", "9", str(tmp_path)],
                          env=_env(), capture_output=True, timeout=400)
    assert proc.returncode == -9, proc.stderr.decode()[-3000:]
    leftovers = os.listdir(checkpoint_dir(str(tmp_path)))
    assert any(name.startswith("9.") for name in leftovers), leftovers  # the partial step
    assert latest_step(str(tmp_path)) == 6
    train_and_evaluate(tiny_train_config(num_steps=12, checkpoint_every=3, eval_every=0), tmp_path)
    assert latest_step(str(tmp_path)) == 12
    steps = [r["step"] for r in read_metrics(str(tmp_path), "train")]
    assert steps[-6:] == [7, 8, 9, 10, 11, 12]  # steps 7-9 were redone after the crash


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    proc = subprocess.run([sys.executable, WORKER, "sigterm", "3", str(tmp_path)],
                          env=_env(), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0 and "exited cleanly" in proc.stdout, proc.stderr[-3000:]
    step = latest_step(str(tmp_path))
    assert step is not None and 3 <= step < 1000  # saved at preemption, not at a scheduled step
