"""Post-training quantization of a model's projections through qwix (`pip install -e ".[quant]"`).

Schemes (`SCHEMES`; `Scheme.parse("w4_gptq")` also reads any "w<bits>[a8]_<rtn|gptq>"):
- W8A8: int8 weights, symmetric, one scale per output channel; int8 inputs of every projection,
  symmetric, ONE static scale per tensor, set from the calibration batches (mean over batches of the
  tensor's max |x|). Bondarenko, Nagel & Blankevoort 2023 (arXiv 2306.12929, §5) quantize weights
  per tensor and activations asymmetrically with running min-max; the per-channel weights here
  follow the issue, and the per-tensor activation range is what outliers inflate.
- W4 / W3 weight-only, symmetric, per output channel: round-to-nearest (RTN, qwix's PTQ), or GPTQ
  (Frantar et al. 2023, arXiv 2210.17323, Algorithm 1): Hessians H = X Xᵀ collected by qwix's
  `GptqCalibrationProvider`, the weight update by `ops.gptq.gptq` (1% damping, no act-order) under
  jit (qwix 0.1.8's own `gptq_core.quantize_weight` runs its column loop eagerly, minutes for a
  tiny model, and cannot store int3), plugged into qwix's `quantize_params_with_calibration`.
  Statistics come from the float model (the paper quantizes layer by layer, feeding each layer the
  already-quantized previous ones).

What is quantized: every param of two or more (per-layer) axes except the token embedding (a
lookup, not a matmul): q, k, v, o, the attention gate, the FFN and the LM head. qwix intercepts
`lax.dot_general` / `jnp.einsum` and finds the weight among the module's params; a selected layer
whose weight it does not find (TokenFormer Pattention, MoE experts: the weight is sliced or
gathered before its matmul) is refused in one line, never left in float32 silently. MoT models
are quantized through modality_dispatch="select" (the same function as "grouped", whose gathered
per-tile kernels qwix cannot trace); weight_grad_matmul="xla" replaces the CPU training matmul.

The decoder stacks its layers with nn.scan, so each param carries a leading layer axis that qwix's
quantize_params does not know of (its per-channel axes are those of one layer): `_per_layer` runs
it on one layer at a time and stacks the results.
"""

import dataclasses
import math
import re

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxformers.errors import UserError
from jaxformers.train import quantize_calibration as calib

_OPTIONAL_INPUTS = ("positions", "segment_ids", "modality_ids")
SUPPORTED_BITS = tuple(range(2, 9))  # qwix's int2 ... int8
SCHEME_NAMES = ("fp32", "w8a8", "w4_rtn", "w4_gptq", "w3_rtn", "w3_gptq")


class QuantizationError(UserError, ValueError):
    """A scheme, calibration set or layer selection that cannot quantize this checkpoint."""


@dataclasses.dataclass(frozen=True)
class Scheme:
    name: str
    weight_bits: int | None = None  # None: float32 (no quantization)
    act_bits: int | None = None  # None: weight-only
    method: str = "rtn"  # "rtn" | "gptq"

    @staticmethod
    def parse(name: str) -> "Scheme":
        if name == "fp32":
            return Scheme(name)
        m = re.fullmatch(r"w(\d+)(?:a(\d+))?(?:_(rtn|gptq))?", name)
        if m is None:
            raise QuantizationError(
                f"quantization scheme {name!r} not understood; expected fp32 or w<bits>[a8][_rtn|_gptq], "
                f"e.g. {', '.join(SCHEME_NAMES)}"
            )
        bits, act, method = int(m.group(1)), m.group(2), m.group(3) or "rtn"
        for what, b in (("weight", bits), ("activation", int(act) if act else None)):
            if b is not None and b not in SUPPORTED_BITS:
                raise QuantizationError(
                    f"scheme {name!r}: {b}-bit {what}s are not supported by qwix; use 2 to 8 bits"
                )
        if act and method == "gptq":
            raise QuantizationError(f"scheme {name!r}: qwix's GPTQ is weight-only; drop the a{act}")
        return Scheme(name, bits, int(act) if act else None, method)

    def rule(self, module_path: str, *, gptq: bool = False):
        import qwix
        from qwix.contrib import gptq as qwix_gptq

        kwargs = dict(module_path=module_path, weight_qtype=f"int{self.weight_bits}")
        if self.act_bits:  # static per-tensor scale: batch axes = every non-contracting axis
            kwargs |= dict(act_qtype=f"int{self.act_bits}", act_static_scale=True, act_batch_axes=(0, 1))
        return (qwix_gptq.GptqRule if gptq else qwix.QuantizationRule)(**kwargs)


