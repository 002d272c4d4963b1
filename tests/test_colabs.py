"""Every notebook in colabs/ runs top to bottom (small-size switch on) without an error and without
being written back, and its jupytext-paired .py source (py:percent) says the same thing."""

import glob
import os
import subprocess
import sys

import jupytext
import pytest

COLABS = os.path.join(os.path.dirname(__file__), "..", "colabs")
NOTEBOOKS = sorted(glob.glob(os.path.join(COLABS, "*.ipynb")))


# Each notebook runs in its own process (and Jupyter kernel). While one is checked, the next one
# already runs: a kernel compiles on one core, so two at a time halve the wall time on two cores.
RUNNER = (
    "import sys, nbformat; from nbclient import NotebookClient; "
    "nb = nbformat.read(sys.argv[1], as_version=4); "
    "NotebookClient(nb, timeout=600, kernel_name='python3', "
    "resources={'metadata': {'path': sys.argv[2]}}).execute()"
)
_RUNS: dict[str, subprocess.Popen] = {}


def _start(path):
    if path not in _RUNS:
        env = dict(os.environ, JAXFORMERS_COLAB_SMALL="1",
                   XLA_FLAGS=os.environ.get("JAXFORMERS_TEST_XLA_FLAGS", ""))  # one CPU device
        _RUNS[path] = subprocess.Popen([sys.executable, "-c", RUNNER, path, COLABS], env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return _RUNS[path]


@pytest.fixture(scope="module", autouse=True)
def _stop_leftover_runs():
    yield
    for proc in _RUNS.values():
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_executes(path):
    with open(path, "rb") as f:
        committed = f.read()
    run = _start(path)
    following = NOTEBOOKS.index(path) + 1
    if following < len(NOTEBOOKS):
        _start(NOTEBOOKS[following])
    output, _ = run.communicate(timeout=900)
    assert run.returncode == 0, f"{os.path.basename(path)} failed:\n{output[-4000:]}"
    with open(path, "rb") as f:
        assert f.read() == committed, f"{path} was modified by running it"


def _cells(notebook):
    return [(c.cell_type, c.source.strip()) for c in notebook.cells]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_and_its_paired_source_agree(path):
    source = path[: -len(".ipynb")] + ".py"
    assert os.path.exists(source), f"{path} has no paired py:percent source {source} (jupytext --sync)"
    notebook = jupytext.read(path)
    assert "py:percent" in notebook.metadata.get("jupytext", {}).get("formats", ""), path
    assert _cells(notebook) == _cells(jupytext.read(source)), (
        f"{path} and {source} differ: edit the .py and run `jupytext --sync {source}`")
