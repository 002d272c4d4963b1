"""Where the training experiments keep their results: one JSON per experiment in
experiments/results/, with each variant (a seed, a grid size, a setting) as a key inside it, and one
figure drawn from the whole JSON."""

import json
import os

from jaxformers.configs_loader import load_config

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def path(name: str, ext: str) -> str:
    return os.path.join(RESULTS, f"{name}.{ext}")


def load(name: str) -> dict:
    """All variants recorded so far for experiment `name` ({} if none)."""
    if not os.path.exists(path(name, "json")):
        return {}
    with open(path(name, "json")) as f:
        return json.load(f)


def save_variant(name: str, key: str, value) -> dict:
    """Record (or replace) one variant of experiment `name`; returns every variant."""
    results = load(name)
    results[key] = value
    os.makedirs(RESULTS, exist_ok=True)
    with open(path(name, "json"), "w") as f:
        json.dump(results, f, indent=1)
    return results


def save_figure(fig, name: str, dpi: int = 100) -> str:
    out = path(name, "png")
    fig.savefig(out, dpi=dpi)
    return out


def config(name: str, arg: str = ""):
    """configs/<name>.py's get_config(arg): what `--config=configs/<name>.py:<arg>` builds."""
    return load_config(os.path.join(CONFIGS, f"{name}.py"), arg)