# The same parameters and function, computed with plain dot_generals qwix can intercept.
QUANTIZABLE_MODEL = {"weight_grad_matmul": "xla", "layer_loop": "scan", "modality_dispatch": "select"}


def quantizable_model_config(model_cfg):
    return dataclasses.replace(model_cfg, **QUANTIZABLE_MODEL)


def is_matrix(path: tuple, leaf) -> bool:
    """A matmul weight: two or more axes longer than 1, not counting the scanned layer axis (norm
    scales and biases are vectors, with a modality axis of 1 in front)."""
    shape = leaf.shape[1:] if path[0] == "layers" else leaf.shape
    return sum(n > 1 for n in shape) >= 2


def weight_modules(params) -> list[str]:
    """'/'-joined module paths owning a matmul weight (`is_matrix`), the embedding excepted."""
    found = []
    for path, leaf in flax.traverse_util.flatten_dict(params).items():
        module = "/".join(path[:-1])
        if is_matrix(path, leaf) and path[:1] != ("embed",) and module not in found:
            found.append(module)
    return found


def _model_inputs(batch: dict):
    return jnp.asarray(batch["inputs"]), {k: jnp.asarray(batch[k]) for k in _OPTIONAL_INPUTS if k in batch}


def _per_layer(fn, params: dict, abstract: dict, stats: dict | None = None):
    """fn(params, abstract, stats) applied to the unscanned params and to each layer's slice of
    the scanned "layers" subtree, whose results are stacked back along the layer axis."""
    top = lambda tree: {k: v for k, v in (tree or {}).items() if k != "layers"}  # noqa: E731
    out = fn(top(params), top(abstract), top(stats)) if top(params) else {}
    if "layers" in params:
        num = jax.tree.leaves(params["layers"])[0].shape[0]
        layer_abs = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype), abstract["layers"])
        pick = lambda tree, i: jax.tree.map(lambda a: a[i], tree)  # noqa: E731
        layer_stats = (stats or {}).get("layers", {})
        layers = [fn(pick(params["layers"], i), layer_abs, pick(layer_stats, i)) for i in range(num)]
        out["layers"] = jax.tree.map(lambda *xs: jnp.stack(xs), *layers)
    return out


@dataclasses.dataclass
class Quantized:
    model: nn.Module  # the qwix-wrapped model: apply it to `variables`
    variables: dict
    quantized: list[str]  # param paths held as qwix QArrays
    kept: list[str]  # param paths left in float32 (embedding, norm scales, biases, unselected)


def quantize(
    model,
    variables: dict,
    scheme: Scheme,
    calibration: list[dict],
    *,
    layers: str = ".*",
    gptq_damping: float = 0.01,
) -> Quantized:
    """Quantize `variables` of `model` (built from `quantizable_model_config`) by `scheme`.

    calibration: batches from the training split (GPTQ Hessians, W8A8 activation ranges).
    layers: a regex (re.fullmatch) over the weight modules to quantize, e.g. "layers/ffn/.*".
    """
    import qwix

    cfg = getattr(model, "cfg", None)
    if cfg is not None and "pattention" in (cfg.projections, cfg.feed_forward):
        raise QuantizationError(
            "TokenFormer Pattention layers cannot be quantized: their token matrices go through a "
            "normalised attention, not one matmul qwix can quantize per channel; quantize a dense model"
        )
    params = flax.linen.unbox(variables["params"])
    available = weight_modules(params)
    selected = [m for m in available if re.fullmatch(layers, m)]
    if not selected:
        raise QuantizationError(
            f"layers={layers!r} names no weight module of this checkpoint; it has {', '.join(available)}"
        )
    module_rx = "|".join(re.escape(m) for m in selected)
    tokens, kwargs = _model_inputs(calibration[0]) if calibration else (None, None)
    if tokens is None:
        raise QuantizationError("the calibration set is empty; use --calibration_batches >= 1")
    needs_stats = scheme.method == "gptq" or scheme.act_bits
    calib.check_calibration_size(params, selected, calibration, scheme.method == "gptq")
    provider = qwix.PtqProvider([scheme.rule(module_rx)])
    qmodel = qwix.quantize_model(model, provider)
    abstract = flax.linen.unbox(
        jax.eval_shape(lambda t: qmodel.init(jax.random.PRNGKey(0), t, **kwargs), tokens)["params"]
    )
    quantized, kept = _check_coverage(abstract, selected)
    other = {k: v for k, v in variables.items() if k != "params"}
    stats = None
    if needs_stats:
        stats = calib.collect(model, variables, calibration, scheme, module_rx, gptq=scheme.method == "gptq")
    if scheme.method == "gptq":
        qfn = lambda p, a, s: calib.gptq_quantize_params(p, a, s, damping=gptq_damping)  # noqa: E731
    elif scheme.act_bits:
        qfn = lambda p, a, s: qwix.quantize_params(p, a, calib.as_ptq_stats(s, a))  # noqa: E731
    else:
        qfn = lambda p, a, s: qwix.quantize_params(p, a)  # noqa: E731
    qparams = _per_layer(qfn, params, abstract, stats)
    return Quantized(qmodel, {"params": qparams, **other}, quantized, kept)


