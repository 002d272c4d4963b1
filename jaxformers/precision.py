"""The mixed-precision policy: which dtype holds the parameters, the compute, the logits and the
weight gradients (`config.model.precision`).

Modelled on jmp's `Policy(param_dtype, compute_dtype, output_dtype)` (google-deepmind/jmp, README:
"casting to compute" before the forward pass, float32 master weights) with one more field, the
dtype the backward pass produces the weight gradients in (MaxText's bf16 gradient accumulation
when parameters are cast to bf16 first, `gradient_accumulation.py`). What stays float32 whatever the
policy says, because bfloat16's 8-bit mantissa loses them: RMS statistics (`ops/norms.py`), the
attention scores and softmax (`ops/attention.py`), the RoPE rotation (`ops/rope.py`), GLA's gates
and state, and the loss (`objectives/next_token.cross_entropy`). Dtypes are spelled out: no "half",
which jmp reads as bfloat16 on TPU and float16 elsewhere.
"""

import dataclasses
from typing import Literal, get_args

import jax
import jax.numpy as jnp

from jaxformers.config_fields import need

DtypeName = Literal["float32", "bfloat16", "float16", "float64"]
DTYPE_NAMES = get_args(DtypeName)
# Fields that ModelConfig had before the policy, and the policy field each one is now.
LEGACY_FIELDS = {"dtype": "compute", "param_dtype": "params"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class PrecisionPolicy:
    # Variables as the model holds them. A training run keeps float32 master weights (the optimizer
    # updates them; checkpoints hold them); layers cast them to `compute` where they use them.
    params: DtypeName = "float32"
    # Matmuls and the activations between layers (the residual stream, projections, the FFN).
    compute: DtypeName = "float32"
    # The logits the model returns; the loss casts them to float32 whatever this is.
    output: DtypeName = "float32"
    # Weight gradients as the backward pass writes them: `params` (None, the default: the cast to
    # compute is differentiated back into the master dtype), or `compute` (the gradient is taken at
    # the compute-dtype copy of the weights, so the weight-gradient matmuls write `compute`; cast up
    # to the master dtype for the optimizer). Micro-batch sums stay float32 (train/experiment.py).
    gradients: str | None = None  # a DtypeName (checked in validate; ConfigDicts hold no Literal | None)

    def validate(self, model=None) -> None:
        del model
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            need(
                value in DTYPE_NAMES or (field.name == "gradients" and value is None),
                f"model.precision.{field.name}={value!r}; expected one of {list(DTYPE_NAMES)}",
            )
        need(
            self.gradients in (None, self.params, self.compute),
            f"model.precision.gradients={self.gradients!r} must be model.precision.params "
            f"({self.params!r}) or model.precision.compute ({self.compute!r})",
        )

    def dtype(self, field: str) -> jnp.dtype:
        """The dtype of `field`; "gradients" unset is the parameters' dtype."""
        value = getattr(self, field)
        return jnp.dtype(self.params if value is None else value)


def with_legacy_fields(values: dict) -> dict:
    """`config.model` values with the pre-policy `dtype` / `param_dtype` moved into `precision`
    (configs and checkpoints written before the policy). A legacy field that contradicts an explicit
    policy field is a one-line ConfigError."""
    legacy = {key: values[key] for key in LEGACY_FIELDS if key in values}
    if not legacy:
        return values
    values = {k: v for k, v in values.items() if k not in LEGACY_FIELDS}
    precision = dict(values.get("precision") or {})
    default = PrecisionPolicy()
    for key, value in legacy.items():
        field = LEGACY_FIELDS[key]
        current = precision.get(field, getattr(default, field))
        need(
            current in (value, getattr(default, field)),
            f"model.{key}={value!r} (the old name of model.precision.{field}) contradicts "
            f"model.precision.{field}={current!r}; set only model.precision.{field}",
        )
        precision[field] = value
    values["precision"] = precision
    return values


def cast_floating(tree, dtype):
    """Every floating-point leaf of `tree` in `dtype`; integer and other leaves unchanged (jmp's
    `cast_to_compute` rule)."""

    def cast(x):
        if jnp.issubdtype(jnp.result_type(x), jnp.floating):
            return jnp.asarray(x).astype(dtype)
        return x

    return jax.tree.map(cast, tree)


def value_and_grad_in(fn, dtype):
    """`jax.value_and_grad(fn, has_aux=True)` with the gradient taken at the parameters cast to
    `dtype` (the first argument's floating leaves), so the gradients come out in `dtype`."""
    grad_fn = jax.value_and_grad(fn, has_aux=True)

    def value_and_grad(params, *args):
        return grad_fn(cast_floating(params, dtype), *args)

    return value_and_grad
