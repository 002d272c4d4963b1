"""Multi-process training (2 processes x 2 CPU devices, gloo) and SIGKILL during a save."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

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


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    """Every worker of this module, started at once: they spend most of their time compiling on one
    core each, and none depends on another. {name: (Popen, workdir)}."""
    root = tmp_path_factory.mktemp("workers")
    port = str(_free_port())
    commands = {
        "multiprocess_0": ("multiprocess", "0", port, str(root / "mp")),
        "multiprocess_1": ("multiprocess", "1", port, str(root / "mp")),
        "kill_during_save": ("kill_during_save", "9", str(root / "killed")),
        "sigterm": ("sigterm", "3", str(root / "preempted")),
    }
    started = {
        name: (
            subprocess.Popen(
                [sys.executable, WORKER, *args],
                env=_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
            args[-1],
        )
        for name, args in commands.items()
    }
    yield started
    for proc, _ in started.values():
        if proc.poll() is None:
            proc.kill()


def _finish(workers, name):
    """(output, return code, workdir) of a worker, once it has exited."""
    proc, workdir = workers[name]
    return proc.communicate(timeout=400)[0], proc.returncode, workdir


def test_two_processes_match_the_single_process_run(workers, tmp_path):
    for name in ("multiprocess_0", "multiprocess_1"):
        output, returncode, mp_workdir = _finish(workers, name)
        assert returncode == 0, output[-3000:]
    cfg = tiny_train_config(num_steps=6, checkpoint_every=0, eval_every=0)
    train_and_evaluate(cfg, tmp_path / "single", devices=jax.devices()[:4])
    multi = [r["total_loss"] for r in read_metrics(mp_workdir, "train")]
    single = [r["total_loss"] for r in read_metrics(str(tmp_path / "single"), "train")]
    assert len(multi) == 6
    np.testing.assert_allclose(multi, single, atol=1e-5)


def test_sigkill_during_a_save_resumes_from_the_previous_complete_checkpoint(workers):
    output, returncode, workdir = _finish(workers, "kill_during_save")
    assert returncode == -9, output[-3000:]
    leftovers = os.listdir(checkpoint_dir(str(workdir)))
    assert any(name.startswith("9.") for name in leftovers), leftovers  # the partial step
    assert latest_step(str(workdir)) == 6
    config = tiny_train_config(num_steps=12, checkpoint_every=3, eval_every=0)
    train_and_evaluate(config, workdir, devices=jax.devices()[:1])  # the worker's one device
    assert latest_step(str(workdir)) == 12
    steps = [r["step"] for r in read_metrics(str(workdir), "train")]
    assert steps[-6:] == [7, 8, 9, 10, 11, 12]  # steps 7-9 were redone after the crash


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(workers):
    output, returncode, workdir = _finish(workers, "sigterm")
    assert returncode == 0 and "exited cleanly" in output, output[-3000:]
    step = latest_step(str(workdir))
    assert step is not None and 3 <= step < 1000  # saved at preemption, not at a scheduled step
