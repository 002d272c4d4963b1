"""Every notebook in colabs/ runs top to bottom (small-size switch on) without an error and without
being written back, and its jupytext-paired .py source (py:percent) says the same thing."""

import glob
import os

import jupytext
import pytest

COLABS = os.path.join(os.path.dirname(__file__), "..", "colabs")
NOTEBOOKS = sorted(glob.glob(os.path.join(COLABS, "*.ipynb")))


@pytest.fixture(scope="module")
def notebook_runs():
    from notebook_runs import RUNS  # started at collection by conftest.py

    return RUNS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_executes(path, notebook_runs):
    with open(path, "rb") as f:
        committed = f.read()
    returncode, output = notebook_runs.result(path)
    assert returncode == 0, f"{os.path.basename(path)} failed:\n{output[-4000:]}"
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
        f"{path} and {source} differ: edit the .py and run `jupytext --sync {source}`"
    )
