"""Train a jaxformers model: the one entry point for every experiment.

  python launch/train.py --config=configs/default.py --workdir=runs/default \
      --config.model.num_layers=4 --config.num_steps=1000

Re-running the same command resumes from the newest complete checkpoint in --workdir. On a TPU pod
run the same command on every host (`gcloud ... ssh --worker=all --command=...`).
"""

import os
import sys

from absl import app, flags, logging

from jaxformers.errors import config_file_flag, run_main

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "default.py")
config_file_flag("config", _DEFAULT_CONFIG, "Experiment config file[:preset].")
flags.DEFINE_string("workdir", "runs/default", "Checkpoints, metrics.jsonl and TensorBoard logs.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    from jaxformers import allocator

    allocator.keep_temp_buffers_in_heap()  # before the CPU backend's threads; no-op without glibc
    from jaxformers.train.mesh import maybe_initialize_distributed

    maybe_initialize_distributed()  # before any other JAX call; no-op on one host
    import jax

    from jaxformers.train import train_and_evaluate
    from jaxformers.train.metrics import read_metrics
    from jaxformers.train.next_steps import next_steps

    print(f"process {jax.process_index()} of {jax.process_count()}; "
          f"local devices {jax.local_devices()}", flush=True)
    config, workdir = flags.FLAGS.config, flags.FLAGS.workdir
    metrics = train_and_evaluate(config, workdir)
    if jax.process_index() == 0:
        print("final validation:", " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
        step = max((r["step"] for r in read_metrics(workdir)), default=0)  # the final evaluation
        print(next_steps(workdir, sys.argv, step=step, num_steps=config.num_steps,
                         model_family=config.model_family))


if __name__ == "__main__":
    run_main(main)
