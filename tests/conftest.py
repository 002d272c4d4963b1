"""8 simulated CPU devices for every test (must be set before jax is imported)."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAXFORMERS_COLAB_SMALL", "1")

import jax  # noqa: E402

jax.config.update("jax_threefry_partitionable", True)
