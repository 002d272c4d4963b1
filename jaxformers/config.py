"""The frozen, validated model configuration, built from an experiment's `config.model` ConfigDict.

Every knob of the composed decoder lives here, below every layer that reads it: nn/ and models/
import this module, never the reverse. Method options sit in small nested dataclasses, each with a
`validate(model)` that checks its own fields when its method is in use; `ModelConfig.validate`
calls them all. Name-valued fields are `Literal`s, so the choices are listed next to the field
(the tables that map a name to its class are in `nn/registry.py` and `nn/projection.py`). An unknown
key or a wrong type is a one-line ConfigError naming the field (e.g. `model.moe.num_experts`).
"""

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import jax

from jaxformers.config_fields import ConfigError, default_config_dict, from_mapping, need  # noqa: F401 (re-exported)
from jaxformers.ops import causal_linear_attention as linear_attention_ops
from jaxformers.ops import moe as moe_ops
from jaxformers.ops import pattention as pattention_ops
from jaxformers.precision import PrecisionPolicy, with_legacy_fields


def _check_chunk(field: str, chunk: int) -> None:
    need(chunk >= 1 and not chunk & (chunk - 1),
         f"model.{field}.chunk_size={chunk} must be a positive power of two")


@dataclasses.dataclass(frozen=True, kw_only=True)
class AttentionOptions:
    impl: Literal["xla", "pallas", "auto"] = "xla"  # ops/ reference | kernels/ | Pallas on GPU/TPU
    block_q: int = 128
    block_kv: int = 128
    qk_norm: bool = False
    # xla path, causal self-attention: query blocks of causal_block_size positions skip the key
    # blocks above the diagonal (ops.attention.causal_block_attention; exact). "auto" = on for the
    # CPU (docs/cpu_training_speed.md), off on GPU/TPU; causal_block_size=0 computes the full square
    causal_blocks: Literal["auto", "on", "off"] = "auto"
    causal_block_size: int = 128
    # Outlier-free attention (Bondarenko, Nagel & Blankevoort 2023, arXiv 2306.12929):
    # clipped: clip((zeta - gamma) softmax + gamma, 0, 1) (eq. 4.1; OPT script: gamma = -12/T)
    softmax: Literal["softmax", "clipped"] = "softmax"
    gamma: float = 0.0  # <= 0
    zeta: float = 1.0  # >= 1
    # per_head: out_h *= sigmoid(x W_g + b)_h before W_o, W_g [d, H] from the block input (§4.2)
    gate: Literal["none", "per_head"] = "none"
    gate_init: float = 0.25  # pi_init: the gate's initial openness; bias = logit(pi_init)

    @property
    def causal_block(self) -> int:
        """The query block size of causal block skipping on this backend; 0 = the full square."""
        return self.causal_block_size if _cpu_fast_path(self.causal_blocks, "on") else 0

    def validate(self, model: "ModelConfig") -> None:
        need(self.block_q > 0 and self.block_kv > 0,
             f"model.attention.block_q={self.block_q} and block_kv={self.block_kv} must be positive")
        need(self.causal_block_size >= 0,
             f"model.attention.causal_block_size={self.causal_block_size} must be >= 0 (0 = off)")
        if self.softmax == "clipped":
            need(self.gamma <= 0, f"model.attention.gamma={self.gamma} must be <= 0 (clipped softmax)")
            need(self.zeta >= 1, f"model.attention.zeta={self.zeta} must be >= 1 (clipped softmax)")
            need(self.impl == "xla", f"model.attention.softmax='clipped' needs model.attention.impl="
                 f"'xla'; the Pallas flash kernel ({self.impl!r}) computes plain softmax only")
        if self.gate != "none":
            need(0 < self.gate_init < 1,
                 f"model.attention.gate_init={self.gate_init} must be in (0, 1) (initial gate value)")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LinearAttentionOptions:
    """Causal linear attention (Katharopoulos et al. 2020, arXiv 2006.16236)."""

    feature_map: str = "elu_plus_one"  # a name in ops.linear_attention.FEATURE_MAPS
    normalize: bool = False
    chunk_size: int = 64
    output_norm: bool = True  # per-head RMSNorm of the output (fla LinearAttention default)

    def validate(self, model: "ModelConfig") -> None:
        if model.token_mixer != "linear_attention":
            return
        maps = sorted(linear_attention_ops.FEATURE_MAPS)
        need(self.feature_map in maps,
             f"model.linear_attention.feature_map={self.feature_map!r}; expected one of {maps}")
        _check_chunk("linear_attention", self.chunk_size)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GLAOptions:
    """Gated linear attention (Yang et al. 2024, arXiv 2312.06635)."""

    chunk_size: int = 64
    key_dim_ratio: float = 0.5  # d_k = ratio * d (GLA paper §4.1)
    gate_low_rank_dim: int = 16
    gate_logit_normalizer: float = 16.0
    impl: Literal["xla", "pallas", "auto"] = "xla"
    value_dim_ratio: float = 1.0  # d_v = ratio * d (fla expand_v)
    norm_eps: float = 1e-5  # per-head RMSNorm before the swish output gate (fla FusedRMSNormGated)
    # phi applied to q and k before the recurrence (fla GatedLinearAttention's `feature_map`; the
    # paper uses none). Positive maps ("elu_plus_one", "relu") make every score q.k >= 0.
    feature_map: str = "identity"

    def dims(self, embed_dim: int) -> tuple[int, int]:
        """(key_dim, value_dim) summed over heads."""
        return (int(round(self.key_dim_ratio * embed_dim)),
                int(round(self.value_dim_ratio * embed_dim)))

    def validate(self, model: "ModelConfig") -> None:
        if model.token_mixer != "gla":
            return
        for name, dim in zip(("key_dim_ratio", "value_dim_ratio"), self.dims(model.embed_dim)):
            need(dim > 0 and dim % model.num_heads == 0,
                 f"model.gla.{name} gives dim {dim}, not a positive multiple of "
                 f"model.num_heads={model.num_heads}")
        need(self.gate_low_rank_dim > 0 and self.gate_logit_normalizer > 0,
             "model.gla.gate_low_rank_dim and gate_logit_normalizer must be > 0")
        maps = sorted(linear_attention_ops.FEATURE_MAPS)
        need(self.feature_map in maps,
             f"model.gla.feature_map={self.feature_map!r}; expected one of {maps}")
        _check_chunk("gla", self.chunk_size)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LSAOptions:
    """Linear self-attention for in-context regression (models/lsa.py); embed_dim = d + 1."""

    # merged: W_KQ, W_PV (Zhang, Frei & Bartlett 2023); separate: W_Q, W_K, W_V, W_P (von Oswald 2023)
    parameterization: Literal["merged", "separate"] = "merged"
    readout: Literal["bottom_right", "negated"] = "bottom_right"  # ZFB y-slot | vO: minus it
    include_query_as_key: bool = False
    normalize_by_context: bool = True  # 1/N inside the layer (ZFB); vO lets W_P absorb it

    def validate(self, model: "ModelConfig") -> None:
        del model  # the Literal fields are checked when the config is read


