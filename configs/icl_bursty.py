"""In-context vs in-weights learning on bursty, Zipf-distributed classes (Chan et al. 2022).

  python launch/train.py --config=configs/icl_bursty.py:burstiness=4 --workdir=runs/icl_bursty_b4

Chan et al. 2022 (arXiv 2205.05055) with Reddy's synthetic classes (arXiv 2312.03002, §2): K = 512
(classes=) training classes (means ~ N(0, I/D), D = 32, within-class noise ε = 0.1, label k mod 32), sequences
of 8 (exemplar, label) pairs and a query, every sequence bursty with B items of the query's class
(B = 0: i.i.d. Zipf draws, α = 0 uniform), model family `icl_classifier` (2 layers, width 64, softmax
attention + SwiGLU), cross-entropy on the query's label. The evaluator prints ICL accuracy
(2-way 4-shot on 64 held-out classes, labels drawn per prompt; chance 0.5) and IWL accuracy
(training classes, no context item of the query's class; chance 1/32).
Config args: burstiness=B, p_bursty=, zipf=α, classes=K, noise=ε, steps=, mixer= (model.token_mixer).
Measured (docs/icl.md "Result 7", experiments/results/icl_bursty.json; 800 steps each, K = 1024):
  nice -n 19 python experiments/icl_bursty.py --burstiness=0,2,4 --steps=800 --classes=1024
B = 0 / 2 / 4: ICL accuracy 0.033 / 0.302 / 0.452, IWL accuracy 1.000 / 0.886 / 0.518: ICL rises
with burstiness, IWL falls. ICL stays <= 1/2 (the model picks a context label, it does not yet match
exemplars to classes) at this budget.
With --steps=4000 --classes=4096 (one level per core): ICL 0.029 / 0.296 / 0.999, IWL 1.000 / 0.829 /
0.032; at B = 4 ICL jumps from 0.55 to 0.99 between steps 500 and 1500 (the matching circuit).
"""

from jaxformers.train.config_base import base_config, parse_config_arg


def get_config(arg=None):
    args = parse_config_arg(
        arg, burstiness=4, p_bursty=1.0, zipf=0.0, classes=512, noise=0.1, steps=3000, mixer="attention"
    )
    c = base_config()
    c.model_family = "icl_classifier"
    c.objective = "icl_classification"
    c.data.update(
        dict(
            name="icl_bursty",
            classes=args["classes"],
            holdout_classes=64,
            labels=32,
            dim=32,
            context=8,
            burstiness=args["burstiness"],
            p_bursty=float(args["p_bursty"]),
            zipf_alpha=float(args["zipf"]),
            noise=float(args["noise"]),
            class_seed=0,
        )
    )
    c.model.update(
        dict(
            vocab_size=32,  # the L labels
            embed_dim=64,
            num_layers=2,
            num_heads=2,
            max_len=17,  # 2N + 1 tokens
            token_mixer=args["mixer"],
            feed_forward="swiglu",
            init_std=0.02,
        )
    )
    c.model.gla.chunk_size = 17
    c.model.linear_attention.chunk_size = 17
    c.batch_size = 128
    c.num_steps = args["steps"]
    c.learning_rate = 1e-3
    c.warmup_steps = 200
    c.weight_decay = 0.0
    c.eval_every = max(args["steps"] // 6, 1)
    c.eval_batches = 2
    c.evaluators = ("icl_bursty",)
    c.checkpoint_every = 0
    c.log_every = 100
    c.progress_bar = False
    return c
