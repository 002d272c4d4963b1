"""8 simulated CPU devices for every test (must be set before jax is imported)."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAXFORMERS_COLAB_SMALL", "1")

import jax  # noqa: E402

jax.config.update("jax_threefry_partitionable", True)

# Tests build the same tiny programs many times: a persistent compilation cache saves minutes.
jax.config.update(
    "jax_compilation_cache_dir",
    os.environ.get("JAXFORMERS_TEST_CACHE", os.path.join(os.path.dirname(__file__), "..", ".jax_cache")),
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
