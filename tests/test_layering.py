"""The house plan holds in the code: imports point down the layers (the import-linter contract in
pyproject.toml), no module is part of an import cycle, and every name a config field allows has
exactly one implementation in its table."""

import dataclasses
import os
import subprocess
import sys
import typing

import grimp

from jaxformers.config import ModelConfig
from jaxformers.nn.projection import PROJECTIONS
from jaxformers.nn.registry import FEED_FORWARDS, TOKEN_MIXERS

ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_imports_follow_the_layer_contract():
    lint = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    run = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "0 broken" in run.stdout


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_of_the_package_is_part_of_an_import_cycle():
    graph = grimp.build_graph("jaxformers")
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    assert _cycles(edges) == []


def _choices(field: str) -> set[str]:
    return set(typing.get_args(typing.get_type_hints(ModelConfig)[field]))


def test_every_config_choice_has_exactly_one_implementation():
    assert _choices("token_mixer") == set(TOKEN_MIXERS)
    assert _choices("feed_forward") == set(FEED_FORWARDS)
    assert _choices("projections") == set(PROJECTIONS)
    defaults = ModelConfig()
    for name in ("token_mixer", "feed_forward", "projections"):
        assert getattr(defaults, name) in _choices(name)
    assert all(dataclasses.is_dataclass(getattr(defaults, f.name)) == hasattr(
        getattr(defaults, f.name), "validate") for f in dataclasses.fields(defaults))
