"""The base experiment config every `configs/*.py` starts from.

Top-level keys are fixed here: an experiment that sets a key not in this dict is an error naming
the key (ml_collections rejects unknown `--config.x` overrides; `validate_config` checks dicts built
in Python). `model` holds `ModelConfig` fields (validated by `jaxformers.config.model_config_from`).
"""

import ml_collections

from jaxformers.config import model_config_dict

DEFAULT_SHARDING_RULES = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("q_heads", "tensor"),
    ("kv_heads", "tensor"),
    ("vocab", "tensor"),
    ("expert", "tensor"),
    ("layers", None),
    ("modality", None),
    ("norm", None),
)


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.model_family = "decoder"
    c.model = model_config_dict()  # every ModelConfig field, so any can be overridden
    c.model.update(dict(vocab_size=264, embed_dim=128, num_layers=2, num_heads=4, max_len=128))
    # segment_ids: packed documents masked from each other (data/text.py); False = leaky packing
    c.data = ml_collections.ConfigDict(dict(name="text", seq_len=128, segment_ids=True))
    c.objective = "next_token"
    c.seed = 0
    c.batch_size = 16  # global, across all hosts and devices
    c.grad_accum_steps = 1  # micro-batches per step (lax.scan, float32 gradient sums, one update)
    c.num_steps = 300
    c.learning_rate = 3e-3
    c.min_learning_rate_ratio = 0.1  # cosine decays to this fraction of the peak
    c.warmup_steps = 30
    c.weight_decay = 0.1
    c.adam_b1 = 0.9
    c.adam_b2 = 0.95
    c.grad_clip = 1.0
    c.eval_every = 100
    c.eval_batches = 8
    c.checkpoint_every = 100  # 0 disables checkpointing
    c.keep_checkpoints = 2
    c.log_every = 10
    c.evaluators = ()  # names registered in train/evaluators.py, run at each evaluation
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    c.sharding_rules = DEFAULT_SHARDING_RULES
    c.init_from = ml_collections.ConfigDict(
        dict(workdir="", step=-1, transform="identity", options=ml_collections.ConfigDict())
    )
    c.peak_flops = 0.0  # FLOP/s of one device for MFU; 0 = measure a float32 matmul once
    c.profile_steps = (0, 0)  # (first step, number of steps) to trace with jax.profiler
    c.progress_bar = True
    return c


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Reject unknown top-level keys and obviously wrong values, naming the field."""
    base = base_config()
    for key in config.keys():
        if key not in base:
            raise ValueError(f"unknown config key config.{key}; valid keys: {sorted(base.keys())}")
    for key in ("batch_size", "grad_accum_steps", "num_steps", "eval_batches", "log_every"):
        value = config[key]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"config.{key}={value!r} must be a positive int")
    for key in ("eval_every", "checkpoint_every", "warmup_steps"):
        if not isinstance(config[key], int) or config[key] < 0:
            raise ValueError(f"config.{key}={config[key]!r} must be a non-negative int")
    for key in ("data", "fsdp", "tensor"):
        if key not in config.mesh or not isinstance(config.mesh[key], int):
            raise ValueError(f"config.mesh.{key} must be an int (-1 fills the remaining devices)")
    unknown = set(config.mesh.keys()) - {"data", "fsdp", "tensor"}
    if unknown:
        raise ValueError(f"unknown config key(s) config.mesh.{sorted(unknown)}")


def parse_config_arg(arg: str | None, **defaults) -> dict:
    """`get_config("size=tiny,stage=base")` -> {"size": "tiny", "stage": "base"} over defaults.

    A bare word sets the first default key (so `:tiny` == `:size=tiny`). Unknown keys are errors.
    """
    values = dict(defaults)
    if not arg:
        return values
    for i, item in enumerate(arg.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            if i != 0 or not defaults:
                raise ValueError(f"config argument {item!r} must be key=value")
            key, value = next(iter(defaults)), item
        if key not in defaults:
            raise ValueError(f"unknown config argument {key!r}; valid: {sorted(defaults)}")
        values[key] = type(defaults[key])(value) if defaults[key] is not None else value
    return values
