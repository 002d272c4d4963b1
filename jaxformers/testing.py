"""Tiny configs for tests and smoke runs (seconds on a 2-core CPU)."""

from jaxformers.config import ModelConfig, model_config_from
from jaxformers.train.config_base import base_config
from jaxformers.train.evaluate import set_dotted


def tiny_model_config(**overrides) -> ModelConfig:
    values = dict(vocab_size=32, embed_dim=32, num_layers=2, num_heads=4, num_kv_heads=2,
                  max_len=16)
    values.update(overrides)
    return model_config_from(values)


def tiny_train_config(**overrides):
    """A synthetic-data LM run of 12 steps; overrides are dotted keys, e.g. {"model.num_layers": 3}."""
    c = base_config()
    c.model.update(dict(vocab_size=32, embed_dim=32, num_layers=2, num_heads=4, num_kv_heads=2,
                        max_len=16))
    c.data = dict(name="synthetic", seq_len=16, vocab=32, num_records=512)
    c.batch_size = 8
    c.num_steps = 12
    c.warmup_steps = 2
    c.learning_rate = 1e-2
    c.eval_every = 6
    c.eval_batches = 2
    c.checkpoint_every = 6
    c.log_every = 1
    c.progress_bar = False
    c.peak_flops = 1e11
    for key, value in overrides.items():
        set_dotted(c, key, value)
    return c
