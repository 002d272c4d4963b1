"""8 simulated CPU devices for every test (must be set before jax is imported).

The suite compiles hundreds of tiny programs, and LLVM's backend optimisation is most of each
compile while buying nothing at these sizes. So tests, their subprocesses and the notebooks they
execute compile with `--xla_backend_optimization_level=0`. The HLO is unchanged: fusion, layouts
and every numerical claim checked against float64 oracles; only machine-code generation is -O0.
That halves compile time (tiny MoE train run: 14.5 s -> 7.2 s); on jaxlib 0.10 the legacy
loop emitters take off another 40%.
"""

import os
import sys

FAST_COMPILE = "--xla_backend_optimization_level=0"
try:
    from jaxlib.version import __version__ as _jaxlib_version
except ImportError:
    _jaxlib_version = ""
if _jaxlib_version.startswith("0.10."):
    # jaxlib 0.10's legacy loop emitters compile a tiny train step in 3.1 s instead of 5.3 s
    # (the MLIR fusion emitters), same losses; newer jaxlibs have only the new emitters and abort
    # on the flag.
    FAST_COMPILE += " --xla_cpu_use_fusion_emitters=false"
os.environ["JAXFORMERS_TEST_XLA_FLAGS"] = FAST_COMPILE  # read by subprocess launchers below
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count=8 {FAST_COMPILE}"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAXFORMERS_COLAB_SMALL", "1")

import jax  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))  # the tests' shared helpers (notebook_runs)

jax.config.update("jax_threefry_partitionable", True)

# Tests build the same tiny programs many times: a persistent compilation cache saves minutes.
# Set through the environment too, so the launchers, workers and notebook kernels that the tests
# start share it (a notebook training the tiny default config reuses the launch test's compile).
CACHE_DIR = os.path.abspath(
    os.environ.get("JAXFORMERS_TEST_CACHE", os.path.join(os.path.dirname(__file__), "..", ".jax_cache"))
)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", CACHE_DIR)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def pytest_collection_finish(session):
    """Start the selected notebooks in the background now (tests/notebook_runs.py says why)."""
    notebooks = [
        item.callspec.params["path"]
        for item in session.items
        if getattr(item, "originalname", None) == "test_notebook_executes"
    ]
    if notebooks:
        from notebook_runs import RUNS

        RUNS.start(notebooks)


def pytest_sessionfinish(session):
    if "notebook_runs" in sys.modules:
        sys.modules["notebook_runs"].RUNS.stop()