def _check_coverage(abstract: dict, selected: list[str]) -> tuple[list[str], list[str]]:
    from qwix._src.providers.ptq import WithAux

    flat = flax.traverse_util.flatten_dict(abstract, is_leaf=lambda _, v: isinstance(v, WithAux))
    quantized, kept, missed = [], [], []
    for path, leaf in flat.items():
        name = "/".join(path)
        if name.endswith(("_lhs_scale", "_lhs_zero_point")):
            continue  # static activation scales of W8A8, not model weights
        if isinstance(leaf, WithAux):
            quantized.append(name)
        elif "/".join(path[:-1]) in selected and is_matrix(path, leaf):
            missed.append(name)
        else:
            kept.append(name)
    if missed:
        raise QuantizationError(
            f"qwix cannot quantize {', '.join(missed)} (the weight is sliced or gathered before its "
            "matmul, so qwix does not trace it to its param); exclude them with --layers"
        )
    return quantized, kept


def evaluate(experiment, q: Quantized, num_batches: int) -> dict:
    """Mean objective metrics of the quantized model over `num_batches` validation batches, plus
    perplexity = exp(loss) (per byte for a byte LM)."""
    step = jnp.asarray(experiment.config.num_steps, jnp.int32)
    metrics_fn = jax.jit(
        lambda v, b: experiment.objective(q.model, v, b, rng=jax.random.PRNGKey(0), step=step, train=False)[1]
    )
    # the quantized variables live on one device: bring each (mesh-sharded) batch to the host first
    out = experiment.mean_validation_metrics(
        lambda v, batch: metrics_fn(v, jax.device_get(batch)), q.variables, num_batches)
    out["perplexity"] = math.exp(min(out["loss"], 700.0))
    return out


def quantize_checkpoint(
    workdir: str,
    schemes: list[str],
    *,
    calibration_batches: int = 8,
    eval_batches: int = 0,
    layers: str = ".*",
    step: int = -1,
) -> dict:
    """{"step", "rows": [{"scheme", "loss", "perplexity", "quantized", ...}]} for a checkpoint."""
    from jaxformers.train import checkpoint as ckpt
    from jaxformers.train.experiment import Experiment

    parsed = [Scheme.parse(s) for s in schemes]
    if calibration_batches < 1 and any(s.method == "gptq" or s.act_bits for s in parsed):
        raise QuantizationError(f"--calibration_batches={calibration_batches}: GPTQ and W8A8 need >= 1")
    config, variables, restored = ckpt.load_variables(workdir, step)
    if config.get("model_family", "decoder") != "decoder":
        raise QuantizationError(
            f"quantization supports model_family='decoder'; the checkpoint has {config.model_family!r}"
        )
    config = config.copy_and_resolve_references()
    config.evaluators = []
    for key, value in QUANTIZABLE_MODEL.items():
        config.model[key] = value
    experiment = Experiment(config)
    variables = {k: v for k, v in variables.items() if v}
    calibration = calib.draw_batches(experiment, calibration_batches)
    num_eval = eval_batches or config.eval_batches
    rows = []
    for scheme in parsed:
        if scheme.weight_bits is None:
            q = Quantized(experiment.model, variables, [], sorted(weight_modules(variables["params"])))
        else:
            q = quantize(experiment.model, variables, scheme, calibration, layers=layers)
        metrics = evaluate(experiment, q, num_eval)
        rows.append({"scheme": scheme.name, **metrics, "quantized": q.quantized, "kept": q.kept})
    fp = next((r["loss"] for r in rows if r["scheme"] == "fp32"), None)
    for r in rows:
        r["gap_to_fp32"] = None if fp is None else r["loss"] - fp
    return {
        "workdir": workdir,
        "step": restored,
        "calibration_batches": calibration_batches,
        "eval_batches": num_eval,
        "layers": layers,
        "rows": rows,
    }
