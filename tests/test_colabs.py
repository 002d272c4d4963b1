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
    os.environ.pop("XLA_FLAGS", None)  # notebooks run on the plain CPU device
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": COLABS}})
    try:
        client.execute()
    finally:
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
