"""Induction with multi-token prediction: a 2-block model on two-token-name stories
(data/induction.py), n parallel heads (Gloeckle et al. 2024, arXiv 2404.19737, §4.1).

  python launch/train.py --config=configs/mtp_induction.py:n=2 --workdir=runs/induction_n2
  nice -n 19 python experiments/mtp_induction.py --ns=1,2,4 --seeds=0   # steps to 90%, decoding
  nice -n 19 python experiments/mtp_induction.py --ns=4 --kind=ftp      # Walker 2024's FTP, N = 4

The head-1 path is 2 blocks for every n: a 1-layer trunk and head 1's block; heads 2..n are one
block each on the same trunk (so the n > 1 models have n - 1 more blocks, not fewer trunk layers as
in Gloeckle et al.'s parameter-matched comparison: a 1-layer trunk cannot lose a layer).
`induction_accuracy` (head 1's accuracy on the second token of a repeated name) is evaluated every
eval_every steps. Measured: see docs/multi_token_prediction.md, result 2.
"""

from jaxformers.data import induction
from jaxformers.train.config_base import base_config, parse_config_arg


def get_config(arg: str | None = None):
    args = parse_config_arg(arg, n=2, steps=1000, seed=0, kind="parallel")
    c = base_config()
    c.model_family = "mtp"
    c.objective = "mtp"
    c.data = dict(name="induction", seq_len=64)
    c.model.update(dict(
        vocab_size=induction.vocab_size(c.data), embed_dim=64, num_layers=1, num_heads=4,
        num_kv_heads=4, max_len=64,
    ))  # fmt: skip
    c.model.mtp.num_future_tokens = args["n"]
    c.model.mtp.kind = args["kind"]
    c.seed = args["seed"]
    c.batch_size = 32
    c.num_steps = args["steps"]
    c.learning_rate = 3e-3
    c.warmup_steps = 50
    c.eval_every = 50
    c.eval_batches = 2
    c.evaluators = ("induction_accuracy",)
    c.checkpoint_every = c.num_steps
    c.keep_checkpoints = 1
    c.log_every = 50
    return c
