"""Train state and optimizer: AdamW (Loshchilov & Hutter 2019) with warm-up + cosine, clipping."""

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


def decay_mask(params):
    """Weight decay on matrices only (not norms' scales or other vectors)."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


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
