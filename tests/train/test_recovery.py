"""Recovery from the command line: a damaged newest checkpoint, a changed config on resume, a busy
workdir, an unknown config key. The command-line cases run launch/train.py in their own process and
check the last stderr line, the exit status and that no checkpoint file was changed; the changed
config is refused in-process (the one-line `error: ` of a UserError raised in a run is the busy
workdir's command-line case)."""

import hashlib
import os
import signal
import subprocess
import sys
import time

import jax
import pytest

from jaxformers.testing import tiny_train_config
from jaxformers.train import train_and_evaluate
from jaxformers.train.checkpoint import DAMAGED_DIR, CheckpointError, checkpoint_dir, latest_step
from jaxformers.train.workdir import WorkdirError, locked

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
TINY = (
    "--config=tests/train/tiny_config.py",
    "--config.num_steps=8",
    "--config.checkpoint_every=4",
    "--config.eval_every=0",
)


def _start(workdir, *flags):
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=1 "
        + os.environ.get("JAXFORMERS_TEST_XLA_FLAGS", ""),
    )
    return subprocess.Popen(
        [sys.executable, "launch/train.py", *TINY, f"--workdir={workdir}", *flags],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(proc):
    stdout, stderr = proc.communicate(timeout=400)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _train(workdir, *flags):
    return _wait(_start(workdir, *flags))


def _files(root) -> dict:
    """{relative path: sha256} of every file under root."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def _tiny_train(workdir):
    """The command line's run in this process, on one device as there: the command-line resume
    finds this compile in the persistent cache."""
    config = tiny_train_config(num_steps=8, checkpoint_every=4, eval_every=0)
    train_and_evaluate(config, workdir, devices=jax.devices()[:1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workdir with checkpoints at steps 4 and 8."""
    workdir = tmp_path_factory.mktemp("trained")
    _tiny_train(workdir)
    return workdir


def _copy(src, dst):
    subprocess.run(["cp", "-r", str(src), str(dst)], check=True)
    return dst


def _damage(workdir, how: str) -> str:
    """Truncate or delete the array data files of step 8 (OCDBT keeps some unreferenced ones, so
    all of them); returns the step's directory."""
    step8 = os.path.join(checkpoint_dir(str(workdir)), "8")
    variables = os.path.join(step8, "variables")
    data = [os.path.join(d, n) for d, _, ns in os.walk(variables) for n in ns if os.path.basename(d) == "d"]
    assert data
    for path in data:
        if how == "truncate":
            os.truncate(path, os.path.getsize(path) // 2)
        else:
            os.remove(path)
    return step8


@pytest.fixture(scope="module")
def launched(trained, tmp_path_factory):
    """The command-line runs that need no other process alive, prepared and started at once (each
    spends most of its time starting up and compiling on one core). {case: (Popen, context)}."""
    root = tmp_path_factory.mktemp("launched")
    truncated = _copy(trained, root / "truncated")
    step8 = _damage(truncated, "truncate")
    started = {
        "truncated": (
            _start(truncated),
            dict(
                workdir=truncated,
                damaged=_files(step8),
                intact=_files(os.path.join(checkpoint_dir(str(truncated)), "4")),
            ),
        ),
        "unknown_key": (_start(root / "unknown", "--config.model.embd_dim=3"), {}),
        "unknown_key_debug": (_start(root / "unknown_debug", "--config.model.embd_dim=3", "--debug"), {}),
    }
    yield started
    for proc, _ in started.values():
        if proc.poll() is None:
            proc.kill()


def _finish(launched, case):
    proc, context = launched[case]
    return _wait(proc), context


def _check_skipped_and_kept(workdir, stderr: str, damaged: dict, intact: dict):
    warnings = [line for line in stderr.splitlines() if "skipped damaged checkpoint" in line]
    assert len(warnings) == 1 and "step 8" in warnings[0], stderr[-3000:]
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr[-3000:]
    # The damaged step is kept byte for byte; the intact one was not touched; step 8 was redone.
    assert _files(os.path.join(workdir, DAMAGED_DIR, "8")) == damaged
    assert _files(os.path.join(checkpoint_dir(str(workdir)), "4")) == intact
    assert latest_step(str(workdir)) == 8


def test_a_truncated_newest_checkpoint_is_skipped_in_one_line_and_kept_aside(launched):
    run, context = _finish(launched, "truncated")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "resuming from step 4" in run.stdout
    _check_skipped_and_kept(context["workdir"], run.stderr, context["damaged"], context["intact"])


def test_a_newest_checkpoint_with_deleted_files_is_skipped_in_one_line(trained, tmp_path, capfd):
    workdir = _copy(trained, tmp_path / "w")
    step8 = _damage(workdir, "delete")
    damaged, intact = _files(step8), _files(os.path.join(checkpoint_dir(str(workdir)), "4"))
    capfd.readouterr()
    _tiny_train(workdir)
    out, err = capfd.readouterr()
    assert "resuming from step 4" in out
    _check_skipped_and_kept(workdir, err, damaged, intact)


def test_a_changed_config_is_refused_in_one_line_naming_every_field(trained, tmp_path):
    workdir = _copy(trained, tmp_path / "changed")
    before = _files(checkpoint_dir(str(workdir)))
    config = tiny_train_config(
        num_steps=10, checkpoint_every=4, eval_every=0, seed=3, learning_rate=0.5, **{"model.embed_dim": 64}
    )
    with pytest.raises(CheckpointError) as error:
        train_and_evaluate(config, workdir, devices=jax.devices()[:1])
    message = str(error.value)
    assert "\n" not in message
    assert "model.embed_dim: 32 -> 64" in message and "seed: 0 -> 3" in message
    assert "num_steps" not in message and "learning_rate" not in message  # allowed on resume
    assert _files(checkpoint_dir(str(workdir))) == before


def test_a_second_run_on_a_live_runs_workdir_refuses_and_a_killed_run_leaves_no_lock(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from jaxformers.train.workdir import locked\n"
            f"with locked({str(tmp_path)!r}):\n    print('locked', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(WorkdirError, match=rf"in use by another run \(pid {holder.pid}"):
            with locked(tmp_path):
                pass
        run = _train(tmp_path)
        assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-3000:]
        assert _last_line(run.stderr).startswith("error: --workdir=") and "in use" in run.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    start = time.perf_counter()
    with locked(tmp_path):  # the kernel dropped the killed holder's lock at once
        assert time.perf_counter() - start < 1


def test_a_workdir_that_is_a_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(WorkdirError, match="exists and is not a directory"):
        with locked(path):
            pass


def test_an_unknown_config_key_is_one_line_with_the_suggestion(launched):
    run, _ = _finish(launched, "unknown_key")
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.stderr.strip().count("\n") == 0, run.stderr
    assert "embd_dim" in run.stderr and 'Did you mean "embed_dim"' in run.stderr
    debug, _ = _finish(launched, "unknown_key_debug")
    assert debug.returncode != 0 and "Traceback" in debug.stderr
