"""What to do after a training run: where its files are and the exact commands to use them.

`launch/train.py` prints `next_steps(...)` at the end of a run, e.g.

    Run 'runs/default' finished at step 600.
      checkpoints   /home/me/runs/default/checkpoints (Orbax, newest step 600)
      metrics       /home/me/runs/default/metrics.jsonl
      TensorBoard   tensorboard --logdir=/home/me/runs/default/tensorboard   (pip install tensorboard)
      sample        python launch/sample.py --workdir=runs/default
      evaluate      python launch/evaluate.py --workdir=runs/default
      resume        python launch/train.py --workdir=runs/default   (the same command continues an ...)
      train longer  python launch/train.py --workdir=runs/default --config.num_steps=1200
"""

import os
import shlex
from collections.abc import Sequence

from jaxformers.train.checkpoint import checkpoint_dir

SAMPLED_FAMILIES = ("decoder",)  # launch/sample.py generates text with models/sampling.generate


def _with_num_steps(argv: Sequence[str], num_steps: int) -> list[str]:
    """argv with --config.num_steps set to num_steps (replaced if present, else appended)."""
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg.startswith("--config.num_steps="):
            continue
        if arg == "--config.num_steps":
            skip = i + 1 < len(argv)
            continue
        out.append(arg)
    return out + [f"--config.num_steps={num_steps}"]


def next_steps(workdir: str, argv: Sequence[str], *, step: int, num_steps: int,
               model_family: str = "decoder") -> str:
    """The end-of-run message: files of the run in `workdir` and the commands to sample from it,
    evaluate it, resume it and train it longer. `argv` is the training command as typed
    (`["launch/train.py", "--config=...", ...]`, i.e. `sys.argv`); `step` the last step trained."""
    workdir_flag = f"--workdir={workdir}"
    train = ["python", *argv]
    if not any(a == "--workdir" or a.startswith("--workdir=") for a in argv):
        train.append(workdir_flag)
    abs_dir = os.path.abspath(workdir)
    rows = [
        ("checkpoints", f"{checkpoint_dir(workdir)} (Orbax, newest step {step})"),
        ("metrics", os.path.join(abs_dir, "metrics.jsonl")),
        ("TensorBoard", f"tensorboard --logdir={os.path.join(abs_dir, 'tensorboard')}"
                        "   (pip install tensorboard)"),
    ]
    if model_family in SAMPLED_FAMILIES:
        rows.append(("sample", shlex.join(["python", "launch/sample.py", workdir_flag])))
    rows += [
        ("evaluate", shlex.join(["python", "launch/evaluate.py", workdir_flag])),
        ("resume", shlex.join(train) + "   (the same command continues an interrupted run from the"
                   " newest checkpoint)"),
        ("train longer", shlex.join(_with_num_steps(train, 2 * max(num_steps, step, 1)))),
    ]
    state = "finished" if step >= num_steps else "stopped"
    return "\n".join([f"Run {workdir!r} {state} at step {step}."]
                     + [f"  {name:<13} {text}" for name, text in rows])
