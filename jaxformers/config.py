"""The frozen, validated model configuration, built from an experiment's `config.model` ConfigDict.

Every knob of the composed decoder (ARCHITECTURE.md "Models are composed") lives here. Method
options sit in small nested dataclasses so that each method validates its own fields; an unknown
key or a wrong type is a one-line error naming the field (e.g. `model.moe.num_experts`).
"""

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import ml_collections
from ml_collections.config_dict import placeholder


class ConfigError(ValueError):
    """A config field is unknown, of the wrong type or inconsistent with another."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class AttentionOptions:
    impl: str = "xla"  # "xla" (ops/ reference), "pallas" (kernels/), "auto" (Pallas on GPU/TPU)
    block_q: int = 128
    block_kv: int = 128
    qk_norm: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class LinearAttentionOptions:
    feature_map: str = "elu_plus_one"  # elu_plus_one | identity | relu
    normalize: bool = False
    chunk_size: int = 64
    output_norm: bool = True  # per-head RMSNorm of the output (fla LinearAttention default)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GLAOptions:
    chunk_size: int = 64
    key_dim_ratio: float = 0.5  # d_k = ratio * d (GLA paper §4.1)
    gate_low_rank_dim: int = 16
    gate_logit_normalizer: float = 16.0
    impl: str = "xla"  # xla | pallas | auto
    value_dim_ratio: float = 1.0  # d_v = ratio * d (fla expand_v)
    norm_eps: float = 1e-5  # per-head RMSNorm before the swish output gate (fla FusedRMSNormGated)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LSAOptions:
    """Linear self-attention for in-context regression (models/lsa.py); embed_dim = d + 1."""

    parameterization: str = "merged"  # merged (ZFB W_KQ, W_PV) | separate (vO W_Q, W_K, W_V, W_P)
    readout: str = "bottom_right"  # bottom_right (ZFB: y-slot of the query) | negated (vO: minus it)
    include_query_as_key: bool = False
    normalize_by_context: bool = True  # 1/N inside the layer (ZFB); vO lets W_P absorb it


@dataclasses.dataclass(frozen=True, kw_only=True)
class MoEOptions:
    """SMoE-Dropout / learned-router MoE FFN (methods.md §3); checked by nn.moe's validator."""

    num_experts: int = 8
    expert_dim: int | None = None  # per-expert hidden width; default hidden_dim // num_experts
    router: str = "learned"  # learned | random_frozen (constants collection, never optimized)
    k: int = 2  # active experts when k_schedule="fixed"
    gate: str = "topk_softmax"  # topk_softmax (renormalised over the k) | softmax (Switch, for k=1)
    k_schedule: str = "fixed"  # fixed | linear | linear_decrease (ops.moe.k_schedule)
    k_min: int = 1
    k_max: int | None = None  # None = num_experts
    total_steps: int = 0  # T of the k schedule (set to config.num_steps)
    dispatch: str = "masked"  # masked (all experts, masked) | dispatch (capacity gather/scatter)
    capacity_factor: float = 1.25
    load_balance_weight: float = 0.0  # Switch eq. 4 auxiliary loss (learned router only)
    activation: str = "relu"  # relu | gelu | silu (paper: ReLU experts with biases)
    use_bias: bool = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class PattentionOptions:
    """TokenFormer (methods.md §1); checked by nn.pattention's validator."""

    attn_tokens: int = 64  # parameter tokens per Q/K/V/O Pattention (and any non-FFN role)
    ffn_tokens: int = 256  # parameter tokens of the FFN Pattention (and ffn_up/ffn_down roles)
    norm: str = "l2_norm_gelu"  # Θ: softmax | gelu_l2_norm | l2_norm_gelu
    eps: float = 1e-6  # added to the squared L2 norm inside Θ


