"""Train state and optimizer: AdamW (Loshchilov & Hutter 2019) with warm-up + cosine, clipping."""

import re

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    """Everything a step changes. `constants` are checkpointed but never optimized."""

    step: jax.Array
    params: dict
    constants: dict
    opt_state: optax.OptState
    rng: jax.Array

    def variables(self) -> dict:
        return {"params": self.params, "constants": self.constants} if self.constants else {
            "params": self.params
        }


def learning_rate_schedule(config) -> optax.Schedule:
    peak = config.learning_rate
    decay_steps = max(config.num_steps, config.warmup_steps + 1)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=peak,
        warmup_steps=config.warmup_steps,
        decay_steps=decay_steps,
        end_value=peak * config.min_learning_rate_ratio,
    )


# What a parameter IS, from its own name (the last key of its path), not from its rank: under
# nn.scan a norm scale is [layers, modalities, d], as many axes as a matrix. Projection and embedding
# matrices decay (dense kernels, TokenFormer key/value parameter tokens, MoE expert and router
# matrices, the LSA model's layer_<i>_kq / _pv / _query / _key / _value / _projection); norm
# scales, biases and learned vectors do not. A new parameter name must be added to one of the two
# patterns.
DECAYED = re.compile(
    r"kernel|router_kernel|embedding|key_tokens|value_tokens|w\d+|layer_\d+_(kq|pv|query|key|value|projection)"
)
NOT_DECAYED = re.compile(r"(\w+_)?scale|(\w+_)?bias|b\d+|query")


def decays(path: str) -> bool:
    """Whether weight decay applies to the parameter at `path` ("layers/ffn/w1")."""
    name = path.rsplit("/", 1)[-1]
    if DECAYED.fullmatch(name):
        return True
    if NOT_DECAYED.fullmatch(name):
        return False
    raise ValueError(
        f"parameter {path!r}: cannot tell whether it is a matrix (weight decay) or a scale, bias or "
        f"vector (no decay); add {name!r} to DECAYED or NOT_DECAYED in jaxformers/train/state.py"
    )


def decay_mask(params):
    """True for the leaves AdamW decays: matrices, never norm scales, biases or other vectors."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: decays("/".join(str(getattr(k, "key", k)) for k in path)), params
    )


def make_optimizer(config) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(config.grad_clip),
        optax.adamw(
            learning_rate_schedule(config),
            b1=config.adam_b1,
            b2=config.adam_b2,
            weight_decay=config.weight_decay,
            mask=decay_mask,
        ),
    )


def split_variables(variables: dict) -> tuple[dict, dict]:
    extra = set(variables) - {"params", "constants"}
    if extra:
        raise ValueError(f"model.init returned unexpected collections {sorted(extra)}")
    return variables["params"], variables.get("constants", {})


def create_state(variables, tx, rng) -> TrainState:
    params, constants = split_variables(variables)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        constants=constants,
        opt_state=tx.init(params),
        rng=rng,
    )
