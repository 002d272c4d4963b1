"""Post-training quantization through qwix (train/quantize.py): coverage, numerics, bad input."""

import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

qwix = pytest.importorskip("qwix")

from jaxformers.config import model_config_from  # noqa: E402
from jaxformers.models.decoder import Decoder  # noqa: E402
from jaxformers.testing import tiny_model_config, tiny_train_config  # noqa: E402
from jaxformers.train import checkpoint as ckpt  # noqa: E402
from jaxformers.train import quantize as Q  # noqa: E402
from jaxformers.train.quantize_calibration import CalibrationError  # noqa: E402

PROJECTIONS = {
    "head/kernel",
    "layers/mixer/query/kernel",
    "layers/mixer/key/kernel",
    "layers/mixer/value/kernel",
    "layers/mixer/out/kernel",
    "layers/mixer/gate/proj/kernel",
    "layers/ffn/gate/kernel",
    "layers/ffn/up/kernel",
    "layers/ffn/down/kernel",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny gated decoder trained for 12 steps, and quantize_checkpoint's rows for it. Trained on
    one device and without evaluations (quantize_checkpoint evaluates every scheme itself): the
    8-way sharded step and an unused eval step would be two more, larger compiles."""
    from jaxformers.train import train_and_evaluate

    workdir = str(tmp_path_factory.mktemp("quant"))
    config = tiny_train_config(eval_every=0, **{"model.attention.gate": "per_head"})
    train_and_evaluate(config, workdir, devices=jax.devices()[:1])
    result = Q.quantize_checkpoint(
        workdir, ["fp32", "w8a8", "w4_gptq"], calibration_batches=1, eval_batches=1
    )
    return workdir, result


def _model_and_variables(workdir):
    config, variables, _ = ckpt.load_variables(workdir)
    cfg = Q.quantizable_model_config(model_config_from(config.model))
    return Decoder(cfg), {"params": variables["params"]}


def _calibration(n=1, batch=8, length=16):
    return [{"inputs": jax.random.randint(jax.random.PRNGKey(i), (batch, length), 0, 32)} for i in range(n)]


def test_every_projection_kernel_and_the_head_are_qwix_qarrays(trained):
    _, result = trained
    rows = {r["scheme"]: r for r in result["rows"]}
    for scheme in ("w8a8", "w4_gptq"):
        assert set(rows[scheme]["quantized"]) == PROJECTIONS
        assert set(rows[scheme]["kept"]) == {
            "embed/embedding",
            "final_norm/scale",
            "layers/ffn_norm/scale",
            "layers/mixer_norm/scale",
            "layers/mixer/gate/bias",
        }
    assert rows["fp32"]["quantized"] == []


def test_w8a8_loss_is_close_to_fp32_and_perplexity_is_exp_loss(trained):
    _, result = trained
    rows = {r["scheme"]: r for r in result["rows"]}
    assert abs(rows["w8a8"]["loss"] - rows["fp32"]["loss"]) < 0.02, rows
    assert math.isfinite(rows["w4_gptq"]["loss"]) and rows["w4_gptq"]["gap_to_fp32"] < 0.5
    np.testing.assert_allclose(rows["fp32"]["perplexity"], math.exp(rows["fp32"]["loss"]), rtol=1e-6)


def test_dequantized_weights_are_within_half_a_step_of_the_originals_per_channel(trained):
    model, variables = _model_and_variables(trained[0])
    q = Q.quantize(model, variables, Q.Scheme.parse("w3_rtn"), _calibration())
    flat = flax.traverse_util.flatten_dict(q.variables["params"], is_leaf=lambda _, v: hasattr(v, "how"))
    originals = flax.traverse_util.flatten_dict(variables["params"])
    assert {"/".join(p) for p, v in flat.items() if hasattr(v, "how")} == PROJECTIONS
    for path, leaf in flat.items():
        if not hasattr(leaf, "how"):
            continue
        qarray = leaf.array
        assert isinstance(qarray, qwix.QArray) and qarray.qtype == "int3"
        w = np.asarray(originals[path]).reshape(qarray.shape)
        step = np.broadcast_to(np.asarray(qarray.scale), w.shape)
        assert np.all(np.abs(w - np.asarray(qwix.dequantize(qarray))) <= 0.5 * step * (1 + 1e-5)), path


@pytest.mark.parametrize(
    "name,match",
    [
        ("w16_rtn", "16-bit weights are not supported"),
        ("w4a8_gptq", "GPTQ is weight-only"),
        ("int4", "not understood"),
    ],
)
def test_an_unsupported_scheme_is_a_one_line_error(name, match):
    with pytest.raises(Q.QuantizationError, match=match):
        Q.Scheme.parse(name)


def test_a_calibration_set_too_small_for_gptq_is_refused(trained):
    model, variables = _model_and_variables(trained[0])
    with pytest.raises(CalibrationError, match="at least 80 calibration tokens"):
        Q.quantize(model, variables, Q.Scheme.parse("w4_gptq"), _calibration(batch=2, length=16))


def test_layers_the_checkpoint_does_not_have_are_refused():
    cfg = Q.quantizable_model_config(tiny_model_config())  # no attention gate
    model = Decoder(cfg)
    variables = jax.eval_shape(
        model.init, jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32)
    )  # shapes suffice
    with pytest.raises(Q.QuantizationError, match="names no weight module"):
        Q.quantize(model, variables, Q.Scheme.parse("w4_rtn"), _calibration(), layers="layers/mixer/gate/.*")


def test_pattention_projections_are_refused_not_left_in_float():
    cfg = Q.quantizable_model_config(tiny_model_config(projections="pattention"))
    model = Decoder(cfg)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))
    with pytest.raises(Q.QuantizationError, match="Pattention layers cannot be quantized"):
        Q.quantize(model, dict(variables), Q.Scheme.parse("w4_rtn"), _calibration())