@dataclasses.dataclass(frozen=True, kw_only=True)
class MoEOptions:
    """SMoE-Dropout (Chen et al. 2023, arXiv 2303.01610) / learned-router MoE FFN."""

    num_experts: int = 8
    expert_dim: int | None = None  # per-expert hidden width; default hidden_dim // num_experts
    router: Literal["learned", "random_frozen"] = "learned"  # random_frozen: never optimized
    k: int = 2  # active experts when k_schedule="fixed"
    gate: str = "topk_softmax"  # ops.moe.GATES: topk_softmax (renormalised over k) | softmax
    k_schedule: str = "fixed"  # ops.moe.K_SCHEDULES: fixed | linear | linear_decrease
    k_min: int = 1
    k_max: int | None = None  # None = num_experts
    total_steps: int = 0  # T of the k schedule (set to config.num_steps)
    dispatch: Literal["masked", "dispatch"] = "masked"  # all experts, masked | capacity gather
    capacity_factor: float = 1.25
    load_balance_weight: float = 0.0  # Switch eq. 4 auxiliary loss (learned router only)
    activation: str = "relu"  # ops.moe.ACTIVATIONS (paper: ReLU experts with biases)
    use_bias: bool = True

    def width(self, model: "ModelConfig") -> int:
        """Hidden width of one expert."""
        return self.expert_dim if self.expert_dim is not None else model.hidden_dim // self.num_experts

    def k_bounds(self) -> tuple[int, int]:
        """(k_min, k_max) of the schedule; (k, k) when fixed."""
        if self.k_schedule == "fixed":
            return self.k, self.k
        return self.k_min, self.num_experts if self.k_max is None else self.k_max

    def validate(self, model: "ModelConfig") -> None:
        if model.feed_forward not in ("moe", "dense_mlp"):
            return
        acts = sorted(moe_ops.ACTIVATIONS)
        need(self.activation in acts, f"model.moe.activation={self.activation!r}; expected one of {acts}")
        if model.feed_forward == "dense_mlp":
            return
        n = self.num_experts
        need(n >= 1, f"model.moe.num_experts={n} must be >= 1")
        need(self.gate in moe_ops.GATES,
             f"model.moe.gate={self.gate!r}; expected one of {moe_ops.GATES}")
        need(self.k_schedule in moe_ops.K_SCHEDULES,
             f"model.moe.k_schedule={self.k_schedule!r}; expected one of {moe_ops.K_SCHEDULES}")
        need(self.width(model) >= 1, f"model.moe.expert_dim={self.width(model)} (hidden_dim "
             f"{model.hidden_dim} // num_experts {n}) must be >= 1; set model.moe.expert_dim")
        lo, hi = self.k_bounds()
        need(1 <= lo <= hi <= n, f"model.moe k range [{lo}, {hi}] must satisfy 1 <= k_min <= k_max "
             f"<= num_experts={n} (k={self.k}, k_min={self.k_min}, k_max={self.k_max})")
        need(self.k_schedule == "fixed" or self.total_steps > 0,
             f"model.moe.total_steps={self.total_steps} must be > 0 with k_schedule="
             f"{self.k_schedule!r} (set it to config.num_steps)")
        need(self.capacity_factor > 0, f"model.moe.capacity_factor={self.capacity_factor} must be > 0")
        need(self.load_balance_weight >= 0,
             f"model.moe.load_balance_weight={self.load_balance_weight} must be >= 0")
        need(model.num_modalities == 1, "model.feed_forward='moe' does not support num_modalities > 1")
        need(model.projections == "dense", "model.feed_forward='moe' needs model.projections='dense'")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PattentionOptions:
    """TokenFormer (Wang et al. 2025, arXiv 2410.23168)."""

    attn_tokens: int = 64  # parameter tokens per Q/K/V/O Pattention (and any non-FFN role)
    ffn_tokens: int = 256  # parameter tokens of the FFN Pattention (and ffn_up/ffn_down roles)
    norm: str = "l2_norm_gelu"  # Θ, ops.pattention.NORMS: softmax | gelu_l2_norm | l2_norm_gelu
    eps: float = 1e-6  # added to the squared L2 norm inside Θ

    def tokens_for_role(self, role: str) -> int:
        """Parameter-token count of a Pattention playing `role` (q, k, v, o, ffn, ffn_up, ...)."""
        return self.ffn_tokens if role in ("ffn", "ffn_up", "ffn_down") else self.attn_tokens

    def validate(self, model: "ModelConfig") -> None:
        if model.projections != "pattention" and model.feed_forward != "pattention":
            return
        for field in ("attn_tokens", "ffn_tokens"):
            need(getattr(self, field) > 0,
                 f"model.pattention.{field}={getattr(self, field)} must be positive")
        need(self.norm in pattention_ops.NORMS,
             f"model.pattention.norm={self.norm!r}; expected one of {pattention_ops.NORMS}")
        need(self.eps > 0, f"model.pattention.eps={self.eps} must be positive")


