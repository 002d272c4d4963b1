"""Calibration for `train/quantize.py`: batches from the training split, GPTQ Hessians (qwix's
`GptqCalibrationProvider`) and the static per-tensor input ranges of W8A8 (`InputRangeProvider`).

Both providers run the float model once per batch with the "quant_stats" collection mutable; qwix
keeps a running mean over batches (`averaging.SimpleMovingAverage`). Under the decoder's nn.scan the
statistics are stacked along the layer axis like the params (decoder.LAYER_COLLECTIONS).
"""

import functools

import flax
import jax
import jax.numpy as jnp
from qwix._src import averaging
from qwix._src.utils import flax_util
from qwix.contrib import calibration as qwix_calibration

from jaxformers.errors import UserError
from jaxformers.ops import gptq as gptq_ops


class CalibrationError(UserError, ValueError):
    """A calibration set that cannot calibrate the requested quantization."""


class InputRangeProvider(qwix_calibration.CalibrationProvider):
    """Per-tensor max |x| of the input of every weight matmul a rule selects, stored where qwix's
    static-scale PTQ looks for it ("<op_id>_lhs" in "quant_stats")."""

    def get_rule_type(self):
        import qwix

        return qwix.QuantizationRule

    def get_stats_suffix(self) -> str:
        return "_lhs"

    def _collect_stats(self, lhs, weight_name, *, module_path, op_name, op_id, lhs_id):
        del weight_name, module_path, op_name, lhs_id
        stats = {"absmax": jnp.max(jnp.abs(lhs.astype(jnp.float32)))}
        aggregator = averaging.SimpleMovingAverage()
        stat = flax_util.get_or_create_variable("quant_stats", f"{op_id}_lhs", lambda: aggregator.init(stats))
        if flax_util.should_update_quant_stats():
            stat.value = aggregator.update(stat.value, stats)


def draw_batches(experiment, num: int) -> list[dict]:
    """The first `num` batches of the training split (the calibration set)."""
    iterator = experiment.make_iterator("train")
    batches = []
    for _ in range(num):
        try:
            batches.append({k: jnp.asarray(v) for k, v in next(iterator).items()})
        except StopIteration:
            raise CalibrationError(
                f"--calibration_batches={num}: the training split has only "
                f"{len(batches)} batches of {experiment.config.batch_size}"
            ) from None
    return batches


def check_calibration_size(params: dict, selected: list[str], batches: list[dict], gptq: bool) -> None:
    """GPTQ's H = X Xᵀ [d_in, d_in] has full rank only from at least d_in calibration tokens
    (below that GPTQ leans on its damping alone): refuse a smaller set, naming the size needed."""
    if not gptq:
        return
    flat = flax.traverse_util.flatten_dict(params)
    widest = max(leaf.shape[-2] for path, leaf in flat.items() if "/".join(path[:-1]) in selected)
    tokens = sum(int(b["inputs"].size) for b in batches)
    if tokens < widest:
        per_batch = int(batches[0]["inputs"].size)
        raise CalibrationError(
            f"GPTQ needs at least {widest} calibration tokens (the widest layer input) and "
            f"{len(batches)} batch(es) give {tokens}; use --calibration_batches >= {-(-widest // per_batch)}"
        )


def collect(model, variables: dict, batches: list[dict], scheme, module_rx: str, *, gptq: bool) -> dict:
    """quant_stats of the float model over `batches`: GPTQ Hessians or W8A8 input ranges."""
    import qwix
    from qwix.contrib import gptq as qwix_gptq

    rule = scheme.rule(module_rx, gptq=gptq)
    provider = (qwix_gptq.GptqCalibrationProvider if gptq else InputRangeProvider)([rule])
    cal_model = qwix.quantize_model(model, provider)
    optional = ("positions", "segment_ids", "modality_ids")

    @jax.jit
    def step(v, batch):
        kwargs = {k: batch[k] for k in optional if k in batch}
        _, new = cal_model.apply(v, batch["inputs"], mutable="quant_stats", **kwargs)
        return new["quant_stats"]

    v = dict(variables)
    for batch in batches:
        v["quant_stats"] = step(v, batch)
    return flax.linen.unbox(v["quant_stats"])


def as_ptq_stats(stats: dict, abstract: dict) -> dict:
    """InputRangeProvider's scalar ranges reshaped to the static scales qwix's PTQ expects
    (the abstract "<op_id>_lhs_scale" of the same module)."""
    out = {}
    for path, value in flax.traverse_util.flatten_dict(stats).items():
        *module, name, key = path
        scale = flax_util.get_value_from_path(abstract, (*module, name + "_scale"))
        out[path] = value.reshape(scale.shape) if key.startswith("sum_of_") else value
    return flax.traverse_util.unflatten_dict(out)


_GPTQ_STATS_SUFFIX = "_gptq"  # qwix.contrib.gptq's name for the Hessian statistics


@functools.cache
def _jitted_gptq(bits: int, damping: float):
    return jax.jit(lambda w, h: gptq_ops.gptq(w, h, bits, damping=damping))


def gptq_quantize_params(params: dict, abstract: dict, stats: dict, *, damping: float = 0.01) -> dict:
    """qwix's `gptq.quantize_params` with the weight update of `ops.gptq` (jitted, any int<b>);
    weights without statistics fall back to qwix's RTN, as in qwix."""
    from qwix._src.core.qarray import QArray

    def quantize_fn(ctx):
        bits = int(str(ctx.how.qtype).removeprefix("int"))
        q, scale = _jitted_gptq(bits, damping)(ctx.weight, ctx.calibration_stats["hessian"])
        storage = jnp.int4 if bits <= 4 else jnp.int8
        qarray = QArray(q.astype(storage), scale.astype(ctx.weight.dtype), None, ctx.how.qtype)
        return ctx.abs_w.replace(array=ctx.restore_shape(qarray))

    return qwix_calibration.quantize_params_with_calibration(
        params, abstract, stats, _GPTQ_STATS_SUFFIX, quantize_fn
    )
