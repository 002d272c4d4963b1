"""jaxformers' XLA:CPU workaround (jaxformers/_xla_flags.py): what it sets, and that a GLA model's
backward pass runs in a fresh process that imports jaxformers, with no flags from this suite."""

import os
import subprocess
import sys

import jaxlib.version
import pytest

from jaxformers import _xla_flags

ROOT = os.path.join(os.path.dirname(__file__), "..")

GLA_BACKWARD = """
import jaxformers  # before the first computation, as any user script does
import jax, jax.numpy as jnp, numpy as np
from jaxformers.config import model_config_from
from jaxformers.models.registry import build_model

cfg = model_config_from(dict(vocab_size=64, embed_dim=32, num_layers=2, num_heads=2, max_len=16,
                             mlp_dim=48, token_mixer="gla"))
model = build_model("decoder", cfg)
tokens = jnp.arange(32).reshape(2, 16) % 64
# one jitted init (eager, model.init compiles each of its primitives on its own)
params = jax.jit(model.init)(jax.random.PRNGKey(0), tokens)["params"]
grads = jax.jit(jax.grad(lambda p: jnp.mean(jnp.sin(model.apply({"params": p}, tokens)))))(params)
print("finite", all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads)))
"""


def test_gla_backward_runs_in_a_fresh_process():
    # jaxlib 0.10.2 segfaulted here on an AMD EPYC host (rc -11) until the YNN fusions were off.
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    run = subprocess.run(
        [sys.executable, "-c", GLA_BACKWARD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])
    assert "finite True" in run.stdout


@pytest.mark.parametrize(
    "jaxlib_version, flags, want",
    [
        ("0.10.2", "", "--xla_cpu_experimental_ynn_fusion_type="),
        (
            "0.10.2",
            "--xla_force_host_platform_device_count=8",
            "--xla_force_host_platform_device_count=8 --xla_cpu_experimental_ynn_fusion_type=",
        ),
        (
            "0.10.2",
            "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT",
            "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT",
        ),  # the user's choice wins
        ("0.11.0", "", ""),  # a jaxlib not known to have the flag: XLA would abort on it
    ],
)
def test_flag_is_added_only_where_jaxlib_has_it(monkeypatch, jaxlib_version, flags, want):
    monkeypatch.setattr(jaxlib.version, "__version__", jaxlib_version)
    environ = {"XLA_FLAGS": flags}
    _xla_flags.apply_cpu_workarounds(environ)
    assert environ["XLA_FLAGS"] == want