@dataclasses.dataclass(frozen=True, kw_only=True)
class MoTOptions:
    """Mixture-of-Transformers grouped dispatch (ops/mot.py), used when modality_dispatch="grouped"."""

    grouped_impl: Literal["tiles", "ragged_dot"] = "tiles"  # sorted, tile-padded | GPU/TPU grouped GEMM
    tile_size: int = 128  # rows per tile; FLOP overhead <= (K-1)*tile_size rows per group
    groups: int = 1  # tokens are sorted within `groups` equal slices of the batch (shard-local)

    def validate(self, model: "ModelConfig") -> None:
        need(self.tile_size >= 1, f"model.mot.tile_size={self.tile_size} must be >= 1")
        need(self.groups >= 1, f"model.mot.groups={self.groups} must be >= 1")


@dataclasses.dataclass(frozen=True, kw_only=True)
class MTPOptions:
    """Multi-token prediction (models/mtp.py): n = num_future_tokens predictions per position.
    parallel: head i (one block each, shared unembedding) reads the trunk and predicts x_{t+i}
    (Gloeckle et al. 2024, arXiv 2404.19737, §2); sequential: module k = 1..n-1 reads depth k-1 and
    the embedding of x_{t+k} and predicts x_{t+k+1} (DeepSeek-V3, arXiv 2412.19437, §2.2). Head 1
    decodes. ftp: Walker 2024 (arXiv 2410.18160) future token prediction, the trunk's vector at t
    expanded into pseudo_sequence_length vectors that a small decoder reads to predict x_{t+1..t+n}.
    Loss = CE_1 + loss_weight * sum_i CE_i (parallel) or CE_1 + loss_weight / (n-1) * sum_k
    CE_{k+1} (sequential, the paper's lambda / D) or sum_i loss_weight^(i-1) CE_i (ftp, weights
    decaying with distance); None = the value chosen for the kind (1.0; 0.3; 0.5)."""

    num_future_tokens: int = 1
    kind: Literal["parallel", "sequential", "ftp"] = "parallel"
    loss_weight: float | None = None
    pseudo_sequence_length: int = 4  # ftp: vectors per position the FTP decoder cross-attends to
    # one_head_at_a_time: heads' gradients computed in turn, trunk backward once (Gloeckle Fig. 2)
    backward: Literal["plain", "one_head_at_a_time"] = "plain"

    @property
    def head_weights(self) -> list[float]:
        """Weights of the predictions' cross-entropies CE_1..CE_n in the loss."""
        n = self.num_future_tokens
        if self.kind == "ftp":
            decay = 0.5 if self.loss_weight is None else self.loss_weight
            return [decay**i for i in range(n)]
        if self.kind == "parallel":
            return [1.0] + [1.0 if self.loss_weight is None else self.loss_weight] * (n - 1)
        lam = 0.3 if self.loss_weight is None else self.loss_weight
        return [1.0] + [lam / max(n - 1, 1)] * (n - 1)

    def validate(self, model: "ModelConfig") -> None:
        n = self.num_future_tokens
        need(n >= 1, f"model.mtp.num_future_tokens={n} must be >= 1 (1 = next-token prediction)")
        need(n <= model.max_len, f"model.mtp.num_future_tokens={n} must be <= model.max_len={model.max_len}")
        need(self.loss_weight is None or self.loss_weight >= 0,
             f"model.mtp.loss_weight={self.loss_weight} must be >= 0 (or None: the paper's value)")
        need(self.pseudo_sequence_length >= 1,
             f"model.mtp.pseudo_sequence_length={self.pseudo_sequence_length} must be >= 1")
        need(self.kind != "ftp" or model.num_modalities == 1,
             "model.mtp.kind='ftp' needs model.num_modalities=1 (its decoder reads no modality ids)")
        need(self.backward == "plain" or self.kind == "parallel",
             "model.mtp.backward='one_head_at_a_time' needs model.mtp.kind='parallel' (sequential "
             "modules depend on each other)")


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
    token_mixer: Literal["attention", "gla", "linear_attention"] = "attention"  # nn/registry.py
    feed_forward: Literal["swiglu", "moe", "dense_mlp", "pattention"] = "swiglu"  # nn/registry.py
    projections: Literal["dense", "pattention"] = "dense"  # nn/projection.py
    num_modalities: int = 1  # K > 1: Mixture-of-Transformers, untied per modality
    modality_dispatch: Literal["select", "grouped"] = "select"  # compute all, select | sorted tiles
    norm_placement: Literal["pre", "after_branch"] = "pre"  # after_branch: Chameleon / MoT
    tie_embeddings: bool = False
    # params / compute / output (logits) / gradients dtypes (jaxformers/precision.py); the old
    # fields `dtype` and `param_dtype` are read as precision.compute and precision.params
    precision: PrecisionPolicy = dataclasses.field(default_factory=PrecisionPolicy)
    remat: bool = False
    # CPU fast paths (docs/cpu_training.md), same parameters and numerics either way; "auto" = on
    # when jax's default backend is the CPU, off on GPU/TPU (where XLA's own layouts are fast).
    # canonical: weight gradients as row-major dots (ops/matmul.py) | xla: plain autodiff
    weight_grad_matmul: Literal["auto", "canonical", "xla"] = "auto"
    # unroll: the layer stack as straight-line code (nn.scan unroll) | scan: one while loop (fast
    # compiles); both keep the stacked "layers" parameter axis, so checkpoints are interchangeable
    layer_loop: Literal["auto", "unroll", "scan"] = "auto"
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
    mtp: MTPOptions = dataclasses.field(default_factory=MTPOptions)

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
        return self.precision.dtype("compute")

    @property
    def parameter_dtype(self):
        return self.precision.dtype("params")

    @property
    def output_dtype(self):
        return self.precision.dtype("output")

    @property
    def parametric_norms(self) -> bool:
        """TokenFormer's norms have no learned scale (Wang et al. 2025, Table 5)."""
        return self.projections != "pattention"

    @property
    def canonical_matmul(self) -> bool:
        """`weight_grad_matmul` resolved: call while tracing (it reads the default backend)."""
        return _cpu_fast_path(self.weight_grad_matmul, "canonical")

    @property
    def unroll_layers(self) -> bool:
        """`layer_loop` resolved: call while tracing (it reads the default backend)."""
        return _cpu_fast_path(self.layer_loop, "unroll")

    def validate(self) -> "ModelConfig":
        for name in ("vocab_size", "embed_dim", "num_layers", "num_heads", "max_len"):
            need(getattr(self, name) > 0, f"model.{name}={getattr(self, name)} must be positive")
        need(self.num_heads % self.kv_heads == 0,
             f"model.num_kv_heads={self.kv_heads} does not divide model.num_heads={self.num_heads}")
        need(self.head_dim is not None or self.embed_dim % self.num_heads == 0,
             f"model.num_heads={self.num_heads} does not divide model.embed_dim={self.embed_dim}")
        need(self.qk_head_dim % 2 == 0, f"head dim {self.qk_head_dim} must be even for RoPE")
        need(self.num_modalities >= 1, f"model.num_modalities={self.num_modalities} must be >= 1")
        for field in dataclasses.fields(self):
            options = getattr(self, field.name)
            if dataclasses.is_dataclass(options):
                options.validate(self)
        return self


def _cpu_fast_path(value: str, on: str) -> bool:
    return value == on or (value == "auto" and jax.default_backend() == "cpu")


def model_config_from(values: Mapping[str, Any]) -> ModelConfig:
    """ModelConfig from `config.model` (a ConfigDict or dict), validated."""
    if hasattr(values, "to_dict"):
        values = values.to_dict()
    return from_mapping(ModelConfig, with_legacy_fields(dict(values)), "model").validate()


def model_config_dict():
    """Every ModelConfig field with its default as a ConfigDict (the base of `config.model`)."""
    return default_config_dict(ModelConfig)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)
