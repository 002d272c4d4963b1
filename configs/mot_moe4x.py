"""MoE-4x baseline for the Mixture-of-Transformers comparison (MoT paper §3.2: dense, MoE-4x, MoT).

  python launch/train.py --config=configs/mot_moe4x.py --workdir=runs/mot_moe4x
  python experiments/mot_step_matching.py --steps=1000 --moe4x  # dense, MoT and this, side by side

configs/mot_dense_baseline.py with its SwiGLU FFN replaced by 4 experts, each a plain MLP of width
1.5·hidden_dim so that one expert costs what the dense FFN costs. Top-1 learned routing with the
Switch gate (the chosen expert's softmax probability), dispatch with capacity factor 1.0 and the
Switch load-balancing loss (weight 0.01). Per-step FLOPs therefore equal dense (and MoT) while the FFN
has 4x the parameters. The paper's MoE-4x uses expert-choice routing, which sees future tokens
(the authors flag it); token choice keeps this baseline causal.
Presets: as configs/mot.py (size, variant, text, steps).
"""

import os

from jaxformers.config import model_config_from
from jaxformers.configs_loader import load_file

_mot = load_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "mot.py"))

NUM_EXPERTS = 4


def get_config(arg: str | None = None):
    c = _mot.mot_config(arg, num_modalities=1)
    swiglu_width = model_config_from(c.model).hidden_dim  # the dense baseline's FFN width
    c.model.feed_forward = "moe"
    c.model.moe = dict(num_experts=NUM_EXPERTS, expert_dim=swiglu_width * 3 // 2, k=1,
                       gate="softmax", router="learned", dispatch="dispatch",
                       capacity_factor=1.0, load_balance_weight=0.01, activation="silu",
                       use_bias=False)
    return c