@dataclasses.dataclass(frozen=True, kw_only=True)
class MoTOptions:
    """Mixture-of-Transformers grouped dispatch (nn/mot.py), used when modality_dispatch="grouped"."""

    grouped_impl: str = "tiles"  # tiles (sorted, tile-padded; any back end) | ragged_dot (GPU/TPU)
    tile_size: int = 128  # rows per tile; FLOP overhead <= (K-1)*tile_size rows per group
    groups: int = 1  # tokens are sorted within `groups` equal slices of the batch (shard-local)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    vocab_size: int = 264
    embed_dim: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int | None = None  # None = num_heads (MHA); fewer = GQA
    head_dim: int | None = None  # None = embed_dim // num_heads
    mlp_dim: int | None = None  # None = 4 * embed_dim (SwiGLU: 2/3 of it, multiple of 8)
    max_len: int = 256
    rope_base: float = 10000.0
    causal: bool = True
    token_mixer: str = "attention"  # see nn.registry.TOKEN_MIXERS
    feed_forward: str = "swiglu"  # see nn.registry.FEED_FORWARDS
    projections: str = "dense"  # dense | pattention
    num_modalities: int = 1  # K > 1: Mixture-of-Transformers, untied per modality
    modality_dispatch: str = "select"  # select (compute all, select) | grouped (sorted, capacity)
    norm_placement: str = "pre"  # pre | after_branch (Chameleon / MoT)
    tie_embeddings: bool = False
    dtype: str = "float32"  # activations
    param_dtype: str = "float32"
    remat: bool = False
    init_std: float = 0.02
    attention: AttentionOptions = dataclasses.field(default_factory=AttentionOptions)
    linear_attention: LinearAttentionOptions = dataclasses.field(
        default_factory=LinearAttentionOptions
    )
    gla: GLAOptions = dataclasses.field(default_factory=GLAOptions)
    lsa: LSAOptions = dataclasses.field(default_factory=LSAOptions)
    moe: MoEOptions = dataclasses.field(default_factory=MoEOptions)
    pattention: PattentionOptions = dataclasses.field(default_factory=PattentionOptions)
    mot: MoTOptions = dataclasses.field(default_factory=MoTOptions)

    # Derived sizes ---------------------------------------------------------------------------
    @property
    def kv_heads(self) -> int:
        return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

    @property
    def qk_head_dim(self) -> int:
        return self.embed_dim // self.num_heads if self.head_dim is None else self.head_dim

    @property
    def hidden_dim(self) -> int:
        if self.mlp_dim is not None:
            return self.mlp_dim
        return max(8, int(2 / 3 * 4 * self.embed_dim) // 8 * 8)

    @property
    def activation_dtype(self):
        return jnp.dtype(self.dtype)

    @property
    def parameter_dtype(self):
        return jnp.dtype(self.param_dtype)

    def validate(self) -> "ModelConfig":
        from jaxformers.nn import registry  # late import: nn depends on this module

        def need(cond, msg):
            if not cond:
                raise ConfigError(msg)

        for name in ("vocab_size", "embed_dim", "num_layers", "num_heads", "max_len"):
            need(getattr(self, name) > 0, f"model.{name}={getattr(self, name)} must be positive")
        need(
            self.num_heads % self.kv_heads == 0,
            f"model.num_kv_heads={self.kv_heads} does not divide model.num_heads={self.num_heads}",
        )
        need(
            self.head_dim is not None or self.embed_dim % self.num_heads == 0,
            f"model.num_heads={self.num_heads} does not divide model.embed_dim={self.embed_dim}",
        )
        need(self.qk_head_dim % 2 == 0, f"head dim {self.qk_head_dim} must be even for RoPE")
        need(self.num_modalities >= 1, f"model.num_modalities={self.num_modalities} must be >= 1")
        need(
            self.norm_placement in ("pre", "after_branch"),
            f"model.norm_placement={self.norm_placement!r}; expected 'pre' or 'after_branch'",
        )
        need(
            self.modality_dispatch in ("select", "grouped"),
            f"model.modality_dispatch={self.modality_dispatch!r}; expected 'select' or 'grouped'",
        )
        for field, table in (
            ("token_mixer", registry.TOKEN_MIXERS),
            ("feed_forward", registry.FEED_FORWARDS),
            ("projections", registry.PROJECTIONS),
        ):
            value = getattr(self, field)
            need(value in table, f"model.{field}={value!r}; expected one of {sorted(table)}")
        for dt in ("dtype", "param_dtype"):
            try:
                jnp.dtype(getattr(self, dt))
            except TypeError as e:
                raise ConfigError(f"model.{dt}={getattr(self, dt)!r} is not a dtype") from e
        for validator in registry.VALIDATORS:
            validator(self)
        return self


def _check_type(path: str, value: Any, annotation: Any) -> Any:
    """Coerce ints to floats where a float is expected; otherwise demand the annotated type."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(path, value, option)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, float, str, bool):
        ok = isinstance(value, annotation) and not (annotation is int and isinstance(value, bool))
        if not ok:
            raise ConfigError(
                f"{path}={value!r} has type {type(value).__name__}; expected {annotation.__name__}"
            )
    return value


def from_mapping(cls, values: Mapping[str, Any], path: str = "model"):
    """Build the (nested) frozen dataclass `cls` from a mapping, rejecting unknown keys."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in dict(values).items():
        if key not in fields:
            raise ConfigError(f"unknown config key {path}.{key}; valid keys: {sorted(fields)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping) and not hasattr(value, "items"):
                raise ConfigError(f"{path}.{key} must be a mapping of {hint.__name__} fields")
            kwargs[key] = from_mapping(hint, dict(value.items()), f"{path}.{key}")
        else:
            kwargs[key] = _check_type(f"{path}.{key}", value, hint)
    return cls(**kwargs)


def default_config_dict(cls=ModelConfig):
    """Every field of `cls` with its default, as a ConfigDict, so that any model field can be set
    from the command line (`--config.model.mlp_dim=512`) even when the config file does not name
    it. Fields that default to None become typed placeholders; nested options recurse."""
    hints = typing.get_type_hints(cls)
    out = ml_collections.ConfigDict()
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            out[field.name] = default_config_dict(hint)
            continue
        default = field.default
        if default is None:
            options = [o for o in typing.get_args(hint) if o is not type(None)] or [object]
            default = placeholder(typing.get_origin(options[0]) or options[0])
        out[field.name] = default
    return out


def model_config_from(values: Mapping[str, Any]) -> ModelConfig:
    """ModelConfig from `config.model` (a ConfigDict or dict), validated."""
    if hasattr(values, "to_dict"):
        values = values.to_dict()
    return from_mapping(ModelConfig, values).validate()


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)
