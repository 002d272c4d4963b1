"""Every notebook in colabs/ runs top to bottom (small-size switch on) without an error."""

import glob
import os

import nbformat
import pytest
from nbclient import NotebookClient

COLABS = os.path.join(os.path.dirname(__file__), "..", "colabs")
NOTEBOOKS = sorted(glob.glob(os.path.join(COLABS, "*.ipynb")))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_executes(path):
    nb = nbformat.read(path, as_version=4)
    os.environ["JAXFORMERS_COLAB_SMALL"] = "1"
    saved = os.environ["XLA_FLAGS"]
    os.environ["XLA_FLAGS"] = os.environ.get("JAXFORMERS_TEST_XLA_FLAGS", "")  # one CPU device
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": COLABS}})
    try:
        client.execute()
    finally:
        os.environ["XLA_FLAGS"] = saved
