"""The absl entry points: a tiny run from the command line, flag errors, sampling and evaluating a
checkpoint, growing it offline (launch/grow.py) and training the grown checkpoint."""

import json
import os
import re
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def _start(*args):
    flags = "--xla_force_host_platform_device_count=1 " + os.environ.get("JAXFORMERS_TEST_XLA_FLAGS", "")
    env = dict(os.environ, XLA_FLAGS=flags)
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait(proc):
    stdout, stderr = proc.communicate(timeout=400)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _run(*args):
    return _wait(_start(*args))


TINY = (
    "--config=configs/default.py:tiny",
    "--config.eval_every=4",
    "--config.checkpoint_every=4",
    "--config.eval_batches=1",
    "--config.progress_bar=False",
)


def test_train_sample_grow_and_train_the_grown_checkpoint_from_the_command_line(tmp_path):
    base, grown, bad = tmp_path / "base", tmp_path / "grown", tmp_path / "bad"
    train = _run("launch/train.py", *TINY, f"--workdir={base}", "--config.num_steps=4")
    assert train.returncode == 0, train.stderr[-3000:]
    assert "final validation:" in train.stdout
    # Sampling, evaluating and growing only read the checkpoint: they run side by side.
    report = tmp_path / "eval.json"
    started = {
        "sample": _start(
            "launch/sample.py", f"--workdir={base}", "--prompt=def ", "--max_new_tokens=8", "--temperature=0"
        ),
        "evaluate": _start(
            "launch/evaluate.py", f"--workdir={base}", "--eval_batches=1", f"--output={report}"
        ),
        # 2 -> 4 layers with G_zero: function preserving, so the logits must not move.
        "grow": _start(
            "launch/grow.py",
            *TINY,
            "--config.model.num_layers=4",
            f"--source={base}",
            "--transform=g_zero",
            f"--workdir={grown}",
        ),
        "misfit": _start(
            "launch/grow.py",
            *TINY,
            "--config.model.num_layers=3",
            f"--source={base}",
            "--transform=g_stack",
            f"--workdir={bad}",
        ),
    }
    sample, evaluate, grow, misfit = (_wait(started[name]) for name in started)
    assert sample.returncode == 0, sample.stderr[-3000:]
    assert "# checkpoint step 4" in sample.stdout and "def " in sample.stdout
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    loss = json.loads(report.read_text())[0]["loss"]
    assert f"{loss:8.4f}" in evaluate.stdout and "(step 4)" in evaluate.stdout
    assert misfit.returncode != 0
    assert "num_layers=3 is not a multiple" in misfit.stderr
    assert grow.returncode == 0, grow.stderr[-3000:]
    assert "2 layers" in grow.stdout and "4 layers" in grow.stdout
    diff = float(re.search(r"on a validation batch: (\S+) \(function preserving\)", grow.stdout).group(1))
    assert diff < 1e-4, grow.stdout
    resumed = _run(
        "launch/train.py", *TINY, "--config.model.num_layers=4", f"--workdir={grown}", "--config.num_steps=4"
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "final validation:" in resumed.stdout


def test_unknown_config_override_is_rejected_by_name(tmp_path):
    run = _run("launch/train.py", f"--workdir={tmp_path}", "--config.model.num_layerz=3")
    assert run.returncode != 0
    assert "num_layerz" in run.stderr
