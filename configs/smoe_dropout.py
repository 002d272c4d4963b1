"""smoe_dropout variant of the SMoE-Dropout comparison (shared base: configs/moe_base.py).

  python launch/train.py --config=configs/smoe_dropout.py --workdir=runs/smoe_dropout
  python launch/evaluate.py --workdir=runs/smoe_dropout --active_experts=1,2,4,8

Measured result: see configs/moe_base.py and docs/smoe_dropout.md.
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "moe_base", os.path.join(os.path.dirname(os.path.abspath(__file__)), "moe_base.py"))
moe_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(moe_base)


def get_config(arg: str | None = None):
    """Presets as moe_base (steps=<int>, dispatch=masked|dispatch); the variant is fixed."""
    extra = f",{arg}" if arg else ""
    return moe_base.get_config(f"variant=smoe_dropout{extra}")
