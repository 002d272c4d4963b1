"""What a reader sees without running anything: every method in the README's table has a results page,
every page shows a figure that exists, every notebook is committed with outputs and a plot, and the
repository URL of the Colab links is the one in pyproject.toml."""

import glob
import json
import os
import re
import tomllib

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")
with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    REPO_URL = tomllib.load(f)["project"]["urls"]["Repository"]
with open(os.path.join(ROOT, "README.md")) as f:
    README = f.read()
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "colabs", "*.ipynb")))


def method_rows():
    table = README[README.index("| method |"):].split("\n\n")[0].splitlines()[2:]
    return [row for row in table if row.startswith("|")]


def test_every_method_in_the_readme_table_has_a_page():
    rows = method_rows()
    assert len(rows) >= 8
    for row in rows:
        pages = re.findall(r"\]\((docs/[\w.-]+\.md)\)", row)
        assert pages, f"README method row without a docs/ page: {row[:80]}"
        for page in pages:
            assert os.path.exists(os.path.join(ROOT, page)), page


@pytest.mark.parametrize("page", sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))), ids=os.path.basename)
def test_every_page_shows_an_existing_figure(page):
    with open(page) as f:
        text = f.read()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert figures, f"{page} links no figure"
    for figure in figures:
        assert os.path.exists(os.path.normpath(os.path.join(os.path.dirname(page), figure))), figure


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_every_notebook_is_committed_with_outputs_and_a_plot(path):
    with open(path) as f:
        cells = json.load(f)["cells"]
    outputs = [o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert outputs, f"{path} has no outputs: execute it before committing"
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path} shows no plot"
    assert not [o for o in outputs if o.get("output_type") == "error"], f"{path} has an error output"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebooks_open_in_colab_and_install_from_the_one_repository_url(path):
    with open(path) as f:
        text = "".join("".join(c["source"]) for c in json.load(f)["cells"])
    name = os.path.basename(path)
    colab = f"https://colab.research.google.com/github/{REPO_URL.removeprefix('https://github.com/')}"
    assert f"{colab}/blob/main/colabs/{name}" in text, f"{name}: no Open-in-Colab link to itself"
    assert "../" not in text, f"{name} uses a relative path"
    for url in re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", text):
        assert url == REPO_URL, f"{name}: {url} is not pyproject's Repository {REPO_URL}"


def test_readme_links_every_notebook_to_colab_and_no_work_logs():
    for path in NOTEBOOKS:
        name = os.path.basename(path)
        if f"colabs/{name}" in README:
            assert f"{REPO_URL.removeprefix('https://github.com/')}/blob/main/colabs/{name}" in README, name
    assert "notes/" not in README, "the README sends readers to notes/ (work logs); link docs/ pages"
