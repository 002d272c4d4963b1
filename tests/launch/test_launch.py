"""The absl entry points: a tiny run from the command line, flag errors, sampling a checkpoint."""

import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def _run(*args):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=400)


def test_train_then_sample_from_the_command_line(tmp_path):
    train = _run("launch/train.py", "--config=configs/default.py:tiny", f"--workdir={tmp_path}",
                 "--config.num_steps=4", "--config.eval_every=4", "--config.checkpoint_every=4",
                 "--config.eval_batches=1", "--config.progress_bar=False")
    assert train.returncode == 0, train.stderr[-3000:]
    assert "final validation:" in train.stdout
    sample = _run("launch/sample.py", f"--workdir={tmp_path}", "--prompt=def ",
                  "--max_new_tokens=8", "--temperature=0")
    assert sample.returncode == 0, sample.stderr[-3000:]
    assert "# checkpoint step 4" in sample.stdout and "def " in sample.stdout


def test_unknown_config_override_is_rejected_by_name(tmp_path):
    run = _run("launch/train.py", f"--workdir={tmp_path}", "--config.model.num_layerz=3")
    assert run.returncode != 0
    assert "num_layerz" in run.stderr
