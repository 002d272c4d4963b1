"""jaxformers.allocator: after warm-up, a step whose XLA temp buffer is above glibc's 32 MB mmap
limit (as every training step of the README's main job is) takes no minor page faults; without the
mallopt settings it takes one fault per 4 KiB page of that buffer on every step. Each case runs in
a fresh process, since the settings must precede the CPU backend's threads."""

import os
import subprocess
import sys

import pytest

from jaxformers import allocator

ROOT = os.path.join(os.path.dirname(__file__), "..")

STEPS = """
import resource, sys
from jaxformers import allocator
if sys.argv[1] == "heap":
    assert allocator.keep_temp_buffers_in_heap()
import jax, jax.numpy as jnp
step = jax.jit(lambda x: jnp.sum(jnp.sin(x).T @ jnp.cos(x)[:, :64]))  # ~50 MB temp buffer
x = jnp.ones((16384, 768))
faults = []
for _ in range(24):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step(x).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print("faults", *faults)
"""


@pytest.mark.skipif(allocator._glibc() is None, reason="the mallopt settings are glibc's")
def test_no_page_faults_per_step_after_warm_up_in_a_fresh_process():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    runs = {mode: subprocess.Popen([sys.executable, "-c", STEPS, mode], cwd=ROOT, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for mode in ("heap", "default")}
    faults = {}
    for mode, run in runs.items():
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, (mode, err[-2000:])
        faults[mode] = [int(f) for f in out.split("faults")[1].split()]
    # The heap grows to its high-water mark in the first ~10 steps, then every step reuses it.
    assert sorted(faults["heap"][-8:])[4] < 200, faults
    # Without the settings each step maps the ~50 MB buffer afresh: ~13k faults of 4 KiB pages.
    assert min(faults["default"][-8:]) > 5000, faults


def test_without_glibc_it_is_a_no_op(monkeypatch):
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("", ""))
    assert allocator._glibc() is None
    allocator.keep_temp_buffers_in_heap.cache_clear()
    try:
        assert allocator.keep_temp_buffers_in_heap() is False
    finally:
        allocator.keep_temp_buffers_in_heap.cache_clear()
