"""Subprocess entry points for tests that need their own process (not collected by pytest).

python tests/train/worker.py multiprocess <process_id> <port> <workdir>
python tests/train/worker.py kill_during_save <kill_step> <workdir>
python tests/train/worker.py sigterm <after_logged_steps> <workdir>
"""

import os
import signal
import sys

mode = sys.argv[1]
# The crash and preemption runs are about files and signals, not the mesh: one device, whose step
# compiles faster than an 8-way sharded one (and is the one the resuming test compiles).
os.environ["XLA_FLAGS"] = (
    "--xla_force_host_platform_device_count="
    + ("2" if mode == "multiprocess" else "1")
    + " "
    + os.environ.get("JAXFORMERS_TEST_XLA_FLAGS", "")
)
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

from jaxformers.testing import tiny_train_config  # noqa: E402

if mode == "multiprocess":
    process_id, port, workdir = int(sys.argv[2]), sys.argv[3], sys.argv[4]
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=process_id)
    from jaxformers.train import train_and_evaluate

    assert jax.device_count() == 4 and jax.local_device_count() == 2
    train_and_evaluate(tiny_train_config(num_steps=6, checkpoint_every=0, eval_every=0), workdir)
elif mode == "kill_during_save":
    kill_step, workdir = int(sys.argv[2]), sys.argv[3]
    from orbax.checkpoint._src.path import atomicity

    original_finalize = atomicity.AtomicRenameTemporaryPath.finalize

    async def finalize_or_die(self, *args, **kwargs):
        # The step's files are written but not yet renamed into place: die like a preempted VM.
        if os.path.basename(str(self.get())).startswith(f"{kill_step}."):
            os.kill(os.getpid(), signal.SIGKILL)
        return await original_finalize(self, *args, **kwargs)

    atomicity.AtomicRenameTemporaryPath.finalize = finalize_or_die
    from jaxformers.train import train_and_evaluate

    train_and_evaluate(tiny_train_config(num_steps=12, checkpoint_every=3, eval_every=0), workdir)
elif mode == "sigterm":
    import threading
    import time

    after, workdir = int(sys.argv[2]), sys.argv[3]

    def preempt():  # like a TPU maintenance event: SIGTERM once `after` steps are logged
        path = os.path.join(workdir, "metrics.jsonl")
        while not (os.path.exists(path) and sum(1 for _ in open(path)) >= after):
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=preempt, daemon=True).start()
    from jaxformers.train import train_and_evaluate

    # eval_every past the SIGTERM: the end-of-run evaluation must not delay the exit.
    last_eval = train_and_evaluate(
        tiny_train_config(num_steps=2000, checkpoint_every=1000, eval_every=1500), workdir
    )
    assert not last_eval, f"evaluated after SIGTERM: {last_eval}"
    print("exited cleanly")
