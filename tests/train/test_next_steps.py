"""The end-of-run message names the run's real files and commands that reproduce and extend it."""

import shlex

from jaxformers.train.checkpoint import checkpoint_dir
from jaxformers.train.next_steps import next_steps


def _rows(message):
    return {line.split()[0] if not line.startswith("  train longer") else "train longer":
            line[16:] for line in message.splitlines()[1:]}


def test_message_points_at_the_checkpoint_directory_the_loop_writes():
    rows = _rows(next_steps("runs/x", ["launch/train.py", "--workdir=runs/x"], step=600, num_steps=600))
    assert rows["checkpoints"].startswith(checkpoint_dir("runs/x") + " ")
    assert "newest step 600" in rows["checkpoints"]
    assert rows["sample"] == "python launch/sample.py --workdir=runs/x"
    assert rows["evaluate"] == "python launch/evaluate.py --workdir=runs/x"


def test_resume_is_the_command_as_typed_and_train_longer_sets_num_steps_once():
    argv = ["launch/train.py", "--config=configs/gla_lm.py:size=small", "--workdir=runs/g",
            "--config.num_steps", "300", "--config.learning_rate=0.001"]
    rows = _rows(next_steps("runs/g", argv, step=300, num_steps=300))
    assert shlex.split(rows["resume"].split("   (")[0]) == ["python", *argv]
    longer = shlex.split(rows["train longer"])
    assert longer[:3] == ["python", "launch/train.py", "--config=configs/gla_lm.py:size=small"]
    assert [a for a in longer if "num_steps" in a] == ["--config.num_steps=600"]
    assert "300" not in longer and "--config.learning_rate=0.001" in longer


def test_bare_command_gets_the_default_workdir_and_non_decoders_get_no_sample_line():
    message = next_steps("runs/default", ["launch/train.py"], step=20, num_steps=100,
                         model_family="encdec")
    rows = _rows(message)
    assert message.startswith("Run 'runs/default' stopped at step 20.")
    assert "sample" not in rows
    assert shlex.split(rows["resume"].split("   (")[0]) == [
        "python", "launch/train.py", "--workdir=runs/default"]
